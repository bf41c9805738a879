package controlplane

import (
	"context"
	"fmt"
	"strings"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// monitorInterval is how often the monitor looks at every node.
const monitorInterval = time.Second

// drainGrace is how long past a drain's deadline the control plane waits
// for the agent's report (a forced drain signals processes at the deadline)
// before it marks the node DRAINED itself.
const drainGrace = 30 * time.Second

// lastSeenEvery is how often heartbeat times are written to the store.
const lastSeenEvery = 30 * time.Second

// terminateRetry is how long a self-registered node's agent has to stop
// before a failed or lost TERMINATE command is sent again.
const terminateRetry = time.Minute

// expireEvery is how often quiet DEGRADED faults are looked for.
const expireEvery = 10 * time.Second

// monitor derives reachability from heartbeat ages and moves nodes on when a
// deadline passes: drains, provisioning, termination and retention.
func (f *Fleet) monitor(ctx context.Context) {
	t := f.clock.NewTicker(monitorInterval)
	defer t.Stop()
	var lastSave, lastExpire time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		now := f.clock.Now()
		f.checkNodes(ctx, now, now.Sub(lastExpire) >= expireEvery)
		if now.Sub(lastExpire) >= expireEvery {
			lastExpire = now
		}
		if now.Sub(lastSave) >= lastSeenEvery {
			f.saveLastSeen(ctx)
			lastSave = now
		}
	}
}

// Tick runs one monitor pass at the clock's current time; tests drive the
// monitor with it after advancing a fake clock.
func (f *Fleet) Tick(ctx context.Context) {
	f.checkNodes(ctx, f.clock.Now(), true)
}

func (f *Fleet) checkNodes(ctx context.Context, now time.Time, expire bool) {
	for _, ns := range f.all() {
		if ctx.Err() != nil {
			return
		}
		f.checkReachability(ns, now)
		if ns.delivered.Load() > 0 {
			f.redeliver(ctx, ns, now)
		}
		n := ns.node.Load()
		switch n.GetLifecycle() {
		case fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING:
			if d := n.GetDrain().GetDeadline(); d != nil && now.After(d.AsTime().Add(drainGrace)) {
				f.drainDeadline(ctx, ns)
			}
		case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING:
			f.advanceTermination(ctx, ns, now)
		case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING:
			if now.Sub(n.GetLifecycleChangedAt().AsTime()) > f.cfg.ProvisionTimeout.Duration {
				f.provisionTimedOut(ctx, n)
			}
		case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED:
			f.unprovision(ctx, ns)
		case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED:
			if now.Sub(n.GetLifecycleChangedAt().AsTime()) > f.cfg.TerminatedRetention.Duration {
				f.remove(ctx, ns)
			}
		}
		if expire && (n.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED || n.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY) {
			f.expireFaults(ctx, ns, now)
		}
	}
}

// checkReachability derives ONLINE, STALE and OFFLINE from the heartbeat
// age. A node not heard from since start stays UNKNOWN until the offline
// timeout has passed since start.
func (f *Fleet) checkReachability(ns *nodeState, now time.Time) {
	switch ns.node.Load().GetLifecycle() {
	case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING,
		fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED:
		return
	case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED:
		// A terminated node is gone, whatever its last heartbeat said.
		if ns.reachability() != fleetv1.Reachability_REACHABILITY_OFFLINE {
			f.setReachability(ns, fleetv1.Reachability_REACHABILITY_OFFLINE)
		}
		return
	}
	ns.rt.Lock()
	last := ns.lastHeartbeat
	ns.rt.Unlock()
	cur := ns.reachability()
	want := cur
	if last.IsZero() {
		if now.Sub(f.started) >= f.cfg.OfflineAfter.Duration {
			want = fleetv1.Reachability_REACHABILITY_OFFLINE
		}
	} else {
		switch age := now.Sub(last); {
		case age >= f.cfg.OfflineAfter.Duration:
			want = fleetv1.Reachability_REACHABILITY_OFFLINE
		case age >= f.cfg.StaleAfter.Duration:
			want = fleetv1.Reachability_REACHABILITY_STALE
		default:
			want = fleetv1.Reachability_REACHABILITY_ONLINE
		}
	}
	if want != cur {
		f.setReachability(ns, want)
		f.log.Info("reachability changed", "node", ns.node.Load().GetNodeId(), "from", cur, "to", want)
	}
}

// drainDeadline ends a drain whose deadline passed without a report.
func (f *Fleet) drainDeadline(ctx context.Context, ns *nodeState) {
	_, err := f.operate(ctx, ns.node.Load().GetNodeId(), func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		if n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING {
			return nil
		}
		closeOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), fleetv1.CommandStatus_COMMAND_STATUS_FAILED, "deadline passed without a report from the agent", now)
		setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED, "drain deadline passed", now)
		return nil
	})
	if err != nil {
		f.log.Warn("ending drain at deadline", "node", ns.node.Load().GetNodeId(), "err", err)
	}
}

// redeliverSlack is how long past the command poll timeout a delivered
// command may go without an answer from the agent before it is handed out
// again: the answer that carried it was lost, or the agent died with it.
// Agents recognise a command they already have by its id.
const redeliverSlack = 30 * time.Second

// maxRedeliveries is how often an unanswered command is handed out again
// before it fails.
const maxRedeliveries = 4

// redeliver puts delivered commands the agent never answered back to
// PENDING.
func (f *Fleet) redeliver(ctx context.Context, ns *nodeState, now time.Time) {
	cutoff := now.Add(-f.cfg.CommandPollTimeout.Duration - redeliverSlack)
	_, err := f.operate(ctx, ns.node.Load().GetNodeId(), func(ns *nodeState, _ *fleetv1.Node, c *change, now time.Time) error {
		unanswered := func(cmd *fleetv1.Command) bool {
			return cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED && cmd.GetUpdatedAt().AsTime().Before(cutoff)
		}
		// An agent that took a command and never answers, however often
		// it gets it, will not: the command fails rather than cycle for
		// ever.
		gaveUp := func(cmd *fleetv1.Command) bool {
			return unanswered(cmd) && ns.redelivered[cmd.GetId()] >= maxRedeliveries
		}
		closeOpen(ns, c, gaveUp, fleetv1.CommandStatus_COMMAND_STATUS_FAILED,
			fmt.Sprintf("the agent did not answer after %d deliveries", maxRedeliveries+1), now)
		requeue(ns, c, func(cmd *fleetv1.Command) bool {
			if !unanswered(cmd) {
				return false
			}
			if ns.redelivered == nil {
				ns.redelivered = make(map[string]int)
			}
			ns.redelivered[cmd.GetId()]++
			return true
		}, now)
		return nil
	})
	if err != nil {
		f.log.Warn("redelivering unanswered commands", "node", ns.node.Load().GetNodeId(), "err", err)
	}
}

// advanceTermination moves a TERMINATING node on: it waits for the drain
// (or its deadline), then stops the instance through its provider, or asks
// a self-registered node's agent to stop.
func (f *Fleet) advanceTermination(ctx context.Context, ns *nodeState, now time.Time) {
	id := ns.node.Load().GetNodeId()
	var stopVia Provider
	_, err := f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		if n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING || ns.stopping {
			return nil
		}
		if drain := openOf(ns, fleetv1.CommandType_COMMAND_TYPE_DRAIN); drain != nil {
			d := drain.GetDrain().GetDeadline()
			switch {
			case ns.reachability() == fleetv1.Reachability_REACHABILITY_OFFLINE:
				// Nobody is left to finish it, as when terminate skips the
				// drain of an offline node.
				closeOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), fleetv1.CommandStatus_COMMAND_STATUS_FAILED, "node went offline during the drain", now)
			case d == nil || !now.After(d.AsTime().Add(drainGrace)):
				return nil
			default:
				closeOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), fleetv1.CommandStatus_COMMAND_STATUS_FAILED, "deadline passed without a report from the agent", now)
			}
		}
		if n.GetProvider() != "" {
			p, ok := f.providers.get(n.GetProvider())
			if !ok {
				markTerminated(ns, n, c, "terminated: provider "+n.GetProvider()+" is not configured; the instance was not stopped", now)
				return nil
			}
			ns.stopping = true
			stopVia = p
			return nil
		}
		// A node not yet heard from since a restart may still be there: it
		// counts as terminated only once it is OFFLINE.
		if ns.reachability() == fleetv1.Reachability_REACHABILITY_OFFLINE {
			markTerminated(ns, n, c, "terminated: node is offline", now)
			return nil
		}
		if openOf(ns, fleetv1.CommandType_COMMAND_TYPE_TERMINATE) == nil && now.Sub(ns.terminateQueued) >= terminateRetry {
			// Asked again only after a while: an agent that failed to stop
			// would fail the same way every second.
			ns.terminateQueued = now
			_, err := f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_TERMINATE, n.GetLifecycleReason(), "operator", now)
			return err
		}
		return nil
	})
	if err != nil {
		f.log.Warn("advancing termination", "node", id, "err", err)
		return
	}
	if stopVia != nil {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.stopInstance(ctx, ns, stopVia)
		}()
	}
}

// stoppingInstance marks the reason of a failed provision whose instance
// is still to be stopped; a restart picks the work up from it.
const stoppingInstance = "stopping its instance "

// provisionTimedOut fails a provision whose agent never registered and
// has its instance stopped, which would otherwise run on unseen.
func (f *Fleet) provisionTimedOut(ctx context.Context, n *fleetv1.Node) {
	reason := "agent did not register within " + f.cfg.ProvisionTimeout.Duration.String()
	if _, ok := f.providers.get(n.GetProvider()); !ok || n.GetInstanceId() == "" {
		f.provisionFailed(n.GetNodeId(), reason)
		return
	}
	failed := false
	_, err := f.operate(ctx, n.GetNodeId(), func(ns *nodeState, n *fleetv1.Node, _ *change, now time.Time) error {
		if n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING {
			return nil // the agent registered meanwhile, or a pass got there first
		}
		setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED, reason+"; "+stoppingInstance+n.GetInstanceId(), now)
		ns.unprovision, failed = true, true
		return nil
	})
	if err != nil {
		f.log.Warn("recording a failed provision", "node", n.GetNodeId(), "err", err)
		return
	}
	if failed {
		f.log.Warn("provision failed", "node", n.GetNodeId(), "reason", reason)
		f.unprovision(ctx, f.get(n.GetNodeId()))
	}
}

// unprovision stops the instance of a provision that timed out, once at a
// time per node; a failure is retried on the next monitor pass.
func (f *Fleet) unprovision(ctx context.Context, ns *nodeState) {
	if ns == nil {
		return
	}
	var p Provider
	var inst Instance
	_ = f.nodeLocked(ns.node.Load().GetNodeId(), false, func(ns *nodeState, cur *fleetv1.Node) error {
		if !ns.unprovision || ns.stopping {
			return nil
		}
		pr, ok := f.providers.get(cur.GetProvider())
		if !ok {
			ns.unprovision = false
			return nil
		}
		ns.stopping = true
		p, inst = pr, Instance{NodeID: cur.GetNodeId(), InstanceID: cur.GetInstanceId()}
		return nil
	})
	if p == nil {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		stopErr := p.Terminate(ctx, inst)
		if stopErr != nil {
			clearStopping(ns)
			f.log.Warn("could not stop the instance of a failed provision; will retry", "node", inst.NodeID, "provider", p.Name(), "err", stopErr)
			return
		}
		_, err := f.operate(ctx, inst.NodeID, func(ns *nodeState, n *fleetv1.Node, _ *change, now time.Time) error {
			ns.stopping, ns.unprovision = false, false
			n.LifecycleReason = strings.Replace(n.GetLifecycleReason(), stoppingInstance+inst.InstanceID, "instance "+inst.InstanceID+" stopped", 1)
			return nil
		})
		if err != nil {
			// The stop is not recorded: the next pass stops the instance
			// again (which succeeds) and records it.
			clearStopping(ns)
			f.log.Warn("recording a stopped instance", "node", inst.NodeID, "err", err)
			return
		}
		f.log.Info("instance of a failed provision stopped", "node", inst.NodeID, "provider", p.Name())
	}()
}

// stopInstance stops a node's instance through its provider and marks the
// node TERMINATED; a failure is retried on a later monitor pass.
func (f *Fleet) stopInstance(ctx context.Context, ns *nodeState, p Provider) {
	n := ns.node.Load()
	err := p.Terminate(ctx, Instance{NodeID: n.GetNodeId(), InstanceID: n.GetInstanceId()})
	_, opErr := f.operate(ctx, n.GetNodeId(), func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		ns.stopping = false
		if err != nil || n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING {
			return nil
		}
		markTerminated(ns, n, c, "terminated: instance stopped by "+p.Name(), now)
		return nil
	})
	if opErr != nil {
		// A failed save restored the flag: clear it, so the next pass stops
		// the instance again (stopping a stopped instance succeeds) and
		// records it.
		clearStopping(ns)
	}
	switch {
	case err != nil:
		f.log.Warn("provider could not stop instance; will retry", "node", n.GetNodeId(), "provider", p.Name(), "err", err)
	case opErr != nil:
		f.log.Warn("recording termination", "node", n.GetNodeId(), "err", opErr)
	default:
		f.log.Info("node terminated", "node", n.GetNodeId(), "provider", p.Name())
	}
}

// clearStopping ends a provider stop that was not recorded, so a later
// pass tries again.
func clearStopping(ns *nodeState) {
	ns.mu.Lock()
	ns.stopping = false
	ns.mu.Unlock()
}

// remove drops a terminated node past its retention.
func (f *Fleet) remove(ctx context.Context, ns *nodeState) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.node.Load().GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED || f.get(ns.node.Load().GetNodeId()) != ns {
		return // changed or removed meanwhile
	}
	if err := f.commit(ctx, ns, &change{remove: true}); err != nil {
		f.log.Warn("removing terminated node", "node", ns.node.Load().GetNodeId(), "err", err)
	}
}

// expireFaults clears DEGRADED faults that have been quiet for the hold.
func (f *Fleet) expireFaults(ctx context.Context, ns *nodeState, now time.Time) {
	_, err := f.operate(ctx, ns.node.Load().GetNodeId(), func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		for _, g := range n.GetGpus() {
			c.events = append(c.events, f.policy.Expire(g, now)...)
		}
		rollupNode(n)
		return nil
	})
	if err != nil {
		f.log.Warn("expiring faults", "node", ns.node.Load().GetNodeId(), "err", err)
	}
}
