package sim

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/healthdelta"
	"github.com/navarch/navarch/internal/simload"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// node is one simulated node: its identity, GPUs and intervals.
type node struct {
	index   int
	id      string
	client  nodev1.NodeServiceClient
	mu      sync.Mutex
	gpus    []gpuState
	pending []*fleetv1.HealthEvent
	// reports numbers the node's health reports and makes their metrics a
	// full snapshot or a delta, as an agent's do.
	reports *healthdelta.Sender
	// terms are what the control plane's last registration answer said:
	// a registration again, from whichever goroutine saw the node
	// unknown, replaces them while the others read them.
	terms    atomic.Pointer[terms]
	fetching atomic.Bool
	stopped  atomic.Bool
	rng      *rand.Rand
}

// terms are a node's intervals and command delivery, from its
// registration.
type terms struct {
	hbEvery time.Duration
	rpEvery time.Duration
	pollFor time.Duration
	// longPoll is false in heartbeat delivery, where heartbeats say when to
	// fetch commands and no goroutine waits per node.
	longPoll bool
	// streams is true in stream delivery: the node holds a command stream
	// instead of long-polling.
	streams bool
}

// term is the node's terms, zero before its first registration.
func (n *node) term() terms {
	if t := n.terms.Load(); t != nil {
		return *t
	}
	return terms{}
}

// gpuState is a GPU in a few dozen bytes.
type gpuState struct {
	load simload.GPU
	hot  bool // a thermal fault holds it at the slowdown threshold
	dbe  bool
	lost bool
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
