// Package sim is the fleet simulator: many simulated nodes in one process,
// sharing a few gRPC connections, each with its own node id, GPUs and
// faults, speaking NodeService to a real control plane exactly as agents
// do — registering, heartbeating, reporting health, pushing events and
// carrying out commands. The large demo, the scale tests and the benchmarks
// run on it.
//
// A simulated node keeps a few bytes per GPU rather than a whole NVML
// mock, so a hundred thousand of them fit in one process. The real agent
// and its NVML code are exercised by the agent's own tests.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/healthdelta"
	"github.com/navarch/navarch/internal/rpcclient"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Options configures New.
type Options struct {
	// Server is the control plane and how to trust it. Required.
	Server rpcclient.Target
	// Nodes is how many nodes to simulate. Required.
	Nodes int
	// GPUs per node; 0 means 8.
	GPUs int
	// Conns is how many gRPC connections the nodes share; 0 means 4.
	Conns int
	// Prefix starts every node id; "" means "sim-".
	Prefix string
	// Labels go on every node.
	Labels map[string]string
	// ChaosInterval is each node's mean time between random faults; 0
	// means none.
	ChaosInterval time.Duration
	// NoCommands leaves the command long polls out (for load tests that
	// measure the other calls alone).
	NoCommands bool
	// RegisterConcurrency bounds registrations in flight; 0 means 64.
	RegisterConcurrency int
	// Logger receives the simulator's logs.
	Logger *slog.Logger
}

// Fleet is a running simulated fleet.
type Fleet struct {
	o       Options
	conns   []*grpc.ClientConn
	clients []nodev1.NodeServiceClient
	nodes   []*node
	log     *slog.Logger

	heartbeat Latencies
	report    Latencies
	errors    atomic.Int64
	// paces are the heartbeats' and the reports' schedules, once Run
	// starts them.
	paces [2]atomic.Pointer[pace]
}

// New dials the control plane and prepares the nodes.
func New(o Options) (*Fleet, error) {
	if o.Server.Addr == "" || o.Nodes <= 0 {
		return nil, errors.New("sim: server and a positive node count are required")
	}
	if o.GPUs <= 0 {
		o.GPUs = 8
	}
	if o.Conns <= 0 {
		o.Conns = 4
	}
	if o.Prefix == "" {
		o.Prefix = "sim-"
	}
	if o.RegisterConcurrency <= 0 {
		o.RegisterConcurrency = 64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{o: o, log: o.Logger}
	for range o.Conns {
		c, err := rpcclient.Dial(o.Server)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.conns = append(f.conns, c)
		f.clients = append(f.clients, nodev1.NewNodeServiceClient(c))
	}
	width := len(fmt.Sprint(o.Nodes - 1))
	now := time.Now()
	for i := range o.Nodes {
		n := &node{
			index:   i,
			id:      fmt.Sprintf("%s%0*d", o.Prefix, width, i),
			client:  f.clients[i%len(f.clients)],
			gpus:    make([]gpuState, o.GPUs),
			reports: healthdelta.NewSender(),
			rng:     rand.New(rand.NewPCG(uint64(i), 0x5eed)),
		}
		for g := range n.gpus {
			n.gpus[g].load.Start(n.rng, now, false)
		}
		f.nodes = append(f.nodes, n)
	}
	return f, nil
}

// Close drops the connections.
func (f *Fleet) Close() {
	for _, c := range f.conns {
		_ = c.Close()
	}
}

// NodeIDs lists the simulated node ids.
func (f *Fleet) NodeIDs() []string {
	out := make([]string, len(f.nodes))
	for i, n := range f.nodes {
		out[i] = n.id
	}
	return out
}

// Register registers every node, a bounded number at a time.
func (f *Fleet) Register(ctx context.Context) error {
	sem := make(chan struct{}, f.o.RegisterConcurrency)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	for _, n := range f.nodes {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f.register(ctx, n); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func (f *Fleet) register(ctx context.Context, n *node) error {
	req := &nodev1.RegisterNodeRequest{
		NodeId: n.id, Hostname: n.id, Labels: f.o.Labels, Simulated: true,
		DriverVersion: "550.54.15", CudaVersion: "12.4", AgentVersion: "sim", BootId: "sim-boot",
	}
	for g := range f.o.GPUs {
		req.Gpus = append(req.Gpus, &fleetv1.Gpu{
			Index: uint32(g), Uuid: fmt.Sprintf("GPU-%s-%02d", n.id, g), Name: "NVIDIA H100 80GB HBM3",
			PciBusId: fmt.Sprintf("0000:%02x:00.0", 0x18+g*0x10), MemoryTotalBytes: 80 << 30,
			SlowdownTemperatureCelsius: 87, PowerLimitMilliwatts: 700000, NvlinkCount: 18,
		})
	}
	var err error
	for attempt := range 20 {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		var resp *nodev1.RegisterNodeResponse
		resp, err = n.client.RegisterNode(cctx, req)
		cancel()
		if err == nil {
			// A registration starts the reports afresh, as an agent's does.
			n.reports.Forget()
			n.terms.Store(&terms{
				hbEvery:  resp.GetHeartbeatInterval().AsDuration(),
				rpEvery:  resp.GetHealthReportInterval().AsDuration(),
				pollFor:  resp.GetCommandPollTimeout().AsDuration(),
				longPoll: resp.GetCommandDelivery() != nodev1.CommandDelivery_COMMAND_DELIVERY_HEARTBEAT,
				streams:  resp.GetCommandDelivery() == nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM,
			})
			return nil
		}
		if status.Code(err) == codes.InvalidArgument || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(100*(attempt+1)) * time.Millisecond)
	}
	return fmt.Errorf("register %s: %w", n.id, err)
}
