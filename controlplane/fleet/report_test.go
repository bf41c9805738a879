package fleet

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/fleettest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestEventTimesFromTheFuture: an event up to MaxEventClockSkew ahead of
// the control plane's clock is taken (agents' clocks drift); one further
// ahead refuses the report, naming the event's time, and records nothing.
func TestEventTimesFromTheFuture(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	f := newFleet(t, Options{Clock: clock})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	register(t, f, "n1", 2)
	tests := []struct {
		name  string
		ahead time.Duration
		field string // empty: taken
	}{
		{"past", -time.Hour, ""},
		{"at-the-skew", MaxEventClockSkew, ""},
		{"past-the-skew", MaxEventClockSkew + time.Second, "events[1].time"},
		{"next-year", 365 * 24 * time.Hour, "events[1].time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := eventCount(t, f)
			_, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{
				{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13, GpuIndex: 0},
				{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13, GpuIndex: 1, Time: timestamppb.New(clock.Now().Add(tt.ahead))},
			}})
			if tt.field == "" {
				if err != nil || eventCount(t, f) != before+2 {
					t.Fatalf("got %v, want both events taken", err)
				}
				return
			}
			if field, _ := apierr.Field(err); status.Code(err) != codes.InvalidArgument || field != tt.field {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, tt.field)
			}
			if eventCount(t, f) != before {
				t.Fatal("a refused report recorded events")
			}
		})
	}
}

func eventCount(t *testing.T, f *Fleet) int {
	t.Helper()
	evs, err := f.Events(ctxT(t), "n1", fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// TestKernelLogLinesRecordedOnce: an agent that reads the kernel log again
// after a restart sends lines the control plane already has; each line of
// a boot is recorded once, and a new boot numbers its log anew.
func TestKernelLogLinesRecordedOnce(t *testing.T) {
	f := newFleet(t, Options{})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	register(t, f, "n1", 2)
	line := func(seq uint64, code uint32) *fleetv1.HealthEvent {
		return &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: 0, Xid: code, KernelSeq: seq, Message: "from the kernel log"}
	}
	report := func(evs ...*fleetv1.HealthEvent) {
		t.Helper()
		if _, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Events: evs}); err != nil {
			t.Fatal(err)
		}
	}
	before := eventCount(t, f)
	report(line(10, 13), line(11, 31))
	if got := eventCount(t, f) - before; got != 2 {
		t.Fatalf("first report recorded %d events, want 2", got)
	}
	// The agent restarted and read the log from its start: only line 12 is
	// new; an NVML event (no sequence) is always taken.
	report(line(10, 13), line(11, 31), line(12, 48), &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: 1, Xid: 13})
	if got := eventCount(t, f) - before; got != 4 {
		t.Fatalf("after the replay %d events in all, want 4", got)
	}
	d, err := f.NodeDetail(ctx, "n1", 0)
	if err != nil || d.GetNode().GetKernelSeq() != 12 {
		t.Fatalf("node kernel_seq %d (%v), want 12", d.GetNode().GetKernelSeq(), err)
	}
	// A reboot: the new boot's line 5 is news.
	if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Hostname: "n1", Gpus: fleettest.GPUs(2), BootId: "boot-2"}); err != nil {
		t.Fatal(err)
	}
	before = eventCount(t, f)
	report(line(5, 13))
	if got := eventCount(t, f) - before; got != 1 {
		t.Fatalf("a new boot's line: %d events recorded, want 1", got)
	}
}

// TestSchedulerStateFromReports: the scheduler state an agent reports is
// kept on the node and survives a restart; the same state again writes
// nothing; a report without one leaves it; a registration without one
// clears it (the agent no longer works with a scheduler).
func TestSchedulerStateFromReports(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	f := newFleet(t, Options{Store: st})
	ctx := ctxT(t)
	register(t, f, "n1", 1)
	byHand := &fleetv1.SchedulerState{Scheduler: "slurm", NodeName: "gpu1", State: "IDLE+DRAIN", Reason: "fan noise", Drain: true, Drained: true}
	report := func(s *fleetv1.SchedulerState) {
		t.Helper()
		if _, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Scheduler: s}); err != nil {
			t.Fatal(err)
		}
	}
	scheduler := func(f *Fleet) *fleetv1.SchedulerState {
		t.Helper()
		resp, err := f.NodeDetail(ctx, "n1", 0)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetNode().GetScheduler()
	}
	report(byHand)
	if got := scheduler(f); !proto.Equal(got, byHand) {
		t.Fatalf("scheduler = %v, want %v", got, byHand)
	}
	rev := f.hub.Revision()
	report(byHand)
	report(nil)
	if f.hub.Revision() != rev {
		t.Fatalf("an unchanged scheduler state moved the revision from %d to %d", rev, f.hub.Revision())
	}
	if got := scheduler(f); !proto.Equal(got, byHand) {
		t.Fatalf("after a report without one, scheduler = %v, want it kept", got)
	}

	f.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	f = newFleet(t, Options{Store: openStore(t, dir)})
	t.Cleanup(f.Close)
	if got := scheduler(f); !proto.Equal(got, byHand) {
		t.Fatalf("after a restart, scheduler = %v, want %v", got, byHand)
	}
	register(t, f, "n1", 1)
	if got := scheduler(f); got != nil {
		t.Fatalf("after a registration without a scheduler, scheduler = %v, want none", got)
	}
}

// TestSchedulerOnlyReportSharesGPUs: a report whose only news is the
// scheduler's state (a busy node's jobs) stores a node that shares its
// GPUs with the one before, which stays as it was; a report with an event
// judges copies of its own.
func TestSchedulerOnlyReportSharesGPUs(t *testing.T) {
	f := newFleet(t, Options{})
	ctx := ctxT(t)
	register(t, f, "n1", 2)
	ns := f.get("n1")
	before := ns.node.Load()
	snapshot := proto.CloneOf(before)
	if _, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Scheduler: &fleetv1.SchedulerState{Scheduler: "slurm", State: "MIXED", Jobs: 3}}); err != nil {
		t.Fatal(err)
	}
	after := ns.node.Load()
	if after == before || after.GetScheduler().GetJobs() != 3 {
		t.Fatalf("the scheduler's state was not stored: %v", after.GetScheduler())
	}
	if after.GetGpus()[0] != before.GetGpus()[0] || after.GetGpus()[1] != before.GetGpus()[1] {
		t.Fatal("a scheduler-only report copied the GPUs")
	}
	if !proto.Equal(before, snapshot) {
		t.Fatal("the node stored before changed")
	}
	if _, err := xid(t, f, "n1", 1, 79); err != nil {
		t.Fatal(err)
	}
	judged := ns.node.Load()
	if judged.GetGpus()[1] == after.GetGpus()[1] || judged.GetGpus()[1].GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Fatalf("the XID did not land on a GPU of its own: %v", judged.GetGpus()[1].GetHealth())
	}
	if after.GetGpus()[1].GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Fatal("judging the XID changed the node stored before")
	}
}
