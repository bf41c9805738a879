package fleet

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// advanceTermination moves a TERMINATING node on: it waits for the drain
// (or its deadline), then stops the instance through its provider, or asks
// a self-registered node's agent to stop.
func (f *Fleet) advanceTermination(ctx context.Context, ns *nodeState, now time.Time) {
	id := ns.id()
	var stopVia provider.Provider
	_, err := f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		if n.GetLifecycle() != terminating || ns.book.stopping {
			return nil
		}
		if drain := openOf(ns, fleetv1.CommandType_COMMAND_TYPE_DRAIN); drain != nil {
			d := drain.GetDrain().GetDeadline()
			switch {
			case ns.reachability() == fleetv1.Reachability_REACHABILITY_OFFLINE:
				// Nobody is left to finish it, as when terminate skips the
				// drain of an offline node.
				closeOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), fleetv1.CommandStatus_COMMAND_STATUS_FAILED, "node went offline during the drain", now)
			case d == nil || !now.After(d.AsTime().Add(DrainGrace)):
				return nil
			default:
				closeOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), fleetv1.CommandStatus_COMMAND_STATUS_FAILED, "deadline passed without a report from the agent", now)
			}
		}
		if n.GetProvider() != "" {
			if n.GetInstanceId() == "" && f.isLaunching(id) {
				// Its launch has yet to say what to stop.
				return nil
			}
			p, ok := f.providers.Get(n.GetProvider())
			if !ok {
				markTerminated(ns, n, c, "terminated: provider "+n.GetProvider()+" is not configured; the instance was not stopped", now)
				return nil
			}
			ns.book.stopping = true
			stopVia = p
			return nil
		}
		// A node not yet heard from since a restart may still be there: it
		// counts as terminated only once it is OFFLINE.
		if ns.reachability() == fleetv1.Reachability_REACHABILITY_OFFLINE {
			markTerminated(ns, n, c, "terminated: node is offline", now)
			return nil
		}
		if openOf(ns, fleetv1.CommandType_COMMAND_TYPE_TERMINATE) == nil && now.Sub(ns.book.terminateQueued) >= TerminateRetry {
			// Asked again only after a while: an agent that failed to stop
			// would fail the same way every second.
			ns.book.terminateQueued = now
			// Issued in the name of whoever asked for the termination.
			_, err := f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_TERMINATE, n.GetLifecycleReason(), cmp.Or(n.GetLifecycleBy(), byControlPlane), now)
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

// stopInstance stops a node's instance through its provider and marks the
// node TERMINATED; a failure is retried on a later monitor pass.
func (f *Fleet) stopInstance(ctx context.Context, ns *nodeState, p provider.Provider) {
	n := ns.node.Load()
	inst, runs, err := f.instanceOf(ctx, p, provider.Instance{NodeID: n.GetNodeId(), InstanceID: n.GetInstanceId(), Pool: n.GetPool()})
	if err == nil && runs {
		if !f.intend(ctx, n.GetNodeId(), "stopping instance "+inst.InstanceID+" of a terminating node") {
			err = errors.New("the decision to stop it could not be recorded")
		} else {
			err = p.Terminate(ctx, inst)
		}
	}
	_, opErr := f.operate(ctx, n.GetNodeId(), func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		ns.book.stopping = false
		if err != nil || n.GetLifecycle() != terminating {
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
	ns.book.stopping = false
	ns.mu.Unlock()
}
