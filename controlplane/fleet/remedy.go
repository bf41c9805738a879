package fleet

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The remedies an agent carries out: a GPU reset through the driver's tool
// and a node reboot. Both are commands like the others; what is special is
// how they end. A reset that succeeded clears the faults a reset remedies;
// a reboot succeeds only when the node registers again from another boot,
// since an agent that reboots its node cannot say it did.

// ResetGPU queues a reset of GPU gpu on node id. With force, the agent
// stops the GPU's compute processes first; without, it refuses while any
// run. A reset of a GPU whose reset is still open is a harmless repeat,
// unless it adds force, which replaces the open one if the agent has not
// begun it; a reset under way (ACKNOWLEDGED) is answered as it is, since a
// second one would run beside it.
func (f *Fleet) ResetGPU(ctx context.Context, id string, gpu uint32, reason string, force bool) (*fleetv1.Command, error) {
	var cmd *fleetv1.Command
	_, err := f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		if err := checkResetGPU(n, gpu); err != nil {
			return err
		}
		if err := checkRemedies(n, actResetGPU); err != nil {
			return err
		}
		sameGPU := func(open *fleetv1.Command) bool {
			return open.GetType() == fleetv1.CommandType_COMMAND_TYPE_RESET_GPU && open.GetGpuIndex() == gpu
		}
		for _, open := range ns.book.open {
			begun := open.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED
			if sameGPU(open) && (!force || open.GetForce() || begun) {
				cmd = open
				return nil
			}
		}
		cancelOpen(ns, c, sameGPU, "superseded by a forced reset", now)
		reason = orDefault(reason, fmt.Sprintf("GPU %d reset by operator", gpu))
		var err error
		cmd, err = f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_RESET_GPU, reason, requester(ctx), now)
		if err == nil {
			cmd.GpuIndex, cmd.Force = gpu, force
		}
		return err
	})
	return cmd, err
}

// Reboot queues a reboot of node id, which must be drained unless force.
// The command records the node's boot id; it succeeds when the node
// registers with another. A reboot replaces one still open: that one may
// never come (the agent acknowledged it and the node did not go down), and
// both end at the same registration if it does.
func (f *Fleet) Reboot(ctx context.Context, id, reason string, force bool) (*fleetv1.Command, error) {
	var cmd *fleetv1.Command
	_, err := f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		if err := checkRemedies(n, actReboot); err != nil {
			return err
		}
		if n.GetBootId() == "" {
			// Without one the reboot could never be confirmed, and a node
			// that came back would be told to reboot again.
			return status.Errorf(codes.FailedPrecondition,
				"node_id: node %q's agent reports no boot id, so a reboot could not be confirmed; reboot it by hand", n.GetNodeId())
		}
		if !force && n.GetLifecycle() != drained {
			return apierr.Forbidden(n.GetNodeId(), n.GetLifecycle(), "rebooted until it is drained (drain it first, or force the reboot)")
		}
		cancelOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_REBOOT), "superseded by a new reboot", now)
		reason = orDefault(reason, "rebooted by operator")
		var err error
		cmd, err = f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_REBOOT, reason, requester(ctx), now)
		if err == nil {
			cmd.Force, cmd.BootId = force, n.GetBootId()
		}
		return err
	})
	return cmd, err
}

// checkResetGPU refuses a reset of a GPU the node does not have, or has
// lost: the driver's tool finds a GPU by its index, and one that does not
// answer is not there to reset.
func checkResetGPU(n *fleetv1.Node, gpu uint32) error {
	for _, g := range n.GetGpus() {
		if g.GetIndex() != gpu {
			continue
		}
		if g.GetLost() {
			return apierr.Invalid("gpu_index", "GPU %d on node %q does not answer; a reboot, not a reset, may bring it back", gpu, n.GetNodeId())
		}
		return nil
	}
	return apierr.Invalid("gpu_index", "node %q has no GPU %d", n.GetNodeId(), gpu)
}

// checkRemedies refuses a remedy the node's lifecycle or its agent does
// not allow.
func checkRemedies(n *fleetv1.Node, act action) error {
	if _, err := next(n, act); err != nil {
		return err
	}
	if n.GetRemediesDisabled() {
		return status.Errorf(codes.FailedPrecondition,
			"node_id: node %q's agent forbids remedies (it was started with --no-remedies); it resets no GPU and reboots nothing", n.GetNodeId())
	}
	return nil
}

// resetDone clears the faults a completed reset remedies on the GPU it
// reset, and records the recovery. The caller holds ns.mu.
func (f *Fleet) resetDone(n *fleetv1.Node, c *change, cmd *fleetv1.Command, now time.Time) {
	for _, g := range n.GetGpus() {
		if g.GetLost() || g.GetIndex() != cmd.GetGpuIndex() {
			continue
		}
		if ev := f.policy.ClearAfterReset(g, now); ev != nil {
			c.events = append(c.events, ev)
			f.log.Info("GPU reset cleared faults", "node", n.GetNodeId(), "gpu", g.GetIndex(), "cause", ev.GetCause())
		}
		rollupNode(n)
		return
	}
}

// rebootedFrom matches the open reboots a registration from boot ends: those
// asked of another boot.
func rebootedFrom(boot string) func(*fleetv1.Command) bool {
	return func(cmd *fleetv1.Command) bool {
		return cmd.GetType() == fleetv1.CommandType_COMMAND_TYPE_REBOOT && boot != "" && cmd.GetBootId() != boot
	}
}
