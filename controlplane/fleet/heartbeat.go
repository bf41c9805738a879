package fleet

import (
	"context"
	"fmt"

	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Heartbeat records a sign of life. It never writes to disk.
func (f *Fleet) Heartbeat(ctx context.Context, req *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error) {
	ns := f.get(req.GetNodeId())
	if ns == nil {
		return nil, apierr.NotRegistered(req.GetNodeId())
	}
	n := ns.node.Load()
	if err := checkSampleGPUs(n, ns.knownGPUs(n), req.GetSamples()); err != nil {
		return nil, err
	}
	now := f.clock.Now()
	lifecycle := n.GetLifecycle()
	gone := lifecycle == terminated
	var samples []sample
	if !gone {
		samples = packSamples(req.GetSamples())
	}
	ns.live.mu.Lock()
	ns.live.lastHeartbeat = now
	ns.live.samples = samples
	for _, smp := range samples {
		historyOf(&ns.live.history, smp.idx).add(smp)
	}
	ns.live.mu.Unlock()
	switch {
	case gone:
		// A terminated node stays OFFLINE until its agent registers again,
		// which starts it afresh.
	case ns.reachability() != fleetv1.Reachability_REACHABILITY_ONLINE:
		f.setReachability(ns, fleetv1.Reachability_REACHABILITY_ONLINE)
	default:
		f.hub.Heartbeat(ns)
	}
	return &nodev1.HeartbeatResponse{Lifecycle: lifecycle, PendingCommands: uint32(max(ns.pending.Load(), 0))}, nil
}

// checkSampleGPUs rejects samples for GPUs the node n never registered
// (known is the set of its GPUs' indexes), as checkEventGPUs does for a
// report.
func checkSampleGPUs(n *fleetv1.Node, known gpuSet, samples []*fleetv1.GpuSample) error {
	for i, s := range samples {
		if !known.has(s.GetGpuIndex()) {
			return apierr.Invalid(fmt.Sprintf("samples[%d].gpu_index", i), "node %q has no GPU %d", n.GetNodeId(), s.GetGpuIndex())
		}
	}
	return nil
}

// gpuSet is the indexes of a node's GPUs, for checking those a call names
// on the busiest calls: one pass over the GPUs, then a bit test for each
// index under 64, which a node's are, with nothing allocated.
type gpuSet struct {
	low  uint64
	node *fleetv1.Node
}

// knownGPUs is the set of the GPU indexes of n, the node's state. The set
// is kept with the state it was made from and made again when the state
// changes, so that the busiest calls read one small record rather than
// each of the node's GPU messages, at 100 000 nodes a cache miss each.
func (ns *nodeState) knownGPUs(n *fleetv1.Node) gpuSet {
	if k := ns.gpus.Load(); k != nil && k.node == n {
		return *k
	}
	k := gpusOf(n)
	ns.gpus.Store(&k)
	return k
}

func gpusOf(n *fleetv1.Node) gpuSet {
	s := gpuSet{node: n}
	for _, g := range n.GetGpus() {
		if i := g.GetIndex(); i < 64 {
			s.low |= 1 << i
		}
	}
	return s
}

func (s gpuSet) has(idx uint32) bool {
	if idx < 64 {
		return s.low&(1<<idx) != 0
	}
	for _, g := range s.node.GetGpus() {
		if g.GetIndex() == idx {
			return true
		}
	}
	return false
}
