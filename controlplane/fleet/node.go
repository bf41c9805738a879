package fleet

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/internal/healthdelta"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// nodeState is one node in memory.
//
// Locks, always taken in this order: mu (serialises the node's durable
// changes, including their disk write), then the watch hub's lock (orders
// published changes), then live.mu (heartbeat data).
type nodeState struct {
	mu sync.Mutex
	// book is the bookkeeping a change edits before it is saved, under mu;
	// a change that cannot be saved restores it whole (see withNode).
	book bookkeeping
	// wake is closed and replaced when a command is queued and when the
	// node leaves the fleet, under mu (see wakeWaiters).
	wake chan struct{}

	// node is the durable part, immutable once stored here; changes swap
	// in a new copy under the hub lock.
	node atomic.Pointer[fleetv1.Node]
	// enc is the encoding of a durable state, for snapshots (see
	// AppendView).
	enc atomic.Pointer[encodedState]
	// gpus is the set of a durable state's GPU indexes (see knownGPUs).
	gpus atomic.Pointer[gpuSet]
	// reach is the reachability, written under the hub lock.
	reach atomic.Int32
	// removed is set, under mu and the hub lock, when the node leaves the
	// fleet; a caller that found the node before then must not change it.
	removed atomic.Bool
	// pending and delivered count the PENDING and DELIVERED commands in
	// book.open, so heartbeat answers need not wait for mu and the monitor
	// locks only nodes that may need a redelivery.
	pending   atomic.Int32
	delivered atomic.Int32

	live live
}

// bookkeeping is the per-node state, beside the durable node, that a change
// may edit before it is saved. It is one value so that a failed save can
// put all of it back: clone copies every field, and every map and slice,
// which TestBookkeepingCloneIsDeep checks field by field. What the maps
// and slices point to is never changed in place (a change stores a changed
// copy instead), so a clone costs a few pointers, not the counts.
type bookkeeping struct {
	// repeats count recent events per GPU for the policy's repeat rules.
	repeats repeatCounts
	// open holds the node's unfinished commands, oldest first. A command
	// stored here is not changed again: a change stores a changed copy.
	open []*fleetv1.Command
	// redelivered counts how often each open command was handed out again
	// for want of an answer; nil until the first time.
	redelivered map[string]int
	// furthest is the furthest status each open command reached before it
	// was put back to PENDING to be handed out again, so that the metrics
	// count each status once per command; nil until the first time.
	furthest map[string]fleetv1.CommandStatus
	// stopping is set while a provider stops the node's instance.
	stopping bool
	// unprovision is set while the instance of a provision that timed out
	// still has to be stopped; failed stops are retried.
	unprovision bool
	// terminateQueued is when a TERMINATE command was last queued, so a
	// failing agent is not asked again every second.
	terminateQueued time.Time
}

// clone returns a copy to put back if the change fails. The repeat counts
// are shared until b counts in them again (see repeatCounts), so a plain
// report copies a few pointers, not the counts.
func (b *bookkeeping) clone() bookkeeping {
	c := *b
	c.repeats = b.repeats.share()
	c.open = slices.Clone(b.open)
	c.redelivered = maps.Clone(b.redelivered)
	c.furthest = maps.Clone(b.furthest)
	return c
}

// repeatCounts are a node's repeat counts by GPU index. The counts are
// reached only through count, which copies a GPU's counts the first time
// it counts in them after share: a copy share handed out before a change
// keeps exactly what it had, whatever the change counts.
type repeatCounts struct {
	byGPU map[uint32]*policy.Repeats
	// own marks the counts no copy shares.
	own map[uint32]bool
}

// count returns GPU idx's counts for the policy to count an event in.
func (r *repeatCounts) count(idx uint32) *policy.Repeats {
	if !r.own[idx] {
		if r.byGPU == nil {
			r.byGPU = make(map[uint32]*policy.Repeats)
		}
		if r.own == nil {
			r.own = make(map[uint32]bool)
		}
		r.byGPU[idx] = r.byGPU[idx].Clone()
		r.own[idx] = true
	}
	return r.byGPU[idx]
}

// remedied records a reboot: every GPU's remedy was done.
func (r *repeatCounts) remedied() {
	for idx := range r.byGPU {
		r.count(idx).Remedied()
	}
}

// forget drops GPU idx's counts, as when the GPU was replaced.
func (r *repeatCounts) forget(idx uint32) {
	delete(r.byGPU, idx)
	delete(r.own, idx)
}

// share returns a copy that shares r's counts; from now on neither
// changes a count the other holds.
func (r *repeatCounts) share() repeatCounts {
	r.own = nil
	return repeatCounts{byGPU: maps.Clone(r.byGPU)}
}

// live is a node's heartbeat data, kept compact: a hundred thousand nodes
// of it must fit in memory next to everything else.
type live struct {
	mu            sync.Mutex
	lastHeartbeat time.Time // zero until heard from since start
	lastSaved     time.Time // last heartbeat time written to the store
	samples       []sample
	// metrics is the latest snapshot, numbered by the agent, onto which
	// the next delta applies; nil until the first.
	metrics *healthdelta.Held
	// newRun is set when the agent registers and cleared by the next full
	// snapshot kept: an agent's new run numbers its reports afresh, so its
	// first full is taken whatever its sequence.
	newRun bool
	// metricsAfter is lastHeartbeat when the snapshot was kept, in Unix
	// nanoseconds: a heartbeat since then carries newer samples.
	metricsAfter int64
	history      []gpuHistory
	dropped      uint64
}

func newNodeState(n *fleetv1.Node) *nodeState {
	ns := &nodeState{
		wake: make(chan struct{}),
	}
	ns.node.Store(n)
	ns.reach.Store(int32(fleetv1.Reachability_REACHABILITY_UNKNOWN))
	return ns
}

// wakeWaiters wakes the agent's command stream or long poll, waiting on
// wake, to look at the node again. The caller holds mu.
func (ns *nodeState) wakeWaiters() {
	close(ns.wake)
	ns.wake = make(chan struct{})
}

// recount refreshes pending and delivered from the open commands. The
// caller holds mu.
func (ns *nodeState) recount() {
	pending, delivered := 0, 0
	for _, c := range ns.book.open {
		switch c.GetStatus() {
		case fleetv1.CommandStatus_COMMAND_STATUS_PENDING:
			pending++
		case fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED:
			delivered++
		}
	}
	ns.pending.Store(int32(pending))
	ns.delivered.Store(int32(delivered))
}

func (ns *nodeState) reachability() fleetv1.Reachability {
	return fleetv1.Reachability(ns.reach.Load())
}

func (ns *nodeState) id() string { return ns.node.Load().GetNodeId() }

// view is the node as operators see it: durable state plus heartbeat data.
func (ns *nodeState) view() *fleetv1.Node {
	return ns.viewOf(ns.node.Load(), ns.reachability(), false)
}

// Render is the view of the node from a snapshot's state, for the watch hub.
func (ns *nodeState) Render(state *fleetv1.Node, reach fleetv1.Reachability) *fleetv1.Node {
	return ns.viewOf(state, reach, false)
}

// viewOf builds the operator's view from a given durable state and
// reachability (a snapshot's), adding the latest heartbeat data and, with
// withMetrics, each GPU's latest full metrics.
func (ns *nodeState) viewOf(durable *fleetv1.Node, reach fleetv1.Reachability, withMetrics bool) *fleetv1.Node {
	var n *fleetv1.Node
	if withMetrics {
		// Metrics go into the GPUs, which must be copies of their own.
		n = proto.CloneOf(durable)
	} else {
		n = shallowCopy(durable)
	}
	n.Reachability = reach
	ns.live.mu.Lock()
	defer ns.live.mu.Unlock()
	if !ns.live.lastHeartbeat.IsZero() {
		n.LastHeartbeatAt = timestamppb.New(ns.live.lastHeartbeat)
	}
	n.Samples = protoSamples(ns.live.samples)
	n.DroppedEvents = ns.live.dropped
	if withMetrics {
		newer := ns.live.lastHeartbeat.UnixNano() != ns.live.metricsAfter
		for _, m := range ns.live.metrics.Metrics() {
			if newer {
				overlay(m, ns.live.samples)
			}
			for _, g := range n.Gpus {
				if g.GetIndex() == m.GetGpuIndex() && !g.GetLost() {
					g.Metrics = m
				}
			}
		}
	}
	return n
}

// overlay puts a newer heartbeat's sample of m's GPU over the snapshot's
// values, so that the numbers agree with the sparklines drawn from the
// same heartbeats. It runs when a view is built, never per heartbeat.
func overlay(m *fleetv1.GpuMetrics, samples []sample) {
	for _, s := range samples {
		if uint32(s.idx) != m.GetGpuIndex() {
			continue
		}
		m.UtilizationGpuPercent = uint32(s.util)
		m.TemperatureCelsius = uint32(s.temp)
		m.PowerUsageMilliwatts = s.power
		m.MemoryUsedBytes = s.mem
		if s.procs == 0 {
			// The processes the snapshot listed have ended (a drain
			// killed them); a heartbeat counts them but cannot name them.
			m.Processes = nil
		}
		return
	}
}

// heldMetrics is the latest snapshot kept, nil for none, and whether the
// agent registered since it was kept. The caller holds mu, which keep's
// callers hold too.
func (ns *nodeState) heldMetrics() (held *healthdelta.Held, newRun bool) {
	ns.live.mu.Lock()
	defer ns.live.mu.Unlock()
	return ns.live.metrics, ns.live.newRun
}

// keep stores a report's snapshot, held compactly (see healthdelta.Held),
// and the agent's drop counter.
func (ns *nodeState) keep(h *healthdelta.Held, dropped uint64) {
	ns.live.mu.Lock()
	defer ns.live.mu.Unlock()
	if h != ns.live.metrics {
		ns.live.metrics = h
		ns.live.metricsAfter = ns.live.lastHeartbeat.UnixNano()
		ns.live.newRun = false
	}
	ns.live.dropped = dropped
}

// durable strips what lives only in memory before a node is stored.
func durable(n *fleetv1.Node) *fleetv1.Node {
	d := proto.CloneOf(n)
	d.Reachability = fleetv1.Reachability_REACHABILITY_UNSPECIFIED
	d.LastHeartbeatAt = nil
	d.Samples = nil
	d.DroppedEvents = 0
	for _, g := range d.Gpus {
		g.Metrics = nil
	}
	return d
}

// shallowCopy copies a node's fields but shares its GPUs, labels and
// timestamps, which are never changed in place once stored: every change
// clones the node first. A snapshot of a hundred thousand nodes thus
// copies no GPUs. TestShallowCopyCopiesEveryField keeps this list whole.
func shallowCopy(src *fleetv1.Node) *fleetv1.Node {
	return &fleetv1.Node{
		NodeId:             src.NodeId,
		Hostname:           src.Hostname,
		Labels:             src.Labels,
		Lifecycle:          src.Lifecycle,
		LifecycleReason:    src.LifecycleReason,
		LifecycleBy:        src.LifecycleBy,
		LifecycleChangedAt: src.LifecycleChangedAt,
		CordonedByPolicy:   src.CordonedByPolicy,
		Health:             src.Health,
		HealthCause:        src.HealthCause,
		Remedy:             src.Remedy,
		Reachability:       src.Reachability,
		LastHeartbeatAt:    src.LastHeartbeatAt,
		RegisteredAt:       src.RegisteredAt,
		Gpus:               src.Gpus,
		DriverVersion:      src.DriverVersion,
		CudaVersion:        src.CudaVersion,
		AgentVersion:       src.AgentVersion,
		Simulated:          src.Simulated,
		Provider:           src.Provider,
		InstanceId:         src.InstanceId,
		Drain:              src.Drain,
		Samples:            src.Samples,
		DroppedEvents:      src.DroppedEvents,
		BootId:             src.BootId,
		KernelSeq:          src.KernelSeq,
		RemediesDisabled:   src.RemediesDisabled,
		Scheduler:          src.Scheduler,
		Pool:               src.Pool,
		CordonHeldBackAt:   src.CordonHeldBackAt,
	}
}
