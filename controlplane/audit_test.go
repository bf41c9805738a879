package controlplane_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// auditOf is the audit log as ops reads it: one node's, or all of it for
// "", newest first.
func (h *harness) auditOf(ops controlplanev1.ControlPlaneServiceClient, node string) []*controlplanev1.AuditEntry {
	h.t.Helper()
	resp, err := ops.ListAudit(ctxT(h.t), &controlplanev1.ListAuditRequest{NodeId: node, Limit: 1000})
	if err != nil {
		h.t.Fatalf("list audit of %q: %v", node, err)
	}
	return resp.GetEntries()
}

// entry is what a test expects of an audit entry; a field left empty is
// not checked, but for the code.
type entry struct {
	who    string
	role   controlplanev1.Role
	rpc    string
	node   string
	reason string
	code   string
	// params and message are substrings the entry's must contain.
	params, message string
}

func checkEntry(t *testing.T, got *controlplanev1.AuditEntry, want entry) {
	t.Helper()
	ok := got.GetWho() == want.who && got.GetRole() == want.role && got.GetRpc() == want.rpc &&
		got.GetNodeId() == want.node && got.GetCode() == want.code &&
		(want.reason == "" || got.GetReason() == want.reason) &&
		strings.Contains(got.GetParams(), want.params) && strings.Contains(got.GetMessage(), want.message)
	if !ok || got.GetId() == "" || got.GetTime() == nil {
		t.Errorf("audit entry %v\nwant %+v", got, want)
	}
}

// TestAuditTrail over real TLS: what an operator does is audited with the
// token's name and role, the node, the reason and the result, refusals by
// the handler included; an automatic cordon is audited as the policy's; a
// token's creation never records its secret; a call the gate refuses is
// not audited; only an operator reads the log; and the log survives a
// restart.
func TestAuditTrail(t *testing.T) {
	h := newHarness(t)
	for _, id := range []string{"n1", "n2", "n3"} {
		h.register(id, 2)
		h.healthyReport(id, 2)
	}
	ctx := ctxT(t)
	admin := h.ops
	created, err := admin.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "oncall", Role: controlplanev1.Role_ROLE_OPERATOR, Ttl: durationpb.New(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	viewerTok, err := admin.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "dashboards", Role: controlplanev1.Role_ROLE_VIEWER})
	if err != nil {
		t.Fatal(err)
	}
	operator, viewer := opsAs(t, h.ControlPlane, created.GetToken()), opsAs(t, h.ControlPlane, viewerTok.GetToken())
	const opRole = controlplanev1.Role_ROLE_OPERATOR

	t.Run("operator-cordon", func(t *testing.T) {
		if _, err := operator.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1", Reason: "ticket 42"}); err != nil {
			t.Fatal(err)
		}
		got := h.auditOf(operator, "n1")
		if len(got) != 1 {
			t.Fatalf("n1's audit: %v", got)
		}
		checkEntry(t, got[0], entry{who: "oncall", role: opRole, rpc: "CordonNode", node: "n1", reason: "ticket 42", code: "OK", message: "lifecycle CORDONED"})
		// The node's commands name who asked.
		cmds := h.get("n1").GetCommands()
		if len(cmds) == 0 || cmds[0].GetIssuedBy() != "oncall" {
			t.Fatalf("n1's commands %v; the cordon should be issued by oncall", cmds)
		}
	})

	t.Run("refused-drain", func(t *testing.T) {
		if _, err := operator.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: "n2", Force: true}); err != nil {
			t.Fatal(err)
		}
		_, err := operator.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n2", Reason: "too late", Force: true})
		wantCode(t, err, codes.FailedPrecondition, "node_id")
		got := h.auditOf(operator, "n2")
		if len(got) != 2 {
			t.Fatalf("n2's audit: %v", got)
		}
		checkEntry(t, got[0], entry{who: "oncall", role: opRole, rpc: "DrainNode", node: "n2", reason: "too late", code: "FailedPrecondition",
			params: `"force":true`, message: status.Convert(err).Message()})
		checkEntry(t, got[1], entry{who: "oncall", role: opRole, rpc: "TerminateNode", node: "n2", code: "OK", params: `"force":true`, message: "lifecycle TERMINATING"})
	})

	t.Run("auto-cordon-by-policy", func(t *testing.T) {
		h.xid("n3", 1, 79)
		got := h.auditOf(operator, "n3")
		if len(got) != 1 {
			t.Fatalf("n3's audit: %v", got)
		}
		checkEntry(t, got[0], entry{who: "policy", rpc: "AutoCordon", node: "n3", code: "OK", message: "lifecycle CORDONED; command cmd-"})
		if !strings.HasPrefix(got[0].GetReason(), "auto-cordon: gpu1: ") {
			t.Errorf("the policy's reason %q does not say why", got[0].GetReason())
		}
		if cmds := h.get("n3").GetCommands(); len(cmds) == 0 || cmds[0].GetIssuedBy() != "policy" {
			t.Fatalf("n3's commands %v; the cordon should be issued by policy", cmds)
		}
	})

	t.Run("gate-refusals-are-not-audited", func(t *testing.T) {
		before := len(h.auditOf(admin, ""))
		_, err := viewer.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"})
		wantCode(t, err, codes.PermissionDenied, "")
		_, err = viewer.ListAudit(ctx, &controlplanev1.ListAuditRequest{})
		wantCode(t, err, codes.PermissionDenied, "")
		if after := h.auditOf(admin, ""); len(after) != before {
			t.Fatalf("a refused viewer left %d entries: %v", len(after)-before, after[:len(after)-before])
		}
	})

	t.Run("token-secret-never-recorded", func(t *testing.T) {
		tok, err := admin.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "ci", Role: controlplanev1.Role_ROLE_VIEWER, Ttl: durationpb.New(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		got := h.auditOf(admin, "")
		checkEntry(t, got[0], entry{who: "admin", role: controlplanev1.Role_ROLE_ADMIN, rpc: "CreateToken", code: "OK", params: `"name":"ci"`})
		for _, want := range []string{`"role":"ROLE_VIEWER"`, `"ttl":"3600s"`} {
			if !strings.Contains(got[0].GetParams(), want) {
				t.Errorf("CreateToken's params %q lack %s", got[0].GetParams(), want)
			}
		}
		// Every secret made so far, read from the store itself.
		stored, err := h.fleet().Audit(ctx, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, token := range []string{tok.GetToken(), created.GetToken(), viewerTok.GetToken(), h.AdminToken()} {
			_, secret, _ := strings.Cut(token, ".")
			if secret == "" {
				t.Fatalf("token %q has no secret", token)
			}
			for _, e := range stored {
				if strings.Contains(fmt.Sprintf("%+v", *e), secret) {
					t.Errorf("audit entry %s holds a token's secret: %+v", e.ID, *e)
				}
			}
		}
		if len(stored) != len(got) {
			t.Errorf("the store has %d entries, ListAudit gave %d", len(stored), len(got))
		}
	})

	t.Run("survives-restart", func(t *testing.T) {
		before := h.auditOf(admin, "")
		h.restart()
		after := h.auditOf(h.ops, "")
		if len(after) != len(before) {
			t.Fatalf("after a restart %d entries, before %d", len(after), len(before))
		}
		for i := range before {
			if after[i].GetId() != before[i].GetId() || after[i].GetWho() != before[i].GetWho() || !after[i].GetTime().AsTime().Equal(before[i].GetTime().AsTime()) {
				t.Errorf("entry %d after a restart %v, before %v", i, after[i], before[i])
			}
		}
		// Ids go on increasing after a restart, newest first.
		if _, err := h.ops.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: "n1"}); err != nil {
			t.Fatal(err)
		}
		got := h.auditOf(h.ops, "n1")
		if len(got) != 2 || got[0].GetRpc() != "UncordonNode" || got[1].GetRpc() != "CordonNode" {
			t.Fatalf("n1's audit after a restart: %v", got)
		}
	})
}
