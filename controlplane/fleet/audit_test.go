package fleet

import (
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane/auth"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestCommandsNameWhoAsked: a command an operator's call queues names the
// caller's token; one queued with no caller, as by a direct call, names
// "operator".
func TestCommandsNameWhoAsked(t *testing.T) {
	f := newFleet(t, Options{})
	t.Cleanup(f.Close)
	register(t, f, "n1", 1)
	oncall := auth.WithCaller(ctxT(t), auth.Caller{Name: "oncall", Role: controlplanev1.Role_ROLE_OPERATOR})
	if _, err := f.Cordon(oncall, "n1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Diagnose(ctxT(t), "n1"); err != nil {
		t.Fatal(err)
	}
	cmds := openCommands(f, "n1")
	if len(cmds) != 2 || cmds[0].GetIssuedBy() != "oncall" || cmds[1].GetIssuedBy() != "operator" {
		t.Fatalf("commands %v; want the cordon by oncall, the diagnostics by operator", cmds)
	}
}

// TestAutoCordonIsAuditedInItsWrite: an automatic cordon is in the audit
// log as the policy's, naming its command, exactly when the cordon is
// stored: a cordon whose write fails leaves no entry.
func TestAutoCordonIsAuditedInItsWrite(t *testing.T) {
	f, fs := newFlakyFleet(t)
	t.Cleanup(f.Close)
	register(t, f, "n1", 2)
	register(t, f, "n2", 2)
	register(t, f, "n3", 2)

	fs.failing.Store(true)
	if _, err := xid(t, f, "n1", 0, 79); err == nil {
		t.Fatal("the report was taken with a failing store")
	}
	fs.failing.Store(false)
	if got, err := f.Audit(ctxT(t), "", 0); err != nil || len(got) != 0 {
		t.Fatalf("after a failed write the audit log holds %v (%v)", got, err)
	}

	if _, err := xid(t, f, "n2", 1, 79); err != nil {
		t.Fatal(err)
	}
	got, err := f.Audit(ctxT(t), "n2", 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("n2's audit: %v (%v)", got, err)
	}
	cmds := openCommands(f, "n2")
	e := got[0]
	if len(cmds) != 1 || e.Who != auth.PolicyName || e.RPC != "AutoCordon" || e.Code != "OK" ||
		e.Reason != f.get("n2").node.Load().GetLifecycleReason() || e.Message != "lifecycle CORDONED; command "+cmds[0].GetId() {
		t.Fatalf("n2's entry %+v, commands %v", e, cmds)
	}
}

// TestLifecycleNamesWhoSetIt: a node's lifecycle_by names the token whose
// call set its state, the policy, or the control plane; the TERMINATE the
// control plane queues to finish a termination names who asked for it.
func TestLifecycleNamesWhoSetIt(t *testing.T) {
	f := newFleet(t, Options{})
	t.Cleanup(f.Close)
	register(t, f, "n1", 2)
	register(t, f, "n2", 2)
	by := func(id string) string { return f.get(id).node.Load().GetLifecycleBy() }
	if got := by("n1"); got != byControlPlane {
		t.Fatalf("a registered node's lifecycle_by %q, want %q", got, byControlPlane)
	}
	oncall := auth.WithCaller(ctxT(t), auth.Caller{Name: "oncall", Role: controlplanev1.Role_ROLE_OPERATOR})
	if _, err := f.Cordon(oncall, "n1", ""); err != nil {
		t.Fatal(err)
	}
	if got := by("n1"); got != "oncall" {
		t.Fatalf("after oncall's cordon lifecycle_by %q", got)
	}
	if _, err := xid(t, f, "n2", 1, 79); err != nil {
		t.Fatal(err)
	}
	if got := by("n2"); got != auth.PolicyName {
		t.Fatalf("after an automatic cordon lifecycle_by %q", got)
	}

	// A drain that replaces the one under way is the new caller's.
	register(t, f, "n3", 1)
	lead := auth.WithCaller(ctxT(t), auth.Caller{Name: "lead", Role: controlplanev1.Role_ROLE_OPERATOR})
	if _, _, err := f.Drain(oncall, "n3", "rack work", time.Time{}, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Drain(lead, "n3", "rack work, now", time.Time{}, true); err != nil {
		t.Fatal(err)
	}
	if got := by("n3"); got != "lead" {
		t.Fatalf("after lead's forced drain over oncall's lifecycle_by %q", got)
	}

	if _, err := f.Terminate(oncall, "n1", "", true, 0); err != nil {
		t.Fatal(err)
	}
	f.Tick(ctxT(t))
	var term *fleetv1.Command
	for _, c := range openCommands(f, "n1") {
		if c.GetType() == fleetv1.CommandType_COMMAND_TYPE_TERMINATE {
			term = c
		}
	}
	if term == nil || term.GetIssuedBy() != "oncall" {
		t.Fatalf("the TERMINATE the control plane queued: %v; want it issued by oncall", term)
	}
}
