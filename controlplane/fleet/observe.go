package fleet

import (
	"iter"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// What the fleet tells its observer (the control plane's metrics) and what
// a scrape reads of it. Counts come from the totals kept as nodes change,
// so a scrape visits no node but for the per-node health it asks for.

// Observer hears what the fleet did once the store has it, so that nothing
// it counts is a change the store refused.
type Observer interface {
	// Committed is told of one change's events once they are saved, of
	// its commands that reached their status for the first time (not a
	// command put back to PENDING to be handed out again, nor its second
	// delivery), and whether the policy cordoned the node in it. The
	// node's lock is held: it must not block.
	Committed(events []*fleetv1.HealthEvent, commands []*fleetv1.Command, autoCordoned bool)
	// NodeChanged is told of a node's durable state once a change of it
	// is saved: prev is what it was (nil for a node new to the fleet),
	// next what it is now. The node's lock is held: it must not block.
	NodeChanged(prev, next *fleetv1.Node)
	// BreakerTripped is told when the auto-cordon breaker trips, with its
	// status then. The breaker lives in memory: this is the one thing told
	// that the store does not hold. It must not block.
	BreakerTripped(status *fleetv1.BreakerStatus)
	// Resynced is told of each watcher that fell behind and is sent a
	// fresh snapshot.
	Resynced()
}

// noObserver is the observer of a fleet given none.
type noObserver struct{}

func (noObserver) Committed([]*fleetv1.HealthEvent, []*fleetv1.Command, bool) {}
func (noObserver) Resynced()                                                  {}
func (noObserver) NodeChanged(_, _ *fleetv1.Node)                             {}
func (noObserver) BreakerTripped(*fleetv1.BreakerStatus)                      {}

// Gauges are the fleet's figures at one moment, for a scrape.
type Gauges struct {
	// Summary is the fleet's totals.
	Summary *fleetv1.FleetSummary
	// Faults counts the active GPU faults of nodes not terminated, by
	// remedy.
	Faults map[fleetv1.Remedy]uint32
	// Breaker is the auto-cordon breaker's status.
	Breaker *fleetv1.BreakerStatus
	// Revision is the fleet's revision.
	Revision uint64
	// Watchers is the number of open watch streams, and DeepestQueue the
	// most changes waiting for any one of them.
	Watchers, DeepestQueue int
}

// Gauges reads the fleet's kept totals; it visits no node.
func (f *Fleet) Gauges() Gauges {
	g := Gauges{Breaker: f.breaker.status(f.clock.Now()), Revision: f.hub.Revision()}
	g.Watchers, g.DeepestQueue = f.hub.Stats()
	g.Summary = f.summary()
	f.totalsMu.Lock()
	defer f.totalsMu.Unlock()
	g.Faults = make(map[fleetv1.Remedy]uint32, len(f.faults))
	for r, n := range f.faults {
		if n > 0 {
			g.Faults[r] = n
		}
	}
	return g
}

// NodeHealth yields the id and health of every node but the terminated,
// which no longer count towards the fleet's health. The nodes are listed
// first, so no lock is held while the caller works.
func (f *Fleet) NodeHealth() iter.Seq2[string, fleetv1.HealthStatus] {
	return func(yield func(string, fleetv1.HealthStatus) bool) {
		for _, ns := range f.all() {
			n := ns.node.Load()
			if n.GetLifecycle() == terminated {
				continue
			}
			if !yield(n.GetNodeId(), n.GetHealth()) {
				return
			}
		}
	}
}

// countFaults adds (sign 1) or takes away (sign -1) one node's active GPU
// faults, by remedy, as count does its share of the totals.
func countFaults(byRemedy map[fleetv1.Remedy]uint32, n *fleetv1.Node, sign int32) {
	if n.GetLifecycle() == terminated {
		return
	}
	for _, g := range n.GetGpus() {
		for _, fault := range g.GetFaults() {
			byRemedy[fault.GetRemedy()] += uint32(sign)
		}
	}
}
