package fleet

import (
	"context"
	"strings"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// monitorInterval is how often the monitor looks at the nodes due.
const monitorInterval = time.Second

// DrainGrace is how long past a drain's deadline the control plane waits
// for the agent's report (a forced drain signals processes at the deadline)
// before it marks the node DRAINED itself.
const DrainGrace = 30 * time.Second

// lastSeenEvery is how often heartbeat times are written to the store.
const lastSeenEvery = 30 * time.Second

// TerminateRetry is how long a self-registered node's agent has to stop
// before a failed or lost TERMINATE command is sent again.
const TerminateRetry = time.Minute

// expireEvery is how often a DEGRADED or UNHEALTHY node's quiet faults are
// looked for.
const expireEvery = 10 * time.Second

// monitor derives reachability from heartbeat ages and moves nodes on when a
// deadline passes: drains, provisioning, termination and retention. Each
// second it looks only at the nodes whose next deadline came (see wheel).
func (f *Fleet) monitor(ctx context.Context) {
	t := f.clock.NewTicker(monitorInterval)
	defer t.Stop()
	var lastSave time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		now := f.clock.Now()
		f.checkDue(ctx, now)
		if now.Sub(lastSave) >= lastSeenEvery {
			f.saveLastSeen(ctx)
			lastSave = now
		}
	}
}

// Tick runs one monitor pass at the clock's current time; tests drive the
// monitor with it after advancing a fake clock.
func (f *Fleet) Tick(ctx context.Context) {
	f.checkDue(ctx, f.clock.Now())
}

// checkDue looks at the nodes due at now, as the monitor's pass, and
// schedules each for the next time it is due. One pass runs at a time, so
// a pass that returns has looked at every node due when it began.
func (f *Fleet) checkDue(ctx context.Context, now time.Time) {
	f.passing.Lock()
	defer f.passing.Unlock()
	due := f.wheel.take(now)
	for i, ns := range due {
		if ctx.Err() != nil {
			for _, ns := range due[i:] {
				f.wheel.schedule(ns, now)
			}
			return
		}
		if ns.removed.Load() {
			continue
		}
		f.checkNode(ctx, ns, now)
		if at := f.nextDue(ns, now); !at.IsZero() {
			f.wheel.schedule(ns, at)
		}
	}
}

// checkNode is the monitor's look at one node.
func (f *Fleet) checkNode(ctx context.Context, ns *nodeState, now time.Time) {
	f.checkReachability(ns, now)
	if ns.delivered.Load() > 0 {
		f.redeliver(ctx, ns, now)
	}
	n := ns.node.Load()
	switch n.GetLifecycle() {
	case draining:
		if d := n.GetDrain().GetDeadline(); d != nil && now.After(d.AsTime().Add(DrainGrace)) {
			f.drainDeadline(ctx, ns)
		}
	case terminating:
		f.advanceTermination(ctx, ns, now)
	case provisioning:
		if now.Sub(n.GetLifecycleChangedAt().AsTime()) > f.cfg.ProvisionTimeout {
			f.provisionTimedOut(ctx, n)
		}
	case provisionFailed:
		f.unprovision(ctx, ns)
		// A failed node whose instance is stopped (or never ran) goes
		// as a terminated one does, so that a pool retrying launches
		// does not pile failures up.
		if !strings.Contains(n.GetLifecycleReason(), stoppingInstance) && now.Sub(n.GetLifecycleChangedAt().AsTime()) > f.cfg.TerminatedRetention {
			f.remove(ctx, ns)
		}
	case terminated:
		if now.Sub(n.GetLifecycleChangedAt().AsTime()) > f.cfg.TerminatedRetention {
			f.remove(ctx, ns)
		}
	}
	if !faulty(n) {
		f.wheel.healthy(ns)
	} else if f.wheel.expireDue(ns, now) {
		f.expireFaults(ctx, ns, now)
	}
}

// faulty reports whether n has faults that may expire.
func faulty(n *fleetv1.Node) bool {
	return n.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED || n.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
}

// nextDue is the earliest time after a look at now that the monitor must
// look at ns again, or zero for never (until a change schedules it): its
// next reachability transition, its first delivered command's redelivery
// and its lifecycle's deadline. A due time already past, or now, is the
// next pass: the node waits on something outside the fleet (a provider,
// an agent, a launch) and is looked at every second as it waits.
func (f *Fleet) nextDue(ns *nodeState, now time.Time) time.Time {
	if !ns.mu.TryLock() {
		// A change is under way, and what this would read is not settled:
		// the next pass looks again.
		return now
	}
	defer ns.mu.Unlock()
	n := ns.node.Load()
	due := f.nextReachCheck(ns, n, now)
	soonest := func(t time.Time) {
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	if ns.delivered.Load() > 0 {
		for _, cmd := range ns.book.open {
			if cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED {
				soonest(cmd.GetUpdatedAt().AsTime().Add(f.cfg.CommandPollTimeout + RedeliverSlack))
			}
		}
	}
	switch n.GetLifecycle() {
	case draining:
		if d := n.GetDrain().GetDeadline(); d != nil {
			soonest(d.AsTime().Add(DrainGrace))
		}
	case terminating:
		soonest(now)
	case provisioning:
		soonest(n.GetLifecycleChangedAt().AsTime().Add(f.cfg.ProvisionTimeout))
	case provisionFailed:
		if strings.Contains(n.GetLifecycleReason(), stoppingInstance) {
			soonest(now)
		} else {
			soonest(n.GetLifecycleChangedAt().AsTime().Add(f.cfg.TerminatedRetention))
		}
	case terminated:
		soonest(n.GetLifecycleChangedAt().AsTime().Add(f.cfg.TerminatedRetention))
	}
	if faulty(n) {
		soonest(f.wheel.nextExpiry(ns, now))
	}
	return due
}

// nextReachCheck is when ns's reachability may next change, or zero if it
// cannot without a change to the node. A heartbeat brings a node back
// ONLINE at once without telling the wheel (see Heartbeat), so a node not
// ONLINE is looked at again within StaleAfter: a node that heartbeats once
// and stops turns STALE on time.
func (f *Fleet) nextReachCheck(ns *nodeState, n *fleetv1.Node, now time.Time) time.Time {
	switch n.GetLifecycle() {
	case provisioning,
		provisionFailed:
		return time.Time{}
	case terminated:
		if ns.reachability() != fleetv1.Reachability_REACHABILITY_OFFLINE {
			return now
		}
		return time.Time{}
	}
	ns.live.mu.Lock()
	last := ns.live.lastHeartbeat
	ns.live.mu.Unlock()
	next := now.Add(f.cfg.StaleAfter)
	if last.IsZero() {
		last = f.started
	}
	for _, at := range []time.Time{last.Add(f.cfg.StaleAfter), last.Add(f.cfg.OfflineAfter)} {
		if at.After(now) {
			return minTime(next, at)
		}
	}
	return next
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// checkReachability derives ONLINE, STALE and OFFLINE from the heartbeat
// age. A node not heard from since start stays UNKNOWN until the offline
// timeout has passed since start.
func (f *Fleet) checkReachability(ns *nodeState, now time.Time) {
	switch ns.node.Load().GetLifecycle() {
	case provisioning,
		provisionFailed:
		return
	case terminated:
		// A terminated node is gone, whatever its last heartbeat said.
		if ns.reachability() != fleetv1.Reachability_REACHABILITY_OFFLINE {
			f.setReachability(ns, fleetv1.Reachability_REACHABILITY_OFFLINE)
		}
		return
	}
	ns.live.mu.Lock()
	last := ns.live.lastHeartbeat
	ns.live.mu.Unlock()
	cur := ns.reachability()
	want := cur
	if last.IsZero() {
		if now.Sub(f.started) >= f.cfg.OfflineAfter {
			want = fleetv1.Reachability_REACHABILITY_OFFLINE
		}
	} else {
		switch age := now.Sub(last); {
		case age >= f.cfg.OfflineAfter:
			want = fleetv1.Reachability_REACHABILITY_OFFLINE
		case age >= f.cfg.StaleAfter:
			want = fleetv1.Reachability_REACHABILITY_STALE
		default:
			want = fleetv1.Reachability_REACHABILITY_ONLINE
		}
	}
	if want != cur {
		f.setReachability(ns, want)
		f.log.Info("reachability changed", "node", ns.id(), "from", cur, "to", want)
	}
}

// drainDeadline ends a drain whose deadline passed without a report.
func (f *Fleet) drainDeadline(ctx context.Context, ns *nodeState) {
	_, err := f.operate(ctx, ns.id(), func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		if move(n, actDrainEnded, "drain deadline passed", byControlPlane, now) != nil {
			return nil // no longer draining
		}
		closeOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), fleetv1.CommandStatus_COMMAND_STATUS_FAILED, "deadline passed without a report from the agent", now)
		return nil
	})
	if err != nil {
		f.log.Warn("ending drain at deadline", "node", ns.id(), "err", err)
	}
}

// remove drops a terminated node, or a failed one whose instance is
// stopped, past its retention.
func (f *Fleet) remove(ctx context.Context, ns *nodeState) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	n := ns.node.Load()
	done := n.GetLifecycle() == terminated ||
		(n.GetLifecycle() == provisionFailed && !strings.Contains(n.GetLifecycleReason(), stoppingInstance))
	if !done || f.get(ns.id()) != ns {
		return // changed or removed meanwhile
	}
	if err := f.commit(ctx, ns, &change{remove: true}); err != nil {
		f.log.Warn("removing terminated node", "node", ns.id(), "err", err)
		return
	}
	f.mu.Lock()
	delete(f.lookedUp, ns.id())
	f.mu.Unlock()
}

// expireFaults clears DEGRADED faults that have been quiet for the hold.
func (f *Fleet) expireFaults(ctx context.Context, ns *nodeState, now time.Time) {
	_, err := f.operate(ctx, ns.id(), func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		for _, g := range n.GetGpus() {
			c.events = append(c.events, f.policy.Expire(g, now)...)
		}
		rollupNode(n)
		return nil
	})
	if err != nil {
		f.log.Warn("expiring faults", "node", ns.id(), "err", err)
	}
}
