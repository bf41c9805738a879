package controlplane_test

import (
	"testing"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestRestartKeepsState: everything acknowledged before a restart is there
// after it, and revisions keep increasing.
func TestRestartKeepsState(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("a", 2)
	h.register("b", 2)
	h.xid("a", 1, 79) // auto-cordon, event, command
	drain, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "b", Reason: "upgrade"})
	if err != nil {
		t.Fatal(err)
	}
	before := h.fleet().Status().GetRevision()
	h.restart()

	a := h.get("a")
	if a.GetNode().GetLifecycle() != cordoned || a.GetNode().GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Fatalf("a after restart: %s %s", a.GetNode().GetLifecycle(), a.GetNode().GetHealth())
	}
	if len(a.GetEvents()) != 1 || a.GetEvents()[0].GetXid() != 79 {
		t.Fatalf("a's events: %v", a.GetEvents())
	}
	if len(a.GetNode().GetGpus()[1].GetFaults()) != 1 {
		t.Fatalf("a's GPU faults: %v", a.GetNode().GetGpus()[1].GetFaults())
	}
	b := h.get("b")
	if b.GetNode().GetLifecycle() != draining || b.GetNode().GetDrain().GetReason() != "upgrade" {
		t.Fatalf("b after restart: %v", b.GetNode())
	}
	// The queued commands are still there for the agents to pull.
	polled, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "b"})
	if err != nil || len(polled.GetCommands()) != 1 || polled.GetCommands()[0].GetId() != drain.GetCommand().GetId() {
		t.Fatalf("b's drain after restart: %v %v", polled, err)
	}
	h.register("c", 1)
	if after := h.fleet().Status().GetRevision(); after <= before {
		t.Fatalf("revision went from %d to %d across a restart", before, after)
	}
}
