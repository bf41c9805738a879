package controlplane_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/api"
	"github.com/navarch/navarch/internal/fleettest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func TestXID79CordonsAndXID13DoesNot(t *testing.T) {
	h := newHarness(t)
	h.register("a", 4)
	h.register("b", 4)
	h.register("c", 4)
	for _, id := range []string{"a", "b", "c"} {
		h.healthyReport(id, 4)
	}
	if resp := h.xid("a", 2, 79); resp.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Fatalf("report answered %s", resp.GetHealth())
	}
	d := h.get("a")
	n := d.GetNode()
	if n.GetLifecycle() != cordoned || !n.GetCordonedByPolicy() || !strings.Contains(n.GetLifecycleReason(), "fallen off the bus") {
		t.Fatalf("a: %s by policy %t reason %q", n.GetLifecycle(), n.GetCordonedByPolicy(), n.GetLifecycleReason())
	}
	if n.GetGpus()[2].GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY || n.GetGpus()[0].GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Fatalf("per-GPU health wrong: %v", n.GetGpus())
	}
	ev := d.GetEvents()[0]
	if ev.GetXid() != 79 || ev.GetRemedy() != fleetv1.Remedy_REMEDY_REBOOT_NODE || ev.GetCause() != "GPU has fallen off the bus" || ev.GetGpuUuid() != "GPU-0002" {
		t.Fatalf("event %v", ev)
	}

	h.xid("b", 0, 13)
	d = h.get("b")
	if d.GetNode().GetLifecycle() != active || d.GetNode().GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Fatalf("b after XID 13: %s %s", d.GetNode().GetLifecycle(), d.GetNode().GetHealth())
	}
	if len(d.GetEvents()) != 1 || d.GetEvents()[0].GetRemedy() != fleetv1.Remedy_REMEDY_RESTART_APPLICATION {
		t.Fatalf("XID 13 not recorded: %v", d.GetEvents())
	}

	evs, err := h.ops.ListEvents(ctxT(t), &controlplanev1.ListEventsRequest{MinHealth: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY})
	if err != nil || len(evs.GetEvents()) != 1 || evs.GetEvents()[0].GetNodeId() != "a" {
		t.Fatalf("ListEvents UNHEALTHY: %v %v", evs, err)
	}
}

// TestOperatorUncordonSticks: an operator who uncordons an UNHEALTHY node
// is not overruled by the next health report.
func TestOperatorUncordonSticks(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("a", 2)
	h.register("b", 2)
	h.register("c", 2)
	h.xid("a", 0, 48)
	if h.lifecycle("a") != cordoned {
		t.Fatal("not auto-cordoned")
	}
	if _, err := h.ops.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: "a", Reason: "known, accepted"}); err != nil {
		t.Fatal(err)
	}
	h.xid("a", 0, 48)
	h.healthyReport("a", 2)
	if got := h.lifecycle("a"); got != active {
		t.Fatalf("re-cordoned after an operator uncordon: %s", got)
	}
}

func TestReportValidation(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 2)
	many := make([]*fleetv1.HealthEvent, 257)
	for i := range many {
		many[i] = &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13}
	}
	rows := []struct {
		name  string
		req   *nodev1.ReportHealthRequest
		code  codes.Code
		field string
	}{
		{"no-kind", &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{{}}}, codes.InvalidArgument, "events[0].kind"},
		{"xid-zero", &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_XID}}}, codes.InvalidArgument, "events[0].xid"},
		{"unknown-gpu", &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 7}}}, codes.InvalidArgument, "events[0].gpu_index"},
		{"too-many-events", &nodev1.ReportHealthRequest{NodeId: "n1", Events: many}, codes.InvalidArgument, "events"},
		{"duplicate-metrics", &nodev1.ReportHealthRequest{NodeId: "n1", Metrics: []*fleetv1.GpuMetrics{fleettest.CleanMetrics(0), fleettest.CleanMetrics(0)}}, codes.InvalidArgument, "metrics[1].gpu_index"},
		{"utilization", &nodev1.ReportHealthRequest{NodeId: "n1", Metrics: []*fleetv1.GpuMetrics{{UtilizationGpuPercent: 101}}}, codes.InvalidArgument, "metrics[0].utilization_gpu_percent"},
		{"unnamed-scheduler", &nodev1.ReportHealthRequest{NodeId: "n1", Scheduler: &fleetv1.SchedulerState{State: "IDLE"}}, codes.InvalidArgument, "scheduler.scheduler"},
		{"scheduler-reason", &nodev1.ReportHealthRequest{NodeId: "n1", Scheduler: &fleetv1.SchedulerState{Scheduler: "slurm", Reason: strings.Repeat("x", 1025)}}, codes.InvalidArgument, "scheduler.reason"},
		{"scheduler-state-control", &nodev1.ReportHealthRequest{NodeId: "n1", Scheduler: &fleetv1.SchedulerState{Scheduler: "slurm", State: "IDLE\x1b[2J"}}, codes.InvalidArgument, "scheduler.state"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			_, err := h.node.ReportHealth(ctx, row.req)
			wantCode(t, err, row.code, row.field)
		})
	}
	// One bad event in a report loses the whole report, and nothing else.
	_, err := h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 0}, {Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 9},
	}})
	wantCode(t, err, codes.InvalidArgument, "events[1].gpu_index")
	if d := h.get("n1"); len(d.GetEvents()) != 0 || d.GetNode().GetLifecycle() != active || d.GetNode().GetScheduler() != nil {
		t.Fatalf("a rejected report changed the node: %v", d.GetEvents())
	}
}

// TestCircuitBreaker: automatic cordons stop once half the fleet was
// cordoned within the window; operators see it; it closes again once the
// window has room.
func TestCircuitBreaker(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	for i := range 10 {
		h.register(fmt.Sprintf("n%d", i), 1)
	}
	for i := range 7 {
		h.xid(fmt.Sprintf("n%d", i), 0, 79)
	}
	st, err := h.ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetSummary().GetCordoned() != 5 || st.GetSummary().GetUnhealthy() != 7 {
		t.Fatalf("cordoned %d unhealthy %d; want 5 and 7", st.GetSummary().GetCordoned(), st.GetSummary().GetUnhealthy())
	}
	b := st.GetBreaker()
	if !b.GetTripped() || b.GetSuppressedCordons() != 2 || b.GetRecentAutoCordons() != 5 || b.GetMaxFraction() != 0.5 {
		t.Fatalf("breaker %v", b)
	}
	for _, id := range []string{"n5", "n6"} {
		if h.lifecycle(id) != active {
			t.Fatalf("%s cordoned past the breaker", id)
		}
	}
	clock.Advance(5*time.Minute + time.Second)
	st, _ = h.ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if st.GetBreaker().GetTripped() {
		t.Fatalf("breaker still tripped after the window: %v", st.GetBreaker())
	}
	h.register("n7", 1) // keep it online under the fake clock
	h.xid("n7", 0, 79)
	if h.lifecycle("n7") != cordoned {
		t.Fatal("auto-cordon did not resume after the window")
	}
}

func TestBreakerDisabled(t *testing.T) {
	off := false
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.AutoCordon.Enabled = &off }))
	h.register("n1", 1)
	h.xid("n1", 0, 79)
	if h.lifecycle("n1") != active {
		t.Fatal("cordoned with auto-cordon off")
	}
	st, _ := h.ops.GetFleetStatus(ctxT(t), &controlplanev1.GetFleetStatusRequest{})
	if st.GetBreaker().GetAutoCordonEnabled() {
		t.Fatal("status says auto-cordon is on")
	}
}

// TestBreakerRecoveryReachesWatchers: the breaker closes as its window
// passes, with no other change; watchers are told.
func TestBreakerRecoveryReachesWatchers(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	for _, id := range []string{"n0", "n1", "n2"} {
		h.register(id, 1)
	}
	for _, id := range []string{"n0", "n1", "n2"} {
		h.xid(id, 0, 79)
	}
	w := h.watch(0)
	w.until("snapshot", isSnapshotEnd)
	// The fake clock drives the hub's once-a-second flush of totals.
	clock.Advance(time.Second)
	w.until("tripped breaker", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetTotals().GetBreaker().GetTripped() })
	clock.Advance(h.cfg.AutoCordon.Window.Duration + time.Second)
	w.until("closed breaker", func(m *controlplanev1.WatchFleetResponse) bool {
		return m.GetTotals() != nil && !m.GetTotals().GetBreaker().GetTripped()
	})
}

func TestReportFieldLimits(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 1)
	_, err := h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED, GpuIndex: 0, Cause: strings.Repeat("x", api.MaxShortText+1)},
	}})
	wantCode(t, err, codes.InvalidArgument, "events[0].cause")
	m := fleettest.CleanMetrics(0)
	for range api.MaxUnsupported + 1 {
		m.Unsupported = append(m.Unsupported, "ecc")
	}
	_, err = h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Metrics: []*fleetv1.GpuMetrics{m}})
	wantCode(t, err, codes.InvalidArgument, "metrics[0].unsupported")
}
