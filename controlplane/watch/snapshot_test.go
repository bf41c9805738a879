package watch

import (
	"context"
	"testing"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestSnapshotShared: watchers that start between two changes share a
// snapshot; a published change, changed totals or a moved breaker give the
// next watcher a new one. Heartbeats do not (see
// TestSharedSnapshotThenHeartbeats).
func TestSnapshotShared(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Hub, *fakeFleet)
		shared bool
	}{
		{name: "nothing", change: func(*Hub, *fakeFleet) {}, shared: true},
		{name: "flush-with-nothing-new", change: func(h *Hub, _ *fakeFleet) { h.Flush() }, shared: true},
		{name: "published", change: func(h *Hub, _ *fakeFleet) { upsert(h, &fleetv1.Node{NodeId: "a"}) }},
		{name: "totals-changed", change: func(h *Hub, _ *fakeFleet) { h.TotalsChanged() }},
		{name: "heartbeats-flushed", change: func(h *Hub, f *fakeFleet) { f.beat(h, "a", 7); h.Flush() }, shared: true},
		{name: "heartbeat-not-yet-flushed", change: func(h *Hub, f *fakeFleet) { f.beat(h, "a", 7) }, shared: true},
		{name: "breaker-moved", change: func(h *Hub, f *fakeFleet) {
			f.setBreaker(&fleetv1.BreakerStatus{Tripped: true})
			h.Flush()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeFleet("a", "b")
			h := newHub(t, f, Options{Buffer: 16, Replay: 16})
			w1, st1, _ := h.subscribe(0)
			defer h.unsubscribe(w1)
			// The first flush sends the totals: none were sent yet.
			h.Flush()
			drain(h, w1)
			w2, st2, _ := h.subscribe(0)
			defer h.unsubscribe(w2)
			if st1.snapshot == st2.snapshot {
				t.Fatal("a snapshot was shared across a flush that sent the totals")
			}
			tt.change(h, f)
			w3, st3, _ := h.subscribe(0)
			defer h.unsubscribe(w3)
			if got := st3.snapshot == st2.snapshot; got != tt.shared {
				t.Fatalf("snapshot shared: %v, want %v", got, tt.shared)
			}
			if st3.rev != h.Revision() {
				t.Fatalf("a watcher starts from revision %d, the hub is at %d", st3.rev, h.Revision())
			}
		})
	}
}

// TestSharedSnapshotThenHeartbeats: a watcher that starts from a snapshot
// taken before some heartbeats were flushed is sent those nodes' latest
// state once it has taken what is queued, and only those.
func TestSharedSnapshotThenHeartbeats(t *testing.T) {
	f := newFakeFleet("a", "b", "c")
	h := newHub(t, f, Options{Buffer: 16, Replay: 16})
	first, _, _ := h.subscribe(0)
	defer h.unsubscribe(first)
	h.Flush() // the totals: none were sent yet
	second, st1, _ := h.subscribe(0)
	defer h.unsubscribe(second)
	f.beat(h, "a", 42)
	h.Flush()
	f.beat(h, "b", 43)
	h.Flush()
	w, st, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	if st.snapshot != st1.snapshot {
		t.Fatal("a watcher that started after heartbeats only got a new snapshot")
	}
	f.beat(h, "c", 44)
	h.Flush()
	if _, b := h.missed(w); b != nil {
		t.Fatal("heartbeats the snapshot lacks handed out ahead of a queued batch")
	}
	queuedNodes := map[string]uint32{}
	for _, m := range drain(h, w) {
		for _, hb := range m.GetHeartbeats().GetHeartbeats() {
			queuedNodes[hb.GetNodeId()] = hb.GetSamples()[0].GetUtilizationGpuPercent()
		}
	}
	if len(queuedNodes) != 1 || queuedNodes["c"] != 44 {
		t.Fatalf("queued heartbeats %v, want c's, flushed after the watcher started", queuedNodes)
	}
	rev, batches := h.missed(w)
	got := map[string]uint32{}
	for _, hb := range entries(rev, batches) {
		got[hb.GetNodeId()] = hb.GetSamples()[0].GetUtilizationGpuPercent()
	}
	if rev != h.Revision() || got["a"] != 42 || got["b"] != 43 {
		t.Fatalf("after the snapshot got %v at revision %d, want a's and b's latest at %d", got, rev, h.Revision())
	}
}

// TestSnapshotNoWatcherFlush: a flush with nobody watching drops the shared
// snapshot, since the heartbeats it takes reach no one: the next watcher
// sees them in a new snapshot.
func TestSnapshotNoWatcherFlush(t *testing.T) {
	f := newFakeFleet("a")
	h := newHub(t, f, Options{Buffer: 16, Replay: 16})
	w, first, _ := h.subscribe(0)
	h.unsubscribe(w)
	f.beat(h, "a", 42)
	h.Flush()
	w, st, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	if st.snapshot == first.snapshot {
		t.Fatal("a watcher shared a snapshot older than heartbeats told to nobody")
	}
	chunks := st.snapshot.messages(f)
	if got := chunks[0].GetSnapshot().GetNodes()[0].GetSamples()[0].GetUtilizationGpuPercent(); got != 42 {
		t.Fatalf("snapshot shows utilization %d, want the latest, 42", got)
	}
}

// TestServeSharesSnapshotChunks: two watchers that start together are sent
// the very same chunk messages, built once; one that resyncs meanwhile
// shares them too.
func TestServeSharesSnapshotChunks(t *testing.T) {
	f := fleetOf(1201)
	h := newHub(t, f, Options{Buffer: 16, Replay: 64})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	snapshotOf := func(msgs <-chan *controlplanev1.WatchFleetResponse) []*controlplanev1.WatchFleetResponse {
		var chunks []*controlplanev1.WatchFleetResponse
		until(t, msgs, "snapshot", func(m *controlplanev1.WatchFleetResponse) bool {
			chunks = append(chunks, m)
			return m.GetSnapshot().GetComplete()
		})
		return chunks
	}
	first, _ := serve(ctx, h, 0)
	second, _ := serve(ctx, h, 0)
	a, b := snapshotOf(first), snapshotOf(second)
	if len(a) != 3 || len(b) != 3 {
		t.Fatalf("snapshots of %d and %d chunks, want 3", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("chunk %d was built for each watcher, want one shared", i)
		}
	}
	// The second watcher stops reading and falls behind; it resyncs to
	// the snapshot a new watcher gets at the same revision.
	for range 64 {
		upsert(h, &fleetv1.Node{NodeId: "node-000001"})
	}
	until(t, second, "resync", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetResync() != nil })
	resynced := snapshotOf(second)
	third, _ := serve(ctx, h, 0)
	fresh := snapshotOf(third)
	if resynced[0].GetRevision() != h.Revision() || resynced[0] != fresh[0] {
		t.Fatal("a resync and a new watcher at the same revision got different snapshots")
	}
}
