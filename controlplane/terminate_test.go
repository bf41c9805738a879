package controlplane_test

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/navarch/navarch/controlplane/fleet"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestTerminateAfterRestartDrainsFirst: after a restart every node is
// UNKNOWN; terminating one must still drain it, and it counts as
// terminated only once it is OFFLINE.
func TestTerminateAfterRestartDrainsFirst(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("n1", 1)
	h.restart()
	n, err := h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if n.GetNode().GetReachability() != fleetv1.Reachability_REACHABILITY_UNKNOWN || n.GetNode().GetDrain() == nil {
		t.Fatalf("terminate of an UNKNOWN node: reach %s drain %v", n.GetNode().GetReachability(), n.GetNode().GetDrain())
	}
	h.fleet().Tick(ctx)
	if got := h.lifecycle("n1"); got != terminating {
		t.Fatalf("UNKNOWN node became %s", got)
	}
	// The node never comes back: once it is OFFLINE nobody is left to
	// drain it, and it counts as terminated.
	clock.Advance(h.cfg.OfflineAfter.Duration)
	h.fleet().Tick(ctx)
	h.fleet().Tick(ctx)
	d := h.get("n1")
	if d.GetNode().GetLifecycle() != terminated || d.GetNode().GetDrain() != nil {
		t.Fatalf("offline: %s drain %v", d.GetNode().GetLifecycle(), d.GetNode().GetDrain())
	}
	for _, c := range d.GetCommands() {
		if c.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_PENDING || c.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED {
			t.Fatalf("terminated node kept an open command: %v", c)
		}
	}
}

// TestTerminatedNodeStaysTerminated: entering TERMINATED cancels every
// unfinished command; heartbeats and reports from the old agent neither
// bring it ONLINE nor judge its GPUs; a new registration starts afresh.
func TestTerminatedNodeStaysTerminated(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 2)
	h.healthyReport("n1", 2)
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	polled := h.forceTerminate("n1")
	if len(polled) != 2 {
		t.Fatalf("poll: %v", polled)
	}
	var term *fleetv1.Command
	for _, c := range polled {
		if c.GetType() == fleetv1.CommandType_COMMAND_TYPE_TERMINATE {
			term = c
		}
	}
	if _, err := h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
		NodeId: "n1", CommandId: term.GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
	}); err != nil {
		t.Fatal(err)
	}
	d := h.get("n1")
	if d.GetNode().GetLifecycle() != terminated {
		t.Fatalf("lifecycle %s", d.GetNode().GetLifecycle())
	}
	for _, c := range d.GetCommands() {
		if c.GetType() == fleetv1.CommandType_COMMAND_TYPE_CORDON && c.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED {
			t.Fatalf("cordon command left %s at termination", c.GetStatus())
		}
	}
	h.fleet().Tick(ctx)
	hb, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1", Samples: []*fleetv1.GpuSample{{GpuIndex: 0, UtilizationGpuPercent: 90}}})
	if err != nil || hb.GetLifecycle() != terminated {
		t.Fatalf("heartbeat: %v %v", hb, err)
	}
	health := h.get("n1").GetNode().GetHealth()
	h.xid("n1", 0, 79)
	n := h.get("n1").GetNode()
	if n.GetReachability() != fleetv1.Reachability_REACHABILITY_OFFLINE || len(n.GetSamples()) != 0 {
		t.Fatalf("terminated node after a heartbeat: %s samples %v", n.GetReachability(), n.GetSamples())
	}
	if n.GetHealth() != health || len(h.get("n1").GetEvents()) != 0 {
		t.Fatalf("terminated node's report was judged: %s, events %v", n.GetHealth(), h.get("n1").GetEvents())
	}
	if resp := h.register("n1", 2); resp.GetLifecycle() != active {
		t.Fatalf("new registration: %s", resp.GetLifecycle())
	}
}

// TestFailedTerminateIsRetriedSlowly: an agent that fails to stop is asked
// again after a minute, not on every monitor pass.
func TestFailedTerminateIsRetriedSlowly(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("n1", 1)
	polled := h.forceTerminate("n1")
	if len(polled) != 1 {
		t.Fatalf("poll: %v", polled)
	}
	if _, err := h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
		NodeId: "n1", CommandId: polled[0].GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_FAILED, Message: "systemctl: permission denied",
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clock.Advance(10 * time.Second)
		if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); err != nil {
			t.Fatal(err)
		}
		h.fleet().Tick(ctx)
	}
	if got, _ := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"}); len(got.GetCommands()) != 0 {
		t.Fatalf("asked again within the minute: %v", got)
	}
	clock.Advance(fleet.TerminateRetry)
	if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	h.fleet().Tick(ctx)
	if got, _ := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"}); len(got.GetCommands()) != 1 {
		t.Fatalf("not asked again after the minute: %v", got)
	}
}
