package fleet

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// change is one durable change of one node, built while its lock is held.
type change struct {
	node     *fleetv1.Node // the node's new durable state; nil if unchanged
	events   []*fleetv1.HealthEvent
	commands []*fleetv1.Command
	insert   bool // the node is new: add it to the fleet
	remove   bool // the node leaves the fleet with everything stored for it
	// again are those of commands in a status the command reached before
	// (handed out again, or an answer repeated): saved and published, but
	// not told to the observer.
	again []*fleetv1.Command
	// reach, when set, is the node's reachability after the change.
	reach fleetv1.Reachability
	// dropLive drops the node's heartbeat samples and metrics once the
	// change is saved (the node was terminated).
	dropLive bool
	// autoCordonedAt is when the policy cordoned the node in this change;
	// the breaker forgets that cordon if the change cannot be saved.
	autoCordonedAt time.Time
	// audit records what the policy did in this change, in its write.
	audit []*store.AuditEntry
	// saveBreaker stores the auto-cordon breaker's state in the change's
	// write: the policy cordoned the node, or the breaker held it back.
	saveBreaker bool
}

func (c *change) empty() bool {
	return c.node == nil && len(c.events) == 0 && len(c.commands) == 0 && !c.remove && c.reach == 0 &&
		len(c.audit) == 0 && !c.saveBreaker
}

// firstReached is c's commands but those in again.
func (c *change) firstReached() []*fleetv1.Command {
	if len(c.again) == 0 {
		return c.commands
	}
	out := make([]*fleetv1.Command, 0, len(c.commands))
	for _, cmd := range c.commands {
		if !slices.Contains(c.again, cmd) {
			out = append(out, cmd)
		}
	}
	return out
}

// commit writes c to the store (synced), then installs and publishes it.
// The caller holds ns.mu.
func (f *Fleet) commit(ctx context.Context, ns *nodeState, c *change) (err error) {
	if c.empty() {
		return nil
	}
	defer func() {
		if err != nil && !c.autoCordonedAt.IsZero() {
			f.breaker.forget(c.autoCordonedAt)
		}
	}()
	id := c.node.GetNodeId()
	if id == "" {
		id = ns.id()
	}
	for _, e := range c.events {
		if e.GetId() == "" {
			eid, err := f.newID(ctx, "ev")
			if err != nil {
				return err
			}
			e.Id = eid
		}
		e.NodeId = id
	}
	for _, a := range c.audit {
		aid, err := f.newID(ctx, "au")
		if err != nil {
			return err
		}
		a.ID = aid
	}
	w := store.Write{Events: c.events, Commands: c.commands, Audit: c.audit}
	if c.node != nil {
		w.Nodes = []*fleetv1.Node{durable(c.node)}
	}
	if c.remove {
		w.DeleteNodes = []string{id}
	}
	if err := f.apply(ctx, w, c.saveBreaker); err != nil {
		f.log.Error("store write failed", "node", id, "err", err)
		return apierr.NotSaved()
	}
	f.observer.Committed(c.events, c.firstReached(), !c.autoCordonedAt.IsZero())
	if c.node != nil {
		var prev *fleetv1.Node
		if !c.insert {
			prev = ns.node.Load()
		}
		f.observer.NodeChanged(prev, c.node)
	}
	if c.dropLive {
		ns.live.mu.Lock()
		ns.live.samples, ns.live.metrics = nil, nil
		ns.live.mu.Unlock()
	}
	if c.remove {
		for _, fn := range f.onRemove {
			fn(id)
		}
	}
	f.hub.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
		if c.insert {
			f.mu.Lock()
			f.putNode(c.node.GetNodeId(), ns)
			f.mu.Unlock()
		}
		if c.remove {
			f.mu.Lock()
			f.deleteNode(id)
			f.mu.Unlock()
			ns.removed.Store(true)
			f.swap(ns, nil, 0, true)
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeRemoved{NodeRemoved: &controlplanev1.NodeRemoved{NodeId: id}}})
			return
		}
		for _, e := range c.events {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_HealthEvent{HealthEvent: e}})
		}
		for _, cmd := range c.commands {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_Command{Command: cmd}})
		}
		if c.node != nil || c.reach != 0 {
			next, reach := c.node, c.reach
			if next == nil {
				next = ns.node.Load()
			}
			if reach == 0 {
				reach = ns.reachability()
			}
			f.swap(ns, next, reach, !c.insert)
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: ns.view()}})
		}
	})
	// A change may bring the node's next deadline closer: the monitor's
	// next pass looks at it and schedules it anew.
	if c.remove {
		// The agent's command stream, if one waits, ends now with
		// NotRegistered, which sends the agent to register again.
		ns.wakeWaiters()
		f.wheel.drop(ns)
	} else {
		f.wheel.schedule(ns, f.clock.Now())
	}
	return nil
}

// apply writes w, with the breaker's state when withBreaker is set.
func (f *Fleet) apply(ctx context.Context, w store.Write, withBreaker bool) error {
	if withBreaker {
		f.breaker.saving.Lock()
		defer f.breaker.saving.Unlock()
		w.Breaker = f.breaker.saved()
	}
	return f.store.Apply(ctx, w)
}

// setReachability publishes a reachability change as a node upsert.
func (f *Fleet) setReachability(ns *nodeState, r fleetv1.Reachability) {
	f.hub.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
		if ns.reachability() == r || ns.removed.Load() {
			return
		}
		if r == fleetv1.Reachability_REACHABILITY_ONLINE && ns.node.Load().GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED {
			// A heartbeat that raced the termination.
			return
		}
		f.swap(ns, ns.node.Load(), r, true)
		emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: ns.view()}})
	})
}

// swap installs a node's new durable state and reachability and keeps the
// totals right. The caller holds the hub lock; nil next removes the node,
// and a node not yet in the fleet has no previous share.
func (f *Fleet) swap(ns *nodeState, next *fleetv1.Node, reach fleetv1.Reachability, inFleet bool) {
	f.totalsMu.Lock()
	defer f.totalsMu.Unlock()
	if inFleet {
		count(f.totals, ns.node.Load(), ns.reachability(), -1)
		countFaults(f.faults, ns.node.Load(), -1)
	}
	if next == nil {
		return
	}
	count(f.totals, next, reach, 1)
	countFaults(f.faults, next, 1)
	if ns.node.Swap(next) != next {
		// What a snapshot kept is the encoding of the state replaced.
		ns.enc.Store(nil)
	}
	ns.reach.Store(int32(reach))
}

// count adds (sign 1) or takes away (sign -1) one node's share of the
// fleet's totals.
func count(s *fleetv1.FleetSummary, n *fleetv1.Node, reach fleetv1.Reachability, sign int32) {
	d := uint32(sign) // adding uint32(-1) subtracts one
	bump := func(p *uint32) { *p += d }
	bump(&s.Nodes)
	switch n.GetLifecycle() {
	case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING:
		bump(&s.Provisioning)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE:
		bump(&s.Active)
		if n.GetCordonHeldBackAt() != nil {
			bump(&s.HeldBack)
		}
	case fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED:
		bump(&s.Cordoned)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING:
		bump(&s.Draining)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED:
		bump(&s.Drained)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING:
		bump(&s.Terminating)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED:
		// Terminated nodes count only as terminated.
		bump(&s.Terminated)
		return
	case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED:
		bump(&s.ProvisionFailed)
	}
	switch n.GetHealth() {
	case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
		bump(&s.Healthy)
	case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		bump(&s.Degraded)
	case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
		bump(&s.Unhealthy)
	default:
		bump(&s.HealthUnknown)
	}
	switch reach {
	case fleetv1.Reachability_REACHABILITY_ONLINE:
		bump(&s.Online)
	case fleetv1.Reachability_REACHABILITY_STALE:
		bump(&s.Stale)
	case fleetv1.Reachability_REACHABILITY_OFFLINE:
		bump(&s.Offline)
	default:
		bump(&s.ReachabilityUnknown)
	}
	for _, g := range n.GetGpus() {
		bump(&s.Gpus)
		switch g.GetHealth() {
		case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
			bump(&s.GpusHealthy)
		case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
			bump(&s.GpusDegraded)
		case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
			bump(&s.GpusUnhealthy)
		}
	}
}

// newID hands out a command or event id.
func (f *Fleet) newID(ctx context.Context, prefix string) (string, error) {
	seq, err := f.ids.next(ctx)
	if err != nil {
		f.log.Error("id allocation failed", "err", err)
		return "", apierr.NotSaved()
	}
	return store.FormatSeq(prefix, seq), nil
}

// counter hands out increasing numbers that stay increasing across restarts:
// it reserves blocks by writing a ceiling to the store, and after a restart
// starts above the last ceiling. A clean close seals it: the ceiling is
// set to the last number handed out, with a mark saying so, and the next
// run continues right after it instead of past a whole unused block.
type counter struct {
	name  string
	store store.Store

	mu      sync.Mutex
	value   uint64
	ceiling uint64
}

const counterBlock = 100000

// sealedSuffix names the counter that marks name's ceiling as written by a
// clean close. It counts only while equal to the ceiling: the next
// reservation raises the ceiling past it, so a run that dies afterwards is
// not taken for a clean one.
const sealedSuffix = ".sealed"

// loadCounter starts counter name above what the previous runs handed out:
// at its stored ceiling, and slack beyond it unless that ceiling was sealed
// by a clean close. A fresh store counts from 1.
func loadCounter(name string, stored map[string]uint64, slack uint64, st store.Store) *counter {
	start, ok := stored[name]
	if sealed, clean := stored[name+sealedSuffix]; ok && (!clean || sealed != start) {
		start += slack
	}
	return &counter{name: name, store: st, value: start, ceiling: start}
}

func (c *counter) next(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.value >= c.ceiling {
		ceil := c.value + counterBlock
		if err := c.store.Apply(ctx, store.Write{Counters: map[string]uint64{c.name: ceil}}); err != nil {
			return 0, fmt.Errorf("reserve %s: %w", c.name, err)
		}
		c.ceiling = ceil
	}
	c.value++
	return c.value, nil
}

func (c *counter) current() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value
}

// force takes the next value without reserving a block; used only when the
// store cannot record a new ceiling, so the change can still go out.
func (c *counter) force() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value++
	return c.value
}

// seal stores the last number handed out as the ceiling, marked as a
// clean close. A number taken afterwards reserves a block again, which
// raises the ceiling past the mark.
func (c *counter) seal(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.store.Apply(ctx, store.Write{Counters: map[string]uint64{c.name: c.value, c.name + sealedSuffix: c.value}}); err != nil {
		return fmt.Errorf("seal %s: %w", c.name, err)
	}
	c.ceiling = c.value
	return nil
}
