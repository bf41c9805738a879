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
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/simload"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Options configures New.
type Options struct {
	// Server is the control plane address. Required.
	Server string
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
}

// node is one simulated node: its identity, GPUs and intervals.
type node struct {
	index   int
	id      string
	client  nodev1.NodeServiceClient
	mu      sync.Mutex
	gpus    []gpuState
	pending []*fleetv1.HealthEvent
	hbEvery time.Duration
	rpEvery time.Duration
	pollFor time.Duration
	// longPoll is false in heartbeat delivery, where heartbeats say when to
	// fetch commands and no goroutine waits per node.
	longPoll bool
	fetching atomic.Bool
	stopped  atomic.Bool
	rng      *rand.Rand
}

// gpuState is a GPU in a few dozen bytes.
type gpuState struct {
	load simload.GPU
	hot  bool // a thermal fault holds it at the slowdown threshold
	dbe  bool
	lost bool
}

// New dials the control plane and prepares the nodes.
func New(o Options) (*Fleet, error) {
	if o.Server == "" || o.Nodes <= 0 {
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
			index:  i,
			id:     fmt.Sprintf("%s%0*d", o.Prefix, width, i),
			client: f.clients[i%len(f.clients)],
			gpus:   make([]gpuState, o.GPUs),
			rng:    rand.New(rand.NewPCG(uint64(i), 0x5eed)),
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
			n.hbEvery = resp.GetHeartbeatInterval().AsDuration()
			n.rpEvery = resp.GetHealthReportInterval().AsDuration()
			n.pollFor = resp.GetCommandPollTimeout().AsDuration()
			n.longPoll = resp.GetCommandDelivery() != nodev1.CommandDelivery_COMMAND_DELIVERY_HEARTBEAT
			return nil
		}
		if status.Code(err) == codes.InvalidArgument || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(100*(attempt+1)) * time.Millisecond)
	}
	return fmt.Errorf("register %s: %w", n.id, err)
}

// Run registers the nodes if needed, then heartbeats, reports and polls
// for commands until ctx ends. Heartbeats and reports are spread evenly
// over their intervals, as a real fleet's are.
func (f *Fleet) Run(ctx context.Context) error {
	if f.nodes[0].hbEvery == 0 {
		if err := f.Register(ctx); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		f.spread(ctx, func(n *node) time.Duration { return n.hbEvery }, f.heartbeatOne)
	}()
	go func() { defer wg.Done(); f.spread(ctx, func(n *node) time.Duration { return n.rpEvery }, f.reportOne) }()
	if f.o.ChaosInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); f.chaos(ctx) }()
	}
	if !f.o.NoCommands {
		for _, n := range f.nodes {
			if n.longPoll {
				wg.Add(1)
				go func() { defer wg.Done(); f.commands(ctx, n) }()
			}
		}
	}
	wg.Wait()
	return nil
}

// spread calls fn for every node once per interval, node i at offset
// i/N of the interval, with a bounded number of calls in flight.
func (f *Fleet) spread(ctx context.Context, every func(*node) time.Duration, fn func(context.Context, *node)) {
	interval := every(f.nodes[0])
	if interval <= 0 {
		return
	}
	const tick = 10 * time.Millisecond
	perTick := max(1, int(float64(len(f.nodes))*float64(tick)/float64(interval)))
	sem := make(chan struct{}, 256)
	t := time.NewTicker(tick)
	defer t.Stop()
	next := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for range perTick {
			n := f.nodes[next]
			next = (next + 1) % len(f.nodes)
			if n.stopped.Load() {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				fn(ctx, n)
			}()
		}
	}
}

func (f *Fleet) heartbeatOne(ctx context.Context, n *node) {
	now := time.Now()
	req := &nodev1.HeartbeatRequest{NodeId: n.id, SentAt: timestamppb.New(now), Samples: n.samples(now)}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := n.client.Heartbeat(cctx, req)
	if err != nil {
		f.failed(ctx, n, err)
		return
	}
	f.heartbeat.Add(time.Since(start))
	if resp.GetPendingCommands() > 0 && !n.longPoll && n.fetching.CompareAndSwap(false, true) {
		go func() {
			defer n.fetching.Store(false)
			f.fetchCommands(ctx, n, 0)
		}()
	}
}

func (f *Fleet) reportOne(ctx context.Context, n *node) {
	now := time.Now()
	n.mu.Lock()
	events := n.pending
	n.pending = nil
	n.mu.Unlock()
	req := &nodev1.ReportHealthRequest{NodeId: n.id, Events: events, Metrics: n.metrics(now), GpuCount: uint32(len(n.gpus))}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	_, err := n.client.ReportHealth(cctx, req)
	if err != nil {
		n.mu.Lock()
		n.pending = append(events, n.pending...)
		n.mu.Unlock()
		f.failed(ctx, n, err)
		return
	}
	f.report.Add(time.Since(start))
}

func (f *Fleet) failed(ctx context.Context, n *node, err error) {
	if ctx.Err() != nil {
		return
	}
	f.errors.Add(1)
	if status.Code(err) == codes.NotFound && !n.stopped.Load() {
		// The control plane forgot the node (it was removed): register again.
		_ = f.register(ctx, n)
	}
}

// Errors is how many calls failed.
func (f *Fleet) Errors() int64 { return f.errors.Load() }

// InjectXID pushes an XID on a node's GPU at once, as an agent does, and
// returns when the control plane has it.
func (f *Fleet) InjectXID(ctx context.Context, nodeIndex, gpu int, xid uint32) error {
	n := f.nodes[nodeIndex]
	ev := &fleetv1.HealthEvent{
		Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: int32(gpu), Xid: xid, Time: timestamppb.Now(),
		Message: fmt.Sprintf("XID %d reported by the driver", xid),
	}
	_, err := n.client.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: n.id, Events: []*fleetv1.HealthEvent{ev}})
	return err
}

// chaos injects random faults across the fleet: each node gets one every
// ChaosInterval on average.
func (f *Fleet) chaos(ctx context.Context) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	mean := float64(f.o.ChaosInterval) / float64(len(f.nodes))
	for {
		wait := time.Duration(rng.ExpFloat64() * mean)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n := f.nodes[rng.IntN(len(f.nodes))]
		if n.stopped.Load() {
			continue
		}
		gpu := rng.IntN(len(n.gpus))
		roll := rng.Float64()
		// As the simulated NVML's chaos: about one fault in twelve takes a
		// GPU out of service.
		switch {
		case roll < 0.865:
			_ = f.InjectXID(ctx, n.index, gpu, simload.ChaosXIDs[rng.IntN(len(simload.ChaosXIDs))])
		case roll < 0.965:
			n.mu.Lock()
			n.gpus[gpu].hot = true
			n.pending = append(n.pending, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_THERMAL, GpuIndex: int32(gpu), Time: timestamppb.Now(), Value: 92, Message: "temperature 92°C at or past the slowdown threshold of 87°C"})
			n.mu.Unlock()
			heal := time.Duration(60+rng.IntN(120)) * time.Second
			go func() {
				select {
				case <-ctx.Done():
				case <-time.After(heal):
					n.mu.Lock()
					n.gpus[gpu].hot = false
					n.mu.Unlock()
				}
			}()
		case roll < 0.985:
			n.mu.Lock()
			n.gpus[gpu].dbe = true
			n.pending = append(n.pending, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED, GpuIndex: int32(gpu), Time: timestamppb.Now(), Value: 1, Message: "volatile uncorrected ECC errors: 1"})
			n.mu.Unlock()
		default:
			n.mu.Lock()
			n.gpus[gpu].lost = true
			n.pending = append(n.pending, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_GPU_LOST, GpuIndex: int32(gpu), Time: timestamppb.Now(), Message: "NVML: GPU is lost"})
			n.mu.Unlock()
		}
	}
}

// commands long-polls for one node's commands until ctx ends; in heartbeat
// delivery heartbeatOne fetches them instead.
func (f *Fleet) commands(ctx context.Context, n *node) {
	if !n.longPoll {
		return
	}
	for ctx.Err() == nil && !n.stopped.Load() {
		if err := f.fetchCommands(ctx, n, n.pollFor); err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second + time.Duration(rand.IntN(1000))*time.Millisecond):
			}
		}
	}
}

// fetchCommands calls GetNodeCommands once and answers each command as an
// agent with no GPU jobs would.
func (f *Fleet) fetchCommands(ctx context.Context, n *node, wait time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
	resp, err := n.client.GetNodeCommands(cctx, &nodev1.GetNodeCommandsRequest{NodeId: n.id, Wait: durationpb.New(wait)})
	cancel()
	if err != nil {
		f.failed(ctx, n, err)
		return err
	}
	for _, c := range resp.GetCommands() {
		msg := "done"
		switch c.GetType() {
		case fleetv1.CommandType_COMMAND_TYPE_CORDON:
			msg = "cordoned: this node takes no new work"
		case fleetv1.CommandType_COMMAND_TYPE_UNCORDON:
			msg = "uncordoned: this node takes work again"
		case fleetv1.CommandType_COMMAND_TYPE_DRAIN:
			msg = "no GPU processes left"
		case fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS:
			msg = fmt.Sprintf("diagnostics: %d checks on %d simulated GPUs passed", 5*len(n.gpus), len(n.gpus))
		case fleetv1.CommandType_COMMAND_TYPE_TERMINATE:
			msg = "agent stopping"
			n.stopped.Store(true)
		}
		_, _ = n.client.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
			NodeId: n.id, CommandId: c.GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, Message: msg,
		})
	}
	return nil
}

func (g *gpuState) temperature() uint32 {
	if g.hot {
		return 92
	}
	return uint32(g.load.Temp)
}

func (n *node) samples(now time.Time) []*fleetv1.GpuSample {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*fleetv1.GpuSample, 0, len(n.gpus))
	for i := range n.gpus {
		g := &n.gpus[i]
		if g.lost {
			continue
		}
		g.load.Advance(n.rng, now)
		out = append(out, &fleetv1.GpuSample{
			GpuIndex: uint32(i), UtilizationGpuPercent: uint32(g.load.Util), TemperatureCelsius: g.temperature(),
			PowerUsageMilliwatts: g.load.PowerMilliwatts(), MemoryUsedBytes: uint64(g.load.Util) * (700 << 20),
		})
	}
	return out
}

func (n *node) metrics(now time.Time) []*fleetv1.GpuMetrics {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*fleetv1.GpuMetrics, 0, len(n.gpus))
	for i := range n.gpus {
		g := &n.gpus[i]
		if g.lost {
			continue
		}
		g.load.Advance(n.rng, now)
		m := &fleetv1.GpuMetrics{
			GpuIndex: uint32(i), Time: timestamppb.New(now), TemperatureCelsius: g.temperature(),
			UtilizationGpuPercent: uint32(g.load.Util), PowerUsageMilliwatts: g.load.PowerMilliwatts(),
			MemoryUsedBytes: uint64(g.load.Util) * (700 << 20), SmClockMhz: 1980, MemoryClockMhz: 2619,
			Ecc: &fleetv1.EccCounts{}, RowRemap: &fleetv1.RowRemapState{}, Unsupported: []string{"retired_pages"},
		}
		if g.dbe {
			m.Ecc.VolatileUncorrected, m.Ecc.AggregateUncorrected = 1, 1
		}
		for l := range 18 {
			m.Nvlinks = append(m.Nvlinks, &fleetv1.NvLinkState{Link: uint32(l), Active: true})
		}
		out = append(out, m)
	}
	return out
}
