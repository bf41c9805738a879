package controlplane

import (
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

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
			if len(s.GetNodes()) > snapshotChunk {
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

func TestWatchResume(t *testing.T) {
	h := newHarness(t)
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

	// A revision too old to replay gets a snapshot instead.
	f := h.fleet()
	for i := range h.cfg.WatchReplay + 10 {
		f.hub.publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeRemoved{NodeRemoved: &controlplanev1.NodeRemoved{NodeId: fmt.Sprint("x", i)}}})
		})
	}
	w3 := h.watch(rev)
	if m := w3.until("first", func(*controlplanev1.WatchFleetResponse) bool { return true }); m.GetSnapshot() == nil {
		t.Fatalf("too-old revision got %v, want a snapshot", m)
	}
	// So does a revision from the future.
	w4 := h.watch(f.hub.revision() + 1000)
	if m := w4.until("first", func(*controlplanev1.WatchFleetResponse) bool { return true }); m.GetSnapshot() == nil {
		t.Fatalf("future revision got %v, want a snapshot", m)
	}
}

// TestSlowWatcherResyncs: a watcher that does not read is told to resync
// and gets a fresh snapshot; its queue never grows past the bound.
func TestSlowWatcherResyncs(t *testing.T) {
	h := newHarness(t, withConfig(func(c *Config) { c.WatchBuffer = 16 }))
	h.register("a", 1)
	f := h.fleet()
	w, st, ok := f.hub.subscribe(0, f.all)
	if !ok || st.snapshot == nil {
		t.Fatal("no snapshot")
	}
	for range 1000 {
		f.hub.publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: &fleetv1.Node{NodeId: "a"}}})
		})
	}
	ch, lagged := f.hub.queue(w)
	if len(ch) > 16 {
		t.Fatalf("queue grew to %d", len(ch))
	}
	select {
	case <-lagged:
	default:
		t.Fatal("watcher not marked behind")
	}
	st = f.hub.resync(w, f.all)
	if st.snapshot == nil || st.rev != f.hub.revision() {
		t.Fatal("resync did not give a current snapshot")
	}
	f.hub.unsubscribe(w)

	// Over the wire: a stream that stops reading gets Resync then a snapshot.
	stream := h.watch(0)
	stream.until("snapshot", isSnapshotEnd)
	big := &fleetv1.Node{NodeId: "a", LifecycleReason: string(make([]byte, 8000))}
	for range 3000 {
		f.hub.publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: big}})
		})
	}
	stream.until("resync", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetResync() != nil })
	stream.until("fresh snapshot", isSnapshotEnd)
}

// TestSlowWatcherHeartbeatsCoalesced: heartbeat batches are built every
// second whether or not a watcher reads them. A watcher that has not taken
// the last ones gets no more batches; it is sent the latest state of the
// nodes it missed once its queue is empty, and is never resynced for it.
func TestSlowWatcherHeartbeatsCoalesced(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	for _, id := range []string{"a", "b", "c"} {
		h.register(id, 1)
	}
	f := h.fleet()
	w, _, _ := f.hub.subscribe(0, f.all)
	defer f.hub.unsubscribe(w)
	beat := func(id string, util uint32) {
		t.Helper()
		if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: id, Samples: []*fleetv1.GpuSample{{UtilizationGpuPercent: util}}}); err != nil {
			t.Fatal(err)
		}
	}
	ch, lagged := f.hub.queue(w)
	// heartbeatBatches empties the queue as the stream would and counts
	// the heartbeat batches in it.
	heartbeatBatches := func() int {
		n := 0
		for len(ch) > 0 {
			m := <-ch
			w.sent(m)
			if m.GetHeartbeats() != nil {
				n++
			}
		}
		return n
	}
	for _, id := range []string{"a", "b", "c"} {
		beat(id, 1)
	}
	f.hub.flush(f)
	queued := len(ch)
	// Many more rounds while the watcher reads nothing.
	for round := range 1000 {
		beat("a", uint32(10+round%50))
		beat("b", 7)
		f.hub.flush(f)
	}
	if len(ch) != queued {
		t.Fatalf("a watcher that read nothing has %d messages queued, had %d after the first round", len(ch), queued)
	}
	if isClosed(lagged) {
		t.Fatal("a slow watcher was resynced for heartbeats")
	}
	if n := heartbeatBatches(); n != 1 {
		t.Fatalf("%d heartbeat batches were queued, want the first round's one", n)
	}
	// Missed heartbeats wait while a change is queued: they carry the
	// current revision, and a client resuming from it must not skip that
	// change.
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, b := f.hub.missed(w); b != nil {
		t.Fatal("missed heartbeats handed out ahead of a queued change")
	}
	heartbeatBatches()
	// Now its queue is empty: the missed nodes come with their latest state.
	rev, missed := f.hub.missed(w)
	if rev != f.hub.revision() {
		t.Fatalf("missed heartbeats carry revision %d, want %d", rev, f.hub.revision())
	}
	got := map[string]uint32{}
	for _, b := range missed {
		for _, hb := range b.GetHeartbeats() {
			got[hb.GetNodeId()] = hb.GetSamples()[0].GetUtilizationGpuPercent()
		}
	}
	if len(got) != 2 || got["a"] != 10+999%50 || got["b"] != 7 {
		t.Fatalf("missed heartbeats %v, want a's and b's latest", got)
	}
	// A watcher that fell behind dropped changes the current revision
	// covers: no heartbeats carry it until the resync.
	beat("a", 5)
	w.miss(map[*nodeState]struct{}{f.get("a"): {}})
	f.hub.mu.Lock()
	w.behind = true
	f.hub.mu.Unlock()
	if _, b := f.hub.missed(w); b != nil {
		t.Fatal("missed heartbeats handed to a watcher that is behind")
	}
	f.hub.resync(w, f.all)
	ch, _ = f.hub.queue(w)
	// Caught up, it gets batches again.
	beat("c", 3)
	f.hub.flush(f)
	if n := heartbeatBatches(); n != 1 {
		t.Fatalf("a watcher that caught up got %d batches", n)
	}

	// Over the wire: a stream that reads slowly gets every node's latest
	// heartbeat, and no resync.
	stream := h.watch(0)
	stream.until("snapshot", isSnapshotEnd)
	for round := range 200 {
		beat("a", uint32(round%90))
		f.hub.flush(f)
	}
	beat("a", 100)
	f.hub.flush(f)
	stream.until("a's last heartbeat", func(m *controlplanev1.WatchFleetResponse) bool {
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

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

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
	f := h.fleet()
	revBefore := f.hub.revision()
	f.hub.flush(f)
	m := w.until("heartbeat batch", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetHeartbeats() != nil })
	hbs := m.GetHeartbeats().GetHeartbeats()
	if len(hbs) != 2 {
		t.Fatalf("100 heartbeats became %d entries, want 2", len(hbs))
	}
	for _, hb := range hbs {
		if hb.GetSamples()[0].GetUtilizationGpuPercent() != 49 {
			t.Fatalf("batch carries %v, want the latest sample", hb.GetSamples())
		}
	}
	if f.hub.revision() != revBefore || m.GetRevision() != revBefore {
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
