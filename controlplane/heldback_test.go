package controlplane_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/fleettest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// tripBreaker registers a, b and c and makes each UNHEALTHY: half of three
// nodes is one cordon, so a is cordoned and b and c are held back.
func tripBreaker(h *harness) {
	h.t.Helper()
	for _, id := range []string{"a", "b", "c"} {
		h.register(id, 1)
	}
	for _, id := range []string{"a", "b", "c"} {
		h.xid(id, 0, 79)
	}
}

func (h *harness) heldBack() uint32 {
	h.t.Helper()
	st, err := h.ops.GetFleetStatus(ctxT(h.t), &controlplanev1.GetFleetStatusRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	return st.GetSummary().GetHeldBack()
}

// TestBreakerMarksHeldBackNodes: a node whose automatic cordon the breaker
// held back says so, stays in service, is counted, is streamed, keeps its
// mark across a restart, and is not cordoned later when the window has
// room: it waits for an operator.
func TestBreakerMarksHeldBackNodes(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	w := h.watch(0)
	w.until("snapshot", isSnapshotEnd)
	tripBreaker(h)
	if n := h.get("a").GetNode(); n.GetLifecycle() != cordoned || n.GetCordonHeldBackAt() != nil {
		t.Fatalf("a is %s, held back at %v; want cordoned and not held back", n.GetLifecycle(), n.GetCordonHeldBackAt())
	}
	for _, id := range []string{"b", "c"} {
		n := h.get(id).GetNode()
		if n.GetLifecycle() != active || !n.GetCordonHeldBackAt().AsTime().Equal(clock.Now()) {
			t.Fatalf("%s is %s, held back at %v; want active and held back at %v", id, n.GetLifecycle(), n.GetCordonHeldBackAt(), clock.Now())
		}
	}
	w.until("c held back in the stream", func(m *controlplanev1.WatchFleetResponse) bool {
		return m.GetNodeUpsert().GetNodeId() == "c" && m.GetNodeUpsert().GetCordonHeldBackAt() != nil
	})
	if got := h.heldBack(); got != 2 {
		t.Fatalf("the summary counts %d held back, want 2", got)
	}

	clock.Advance(h.cfg.AutoCordon.Window.Duration + time.Second)
	h.restart()
	for _, id := range []string{"b", "c"} {
		h.register(id, 1) // keep them online under the fake clock
		if n := h.get(id).GetNode(); n.GetLifecycle() != active || n.GetCordonHeldBackAt() == nil {
			t.Fatalf("after the window and a restart %s is %s, held back at %v; want it still active and held back",
				id, n.GetLifecycle(), n.GetCordonHeldBackAt())
		}
	}
	if got := h.heldBack(); got != 2 {
		t.Fatalf("after a restart the summary counts %d held back, want 2", got)
	}
}

// TestHeldBackMarkClears: whatever ends the reason to cordon a held-back
// node ends its mark, and its count in the summary.
func TestHeldBackMarkClears(t *testing.T) {
	tests := []struct {
		name string
		act  func(h *harness) error
		want fleetv1.LifecycleState
	}{
		{"cordoned-by-operator", func(h *harness) error {
			_, err := h.ops.CordonNode(ctxT(h.t), &controlplanev1.CordonNodeRequest{NodeId: "b", Reason: "judged at 3 a.m."})
			return err
		}, cordoned},
		{"released", func(h *harness) error {
			_, err := h.ops.ReleaseNode(ctxT(h.t), &controlplanev1.ReleaseNodeRequest{NodeId: "b", Reason: "job is fine"})
			return err
		}, active},
		{"drained", func(h *harness) error {
			_, err := h.ops.DrainNode(ctxT(h.t), &controlplanev1.DrainNodeRequest{NodeId: "b"})
			return err
		}, draining},
		{"terminated", func(h *harness) error {
			_, err := h.ops.TerminateNode(ctxT(h.t), &controlplanev1.TerminateNodeRequest{NodeId: "b", Force: true})
			return err
		}, terminating},
		{"healthy-after-reboot", func(h *harness) error {
			_, err := h.node.RegisterNode(ctxT(h.t), &nodev1.RegisterNodeRequest{NodeId: "b", Hostname: "b", Gpus: fleettest.GPUs(1), BootId: "boot-2"})
			return err
		}, active},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tripBreaker(h)
			if err := tt.act(h); err != nil {
				t.Fatal(err)
			}
			n := h.get("b").GetNode()
			if n.GetCordonHeldBackAt() != nil || n.GetLifecycle() != tt.want {
				t.Fatalf("b is %s, held back at %v; want %s and not held back", n.GetLifecycle(), n.GetCordonHeldBackAt(), tt.want)
			}
			if got := h.heldBack(); got != 1 {
				t.Fatalf("the summary counts %d held back, want 1 (c)", got)
			}
		})
	}
}

// TestReleaseNode: releasing keeps the node in service, is audited, and is
// refused for a node not held back (naming it) and for an unknown node; a
// released node that stays UNHEALTHY is not cordoned by the next report.
func TestReleaseNode(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tripBreaker(h)
	resp, err := h.ops.ReleaseNode(ctx, &controlplanev1.ReleaseNodeRequest{NodeId: "c", Reason: "job is fine"})
	if err != nil {
		t.Fatal(err)
	}
	if n := resp.GetNode(); n.GetLifecycle() != active || n.GetCordonHeldBackAt() != nil {
		t.Fatalf("release answered %s, held back at %v; want active and not held back", n.GetLifecycle(), n.GetCordonHeldBackAt())
	}
	h.xid("c", 0, 79)
	if n := h.get("c").GetNode(); n.GetLifecycle() != active || n.GetCordonHeldBackAt() != nil {
		t.Fatalf("after another report c is %s, held back at %v; want it as the operator left it", n.GetLifecycle(), n.GetCordonHeldBackAt())
	}
	entries := h.auditOf(h.ops, "c")
	checkEntry(t, entries[0], entry{who: "admin", role: controlplanev1.Role_ROLE_ADMIN, rpc: "ReleaseNode", node: "c", reason: "job is fine", code: "OK"})

	for _, id := range []string{"c", "a"} {
		_, err = h.ops.ReleaseNode(ctx, &controlplanev1.ReleaseNodeRequest{NodeId: id})
		wantCode(t, err, codes.FailedPrecondition, "node_id")
		if !strings.Contains(err.Error(), `"`+id+`"`) {
			t.Fatalf("refusal %q does not name %s", err, id)
		}
	}
	_, err = h.ops.ReleaseNode(ctx, &controlplanev1.ReleaseNodeRequest{NodeId: "nope"})
	wantCode(t, err, codes.NotFound, "node_id")
}

// TestReleaseRefusedBeforeRead: a viewer is refused whatever the node, so
// the answer does not tell which nodes exist, and a request without a node
// id names the field.
func TestReleaseRefusedBeforeRead(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	tripBreaker(h)
	tok, err := h.ops.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "dashboards", Role: controlplanev1.Role_ROLE_VIEWER})
	if err != nil {
		t.Fatal(err)
	}
	viewer := opsAs(t, h.ControlPlane, tok.GetToken())
	for _, id := range []string{"b", "nope", ""} {
		_, err := viewer.ReleaseNode(ctx, &controlplanev1.ReleaseNodeRequest{NodeId: id})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("a viewer's release of %q: %v, want PermissionDenied", id, err)
		}
	}
	if n := h.get("b").GetNode(); n.GetCordonHeldBackAt() == nil {
		t.Fatal("a viewer's refused release cleared b's mark")
	}
	_, err = h.ops.ReleaseNode(ctx, &controlplanev1.ReleaseNodeRequest{})
	wantCode(t, err, codes.InvalidArgument, "node_id")
}

// TestReleasedNodeJudgedAfresh: a release holds for the episode it was
// given in; once the node recovers, its next failure is judged again, held
// back while the window is full and cordoned once it has room. Watchers
// see the release and the count it leaves.
func TestReleasedNodeJudgedAfresh(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	w := h.watch(0)
	w.until("snapshot", isSnapshotEnd)
	tripBreaker(h)
	release := func() {
		t.Helper()
		if _, err := h.ops.ReleaseNode(ctx, &controlplanev1.ReleaseNodeRequest{NodeId: "b", Reason: "job is fine"}); err != nil {
			t.Fatal(err)
		}
	}
	release()
	w.until("b released in the stream", func(m *controlplanev1.WatchFleetResponse) bool {
		return m.GetNodeUpsert().GetNodeId() == "b" && m.GetNodeUpsert().GetCordonHeldBackAt() == nil
	})
	w.nudgedUntil("totals counting 1 held back", func(m *controlplanev1.WatchFleetResponse) bool {
		return m.GetTotals() != nil && m.GetTotals().GetSummary().GetHeldBack() == 1
	}, func() { clock.Advance(time.Second) })
	recoverThenFail := func(boot string) *fleetv1.Node {
		t.Helper()
		if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "b", Hostname: "b", Gpus: fleettest.GPUs(1), BootId: boot}); err != nil {
			t.Fatal(err)
		}
		h.healthyReport("b", 1)
		h.xid("b", 0, 79)
		return h.get("b").GetNode()
	}
	if n := recoverThenFail("boot-2"); n.GetLifecycle() != active || n.GetCordonHeldBackAt() == nil {
		t.Fatalf("failing again in the full window, b is %s, held back at %v; want held back again", n.GetLifecycle(), n.GetCordonHeldBackAt())
	}
	release()
	clock.Advance(h.cfg.AutoCordon.Window.Duration + time.Second)
	if n := recoverThenFail("boot-3"); n.GetLifecycle() != cordoned || n.GetCordonHeldBackAt() != nil {
		t.Fatalf("failing again once the window has room, b is %s, held back at %v; want cordoned", n.GetLifecycle(), n.GetCordonHeldBackAt())
	}
}
