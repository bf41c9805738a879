package fleet

import (
	"context"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Defaults of operator requests that leave them out. GetFleetStatus
// publishes them, so clients need not know them.
const (
	// DefaultDrainDeadline is how long a drain without a deadline may take.
	DefaultDrainDeadline = time.Hour
	// DefaultTerminateDrain bounds the drain before a node is stopped.
	DefaultTerminateDrain = 10 * time.Minute
)

// operate runs one operator action on a node: fn edits a copy of the node
// and may queue commands; the result is stored before the reply.
func (f *Fleet) operate(ctx context.Context, id string, fn func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error) (*fleetv1.Node, error) {
	now := f.clock.Now()
	var out *fleetv1.Node
	err := f.nodeLocked(id, false, func(ns *nodeState, cur *fleetv1.Node) error {
		n := proto.CloneOf(cur)
		c := &change{}
		if err := fn(ns, n, c, now); err != nil {
			return err
		}
		if !proto.Equal(n, cur) {
			c.node = n
		}
		if err := f.commit(ctx, ns, c); err != nil {
			return err
		}
		f.wakeAgent(ns, c)
		out = ns.view()
		return nil
	})
	return out, err
}

// Cordon stops new work landing on a node.
func (f *Fleet) Cordon(ctx context.Context, id, reason string) (*fleetv1.Node, error) {
	return f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		to, err := next(n, actCordon)
		if err != nil || to == n.GetLifecycle() {
			return err // refused, or already takes no new work
		}
		setLifecycle(n, to, orDefault(reason, "cordoned by operator"), requester(ctx), now)
		_, err = f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_CORDON, n.GetLifecycleReason(), requester(ctx), now)
		return err
	})
}

// Uncordon returns a cordoned, draining or drained node to ACTIVE.
func (f *Fleet) Uncordon(ctx context.Context, id, reason string) (*fleetv1.Node, error) {
	return f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		to, err := next(n, actUncordon)
		if err != nil || to == n.GetLifecycle() {
			return err
		}
		cancelOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), "cancelled by uncordon", now)
		setLifecycle(n, to, orDefault(reason, "uncordoned by operator"), requester(ctx), now)
		_, err = f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_UNCORDON, n.GetLifecycleReason(), requester(ctx), now)
		return err
	})
}

// Release keeps in service a node whose automatic cordon the breaker held
// back, and clears the mark; a node not held back is refused, naming it.
func (f *Fleet) Release(ctx context.Context, id, reason string) (*fleetv1.Node, error) {
	return f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		if n.GetCordonHeldBackAt() == nil {
			return status.Errorf(codes.FailedPrecondition, "node_id: node %q is not held back by the auto-cordon breaker; there is nothing to release", n.GetNodeId())
		}
		n.CordonHeldBackAt = nil
		f.log.Info("held-back node released", "node", n.GetNodeId(), "by", requester(ctx), "reason", orDefault(reason, "released by operator"))
		return nil
	})
}

// Drain stops new work and waits for the node's GPU processes to end or for
// the deadline; a zero deadline means DefaultDrainDeadline from now.
func (f *Fleet) Drain(ctx context.Context, id, reason string, deadline time.Time, force bool) (*fleetv1.Node, *fleetv1.Command, error) {
	var cmd *fleetv1.Command
	n, err := f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		to, err := next(n, actDrain)
		if err != nil {
			return err
		}
		switch n.GetLifecycle() {
		case drained:
			cmd = openOf(ns, fleetv1.CommandType_COMMAND_TYPE_DRAIN)
			return nil
		case draining:
			// A drain that hurries the one under way (force, or an earlier
			// deadline: an operator pushing a stuck drain) replaces it.
			// Anything else is a harmless repeat: clients send "now plus a
			// timeout", so a repeat always asks a later deadline, and a
			// repeat without force must not take the force away.
			cur := n.GetDrain()
			curDeadline := cur.GetDeadline().AsTime()
			sooner := !deadline.IsZero() && deadline.Before(curDeadline)
			if !sooner && (!force || cur.GetForce()) {
				cmd = openOf(ns, fleetv1.CommandType_COMMAND_TYPE_DRAIN)
				return nil
			}
			if !sooner {
				deadline = curDeadline
			}
			force = force || cur.GetForce()
			reason = orDefault(reason, cur.GetReason())
			cancelOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), "superseded by a new drain", now)
			n.LifecycleReason = reason
			n.LifecycleBy = requester(ctx)
		}
		if deadline.IsZero() {
			deadline = now.Add(DefaultDrainDeadline)
		}
		reason = orDefault(reason, "drained by operator")
		if n.GetLifecycle() != to {
			setLifecycle(n, to, reason, requester(ctx), now)
		}
		n.Drain = &fleetv1.DrainSpec{Reason: reason, Deadline: ts(deadline), Force: force}
		cmd, err = f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_DRAIN, reason, requester(ctx), now)
		if err == nil {
			cmd.Drain = n.Drain
		}
		return err
	})
	return n, cmd, err
}

// Terminate drains a node (unless forced or unreachable), then stops it
// through its provider, or asks its agent to stop. A zero drainTimeout
// means DefaultTerminateDrain.
func (f *Fleet) Terminate(ctx context.Context, id, reason string, force bool, drainTimeout time.Duration) (*fleetv1.Node, error) {
	return f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		to, err := next(n, actTerminate)
		if err != nil {
			return err
		}
		reason = orDefault(reason, "terminated by operator")
		switch n.GetLifecycle() {
		case terminated:
			return nil
		case terminating:
			if force {
				// A forced terminate skips a drain still under way.
				cancelOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), "skipped by forced terminate", now)
			}
			return nil
		}
		cancelOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), "superseded by terminate", now)
		setLifecycle(n, to, reason, requester(ctx), now)
		// A node not yet heard from since a restart (UNKNOWN) may well be
		// running work: only an OFFLINE one skips the drain.
		offline := ns.reachability() == fleetv1.Reachability_REACHABILITY_OFFLINE
		if force || offline || n.GetRegisteredAt() == nil {
			return nil
		}
		if drainTimeout <= 0 {
			drainTimeout = DefaultTerminateDrain
		}
		n.Drain = &fleetv1.DrainSpec{Reason: reason, Deadline: ts(now.Add(drainTimeout)), Force: true}
		cmd, err := f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_DRAIN, reason, requester(ctx), now)
		if err == nil {
			cmd.Drain = n.Drain
		}
		return err
	})
}

// Diagnose queues a diagnostics command.
func (f *Fleet) Diagnose(ctx context.Context, id string) (*fleetv1.Command, error) {
	var cmd *fleetv1.Command
	_, err := f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		if _, err := next(n, actDiagnose); err != nil {
			return err
		}
		var err error
		cmd, err = f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS, "diagnostics requested", requester(ctx), now)
		return err
	})
	return cmd, err
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
