package controlplane_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/api"
	"github.com/navarch/navarch/controlplane/watch"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func isSnapshotEnd(m *controlplanev1.WatchFleetResponse) bool { return m.GetSnapshot().GetComplete() }

func TestWatchSnapshotThenDeltas(t *testing.T) {
	h := newHarness(t)
	for i := range 1200 {
		if _, err := h.node.RegisterNode(ctxT(t), &nodev1.RegisterNodeRequest{NodeId: fmt.Sprintf("n%04d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	h.register("gpu", 4)
	w := h.watch(0)
	// The snapshot comes in chunks; their union is the fleet.
	nodes := 0
	var rev uint64
	end := w.until("snapshot", func(m *controlplanev1.WatchFleetResponse) bool {
		if s := m.GetSnapshot(); s != nil {
			nodes += len(s.GetNodes())
			if len(s.GetNodes()) > watch.SnapshotChunk {
				t.Fatalf("chunk of %d nodes", len(s.GetNodes()))
			}
			rev = m.GetRevision()
		}
		return isSnapshotEnd(m)
	})
	if nodes != 1201 || end.GetSnapshot().GetSummary().GetNodes() != 1201 || rev == 0 {
		t.Fatalf("snapshot of %d nodes (summary %d) at revision %d", nodes, end.GetSnapshot().GetSummary().GetNodes(), rev)
	}
	h.xid("gpu", 1, 79)
	ev := w.until("health event", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetHealthEvent() != nil })
	if ev.GetHealthEvent().GetXid() != 79 || ev.GetRevision() <= rev {
		t.Fatalf("event %v at %d after snapshot at %d", ev.GetHealthEvent(), ev.GetRevision(), rev)
	}
	up := w.until("node upsert", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetNodeUpsert().GetNodeId() == "gpu" })
	if up.GetNodeUpsert().GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY || up.GetNodeUpsert().GetLifecycle() != cordoned {
		t.Fatalf("upsert %v", up.GetNodeUpsert())
	}
	if up.GetRevision() <= ev.GetRevision() {
		t.Fatalf("revisions out of order: %d then %d", ev.GetRevision(), up.GetRevision())
	}
}

// TestWatchResume: a watcher resuming from a revision the server still
// keeps gets the changes since; one resuming from a revision too old to
// replay, or from the future, gets a snapshot.
func TestWatchResume(t *testing.T) {
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.WatchReplay = 16 }))
	h.register("a", 1)
	w := h.watch(0)
	end := w.until("snapshot", isSnapshotEnd)
	rev := end.GetRevision()
	w.cancel()

	// Changes while the watcher was away.
	h.register("b", 1)
	if _, err := h.ops.CordonNode(ctxT(t), &controlplanev1.CordonNodeRequest{NodeId: "a"}); err != nil {
		t.Fatal(err)
	}
	w2 := h.watch(rev)
	first := w2.until("first message", func(*controlplanev1.WatchFleetResponse) bool { return true })
	if first.GetSnapshot() != nil {
		t.Fatal("resume from a recent revision sent a snapshot")
	}
	if first.GetRevision() != rev+1 {
		t.Fatalf("resume started at %d, want %d", first.GetRevision(), rev+1)
	}
	w2.until("a cordoned", func(m *controlplanev1.WatchFleetResponse) bool {
		return m.GetNodeUpsert().GetNodeId() == "a" && m.GetNodeUpsert().GetLifecycle() == cordoned
	})

	// A revision too old to replay gets a snapshot instead: each event
	// of a report is a change.
	var events []*fleetv1.HealthEvent
	for range h.cfg.WatchReplay + 10 {
		events = append(events, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: 0, Xid: 13})
	}
	if _, err := h.node.ReportHealth(ctxT(t), &nodev1.ReportHealthRequest{NodeId: "b", Events: events}); err != nil {
		t.Fatal(err)
	}
	if now := h.fleet().Status().GetRevision(); now <= rev+uint64(h.cfg.WatchReplay) {
		t.Fatalf("revision %d is still within %d of %d", now, h.cfg.WatchReplay, rev)
	}
	w3 := h.watch(rev)
	if m := w3.until("first", func(*controlplanev1.WatchFleetResponse) bool { return true }); m.GetSnapshot() == nil {
		t.Fatalf("too-old revision got %v, want a snapshot", m)
	}
	// So does a revision from the future.
	w4 := h.watch(h.fleet().Status().GetRevision() + 1000)
	if m := w4.until("first", func(*controlplanev1.WatchFleetResponse) bool { return true }); m.GetSnapshot() == nil {
		t.Fatalf("future revision got %v, want a snapshot", m)
	}
}

// TestSlowWatcherResyncs: a stream that falls behind gets Resync then a
// fresh snapshot. A report is published whole while the hub holds its
// lock, so the stream takes at most one of its events meanwhile, and a
// report of more events than the queue holds puts it behind.
func TestSlowWatcherResyncs(t *testing.T) {
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.WatchBuffer = 16 }))
	h.register("a", 1)
	stream := h.watch(0)
	stream.until("snapshot", isSnapshotEnd)
	var events []*fleetv1.HealthEvent
	for range api.MaxEventsPerCall {
		events = append(events, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: 0, Xid: 13})
	}
	if _, err := h.node.ReportHealth(ctxT(t), &nodev1.ReportHealthRequest{NodeId: "a", Events: events}); err != nil {
		t.Fatal(err)
	}
	stream.until("resync", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetResync() != nil })
	end := stream.until("fresh snapshot", isSnapshotEnd)
	if end.GetRevision() != h.fleet().Status().GetRevision() {
		t.Fatalf("fresh snapshot at %d, want the current revision %d", end.GetRevision(), h.fleet().Status().GetRevision())
	}
}

// flushedUntil advances the fake clock a second at a time, each second
// one flush of the hub's coalesced heartbeats and totals, until a message
// that match accepts arrives. (The hub's loop may not have started its
// ticker yet, so the clock moves on again when nothing comes.)
func (w *fleetWatch) flushedUntil(clock *clockwork.FakeClock, what string, match func(*controlplanev1.WatchFleetResponse) bool) *controlplanev1.WatchFleetResponse {
	w.t.Helper()
	return w.nudgedUntil(what, match, func() { clock.Advance(time.Second) })
}

// TestSlowWatcherHeartbeatsCoalesced: a stream that reads slowly gets
// every node's latest heartbeat, and no resync.
func TestSlowWatcherHeartbeatsCoalesced(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	for _, id := range []string{"a", "b", "c"} {
		h.register(id, 1)
	}
	beat := func(id string, util uint32) {
		t.Helper()
		if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: id, Samples: []*fleetv1.GpuSample{{UtilizationGpuPercent: util}}}); err != nil {
			t.Fatal(err)
		}
	}
	stream := h.watch(0)
	stream.until("snapshot", isSnapshotEnd)
	for round := range 200 {
		beat("a", uint32(round%90))
		clock.Advance(time.Second)
	}
	beat("a", 100)
	stream.flushedUntil(clock, "a's last heartbeat", func(m *controlplanev1.WatchFleetResponse) bool {
		if m.GetResync() != nil {
			t.Fatal("resynced for heartbeats")
		}
		for _, hb := range m.GetHeartbeats().GetHeartbeats() {
			if hb.GetNodeId() == "a" && hb.GetSamples()[0].GetUtilizationGpuPercent() == 100 {
				return true
			}
		}
		return false
	})
}

// TestHeartbeatsCoalesced: heartbeats reach watchers once a second, one
// entry per node with its latest sample, and advance no revision.
func TestHeartbeatsCoalesced(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("a", 1)
	h.register("b", 1)
	w := h.watch(0)
	w.until("snapshot", isSnapshotEnd)
	for i := range 50 {
		for _, id := range []string{"a", "b"} {
			if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: id, Samples: []*fleetv1.GpuSample{{UtilizationGpuPercent: uint32(i)}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	revBefore := h.fleet().Status().GetRevision()
	m := w.flushedUntil(clock, "heartbeat batch", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetHeartbeats() != nil })
	hbs := m.GetHeartbeats().GetHeartbeats()
	if len(hbs) != 2 {
		t.Fatalf("100 heartbeats became %d entries, want 2", len(hbs))
	}
	for _, hb := range hbs {
		if hb.GetSamples()[0].GetUtilizationGpuPercent() != 49 {
			t.Fatalf("batch carries %v, want the latest sample", hb.GetSamples())
		}
	}
	if h.fleet().Status().GetRevision() != revBefore || m.GetRevision() != revBefore {
		t.Fatal("heartbeats advanced the revision")
	}
	select {
	case extra := <-w.msgs:
		if extra.GetNodeUpsert() != nil || extra.GetHealthEvent() != nil {
			t.Fatalf("heartbeats produced %v", extra)
		}
	case <-time.After(100 * time.Millisecond):
	}
}
