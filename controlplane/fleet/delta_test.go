package fleet

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/healthdelta"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// step is one report: the GPUs' readings and the events with them.
type step struct {
	name   string
	change func(i int, m *fleetv1.GpuMetrics)
	lost   int // a GPU missing from the snapshot; -1 for none
	events []*fleetv1.HealthEvent
}

func readings(at time.Time, s step) []*fleetv1.GpuMetrics {
	var out []*fleetv1.GpuMetrics
	for i := range 4 {
		if i == s.lost {
			continue
		}
		m := fleettest.CleanMetrics(uint32(i))
		m.Time = timestamppb.New(at)
		m.Processes = []*fleetv1.GpuProcess{{Pid: uint32(1000 + i), Name: "train"}}
		if s.change != nil {
			s.change(i, m)
		}
		out = append(out, m)
	}
	return out
}

// TestDeltasAreJudgedAsFullSnapshots sends the same readings to two
// fleets, to one as full snapshots and to the other as an agent sends
// them, a full and then deltas: every step leaves the two with the same
// node, GPUs, faults, events and metrics.
func TestDeltasAreJudgedAsFullSnapshots(t *testing.T) {
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	clockA, clockB := clockwork.NewFakeClockAt(at), clockwork.NewFakeClockAt(at)
	fulls, deltas := newFleet(t, Options{Clock: clockA}), newFleet(t, Options{Clock: clockB})
	t.Cleanup(fulls.Close)
	t.Cleanup(deltas.Close)
	register(t, fulls, "n1", 4)
	register(t, deltas, "n1", 4)
	sender := healthdelta.NewSender()
	gpu := func(idx int, fn func(m *fleetv1.GpuMetrics)) func(int, *fleetv1.GpuMetrics) {
		return func(i int, m *fleetv1.GpuMetrics) {
			if i == idx {
				fn(m)
			}
		}
	}
	steps := []step{
		{name: "clean", lost: -1},
		{name: "warmer", lost: -1, change: func(_ int, m *fleetv1.GpuMetrics) { m.TemperatureCelsius = 70 }},
		{name: "link-down", lost: -1, change: gpu(1, func(m *fleetv1.GpuMetrics) { m.Nvlinks[4].Active = false })},
		{name: "link-still-down-with-xid", lost: -1, change: gpu(1, func(m *fleetv1.GpuMetrics) { m.Nvlinks[4].Active = false }),
			events: []*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 74, GpuIndex: 1}}},
		{name: "link-up-ecc-and-hot", lost: -1, change: func(i int, m *fleetv1.GpuMetrics) {
			if i == 2 {
				m.Ecc = &fleetv1.EccCounts{VolatileUncorrected: 2, AggregateUncorrected: 2}
				m.RowRemap = &fleetv1.RowRemapState{Pending: true}
			}
			if i == 3 {
				m.TemperatureCelsius = 90
				m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET
			}
		}},
		{name: "processes-end-ecc-unread", lost: -1, change: func(i int, m *fleetv1.GpuMetrics) {
			m.Processes = nil
			if i == 2 {
				m.Ecc = nil
				m.Unsupported = append(m.Unsupported, "ecc")
			}
		}},
		{name: "gpu-lost", lost: 0},
		{name: "all-clean-again", lost: -1},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clockA.Advance(30 * time.Second)
			clockB.Advance(30 * time.Second)
			now := clockA.Now()
			full := &nodev1.ReportHealthRequest{NodeId: "n1", Metrics: readings(now, s), GpuCount: 4, Events: cloneEvents(s.events)}
			if _, err := fulls.ReportHealth(ctxT(t), full); err != nil {
				t.Fatal(err)
			}
			req := &nodev1.ReportHealthRequest{NodeId: "n1", GpuCount: 4, Events: cloneEvents(s.events)}
			sender.Fill(req, readings(now, s), now)
			resp, err := deltas.ReportHealth(ctxT(t), wire(t, req))
			if err != nil {
				t.Fatal(err)
			}
			if s.name != "clean" && len(req.GetMetricChanges()) == 0 {
				t.Fatal("the agent's report is not a delta")
			}
			if resp.GetHeldSequence() != req.GetSequence() || resp.GetFullSnapshotWanted() {
				t.Fatalf("answer %v to report %d", resp, req.GetSequence())
			}
			sender.Answered(req, resp)
			a, err := fulls.NodeDetail(ctxT(t), "n1", 100)
			if err != nil {
				t.Fatal(err)
			}
			b, err := deltas.NodeDetail(ctxT(t), "n1", 100)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(a, b) {
				t.Fatalf("judged from deltas:\n%v\nfrom full snapshots:\n%v", b, a)
			}
		})
	}
	a, _ := fulls.NodeDetail(ctxT(t), "n1", 100)
	if len(a.GetEvents()) < 6 {
		t.Fatalf("the steps raised only %d events; the comparison tells little", len(a.GetEvents()))
	}
}

// TestDeltaOnAnotherBase: a delta whose base is not the snapshot held (a
// report reordered, an answer lost, a control plane restarted) changes no
// metrics, keeps its events, and asks for a full snapshot; a delta that
// does not fit the base it names is refused, naming the field.
func TestDeltaOnAnotherBase(t *testing.T) {
	st := openStore(t, t.TempDir())
	f := newFleet(t, Options{Store: st})
	register(t, f, "n1", 2)
	ctx := ctxT(t)
	m := func(temp uint32) []*fleetv1.GpuMetrics {
		out := []*fleetv1.GpuMetrics{fleettest.CleanMetrics(0), fleettest.CleanMetrics(1)}
		for _, g := range out {
			g.TemperatureCelsius = temp
		}
		return out
	}
	delta := func(seq, base uint64, temp uint32) *nodev1.ReportHealthRequest {
		held := healthdelta.Full(base, m(50))
		return &nodev1.ReportHealthRequest{NodeId: "n1", Sequence: seq, BaseSequence: base, MetricChanges: healthdelta.Diff(held, m(temp)), GpuCount: 2}
	}
	if _, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Sequence: 10, Metrics: m(50), GpuCount: 2}); err != nil {
		t.Fatal(err)
	}
	if resp, err := f.ReportHealth(ctx, delta(11, 10, 60)); err != nil || resp.GetHeldSequence() != 11 {
		t.Fatalf("delta on the held base: %v, %v", resp, err)
	}
	temps := func(f *Fleet) []uint32 {
		d, err := f.NodeDetail(ctx, "n1", 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint32
		for _, g := range d.GetNode().GetGpus() {
			out = append(out, g.GetMetrics().GetTemperatureCelsius())
		}
		return out
	}
	before := eventCount(t, f)
	late := delta(12, 10, 70)
	late.Events = []*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 1}}
	resp, err := f.ReportHealth(ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetFullSnapshotWanted() || resp.GetHeldSequence() != 11 || resp.GetAccepted() != 1 {
		t.Fatalf("answer to a delta on another base: %v", resp)
	}
	if eventCount(t, f) != before+1 {
		t.Fatal("the refused delta's event was not recorded")
	}
	if got := temps(f); got[0] != 60 {
		t.Fatalf("a refused delta changed the metrics: %v", got)
	}
	if resp.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Fatalf("health %s after XID 79", resp.GetHealth())
	}

	// A delta naming a link the held snapshot lacks, its base sequence
	// right: the two sides disagree on the base. It is set aside as a
	// delta on another base is, its XID still recorded.
	misfit := delta(13, 11, 70)
	misfit.MetricChanges[1].Metrics.Nvlinks = []*fleetv1.NvLinkState{{Link: 40}}
	misfit.Events = []*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13, GpuIndex: 0}}
	before = eventCount(t, f)
	resp, err = f.ReportHealth(ctx, misfit)
	if err != nil || !resp.GetFullSnapshotWanted() || resp.GetHeldSequence() != 11 || resp.GetAccepted() != 1 {
		t.Fatalf("a delta naming a link the base lacks: %v, %v", resp, err)
	}
	if eventCount(t, f) != before+1 {
		t.Fatal("the misfit delta's event was not recorded")
	}
	if got := temps(f); got[0] != 60 {
		t.Fatalf("a misfit delta changed the metrics: %v", got)
	}

	f.Close()
	f = newFleet(t, Options{Store: st})
	defer f.Close()
	resp, err = f.ReportHealth(ctx, delta(14, 11, 70))
	if err != nil || !resp.GetFullSnapshotWanted() || resp.GetHeldSequence() != 0 {
		t.Fatalf("a delta after a restart: %v, %v; want a full snapshot asked for", resp, err)
	}
	if resp, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Sequence: 15, Metrics: m(75), GpuCount: 2}); err != nil || resp.GetHeldSequence() != 15 {
		t.Fatalf("the full snapshot after it: %v, %v", resp, err)
	}
	if got := temps(f); got[0] != 75 {
		t.Fatalf("metrics after the full snapshot: %v", got)
	}
}

// TestLateFullSnapshotPassedOver: a full snapshot older than the one held,
// from the same run of the agent (a retried report overtaken by its
// successors), keeps its events but leaves the newer metrics and the held
// sequence, and asks nothing; after the agent registers again its new
// run's first full is taken whatever its sequence.
func TestLateFullSnapshotPassedOver(t *testing.T) {
	f := newFleet(t, Options{})
	t.Cleanup(f.Close)
	register(t, f, "n1", 2)
	ctx := ctxT(t)
	full := func(seq uint64, temp uint32) *nodev1.ReportHealthRequest {
		m := []*fleetv1.GpuMetrics{fleettest.CleanMetrics(0), fleettest.CleanMetrics(1)}
		for _, g := range m {
			g.TemperatureCelsius = temp
		}
		return &nodev1.ReportHealthRequest{NodeId: "n1", Sequence: seq, Metrics: m, GpuCount: 2}
	}
	temp := func() uint32 {
		d, err := f.NodeDetail(ctx, "n1", 100)
		if err != nil {
			t.Fatal(err)
		}
		return d.GetNode().GetGpus()[0].GetMetrics().GetTemperatureCelsius()
	}
	for _, r := range []*nodev1.ReportHealthRequest{full(500, 50), full(501, 60)} {
		if resp, err := f.ReportHealth(ctx, r); err != nil || resp.GetHeldSequence() != r.GetSequence() {
			t.Fatalf("full %d: %v, %v", r.GetSequence(), resp, err)
		}
	}
	late := full(500, 50)
	late.Events = []*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13, GpuIndex: 0}}
	before := eventCount(t, f)
	resp, err := f.ReportHealth(ctx, late)
	if err != nil || resp.GetHeldSequence() != 501 || resp.GetFullSnapshotWanted() || resp.GetAccepted() != 1 {
		t.Fatalf("a late full snapshot: %v, %v; want held 501, nothing asked, its event taken", resp, err)
	}
	if eventCount(t, f) != before+1 {
		t.Fatal("the late full snapshot's event was not recorded")
	}
	if got := temp(); got != 60 {
		t.Fatalf("the late full snapshot replaced newer metrics: %d °C, want 60", got)
	}

	// The agent restarts: its new run numbers reports from elsewhere.
	register(t, f, "n1", 2)
	if resp, err := f.ReportHealth(ctx, full(7, 70)); err != nil || resp.GetHeldSequence() != 7 {
		t.Fatalf("a new run's first full: %v, %v; want it taken", resp, err)
	}
	if got := temp(); got != 70 {
		t.Fatalf("metrics after a new run's first full: %d °C, want 70", got)
	}
}

func cloneEvents(in []*fleetv1.HealthEvent) []*fleetv1.HealthEvent {
	var out []*fleetv1.HealthEvent
	for _, e := range in {
		out = append(out, proto.CloneOf(e))
	}
	return out
}

// wire is req as the control plane decodes it: messages of its own.
func wire(t *testing.T, req *nodev1.ReportHealthRequest) *nodev1.ReportHealthRequest {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	out := &nodev1.ReportHealthRequest{}
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}
