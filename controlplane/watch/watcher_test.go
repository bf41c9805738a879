package watch

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestSubscribe: a watcher resuming from a revision the ring still covers
// gets the changes after it; any other gets a snapshot. Both start at the
// hub's revision.
func TestSubscribe(t *testing.T) {
	const replay = 8
	tests := []struct {
		name     string
		current  uint64 // the revision before the first change
		changes  int
		since    uint64
		snapshot bool
		replay   []uint64 // the revisions replayed when there is no snapshot
	}{
		{name: "from-scratch", changes: 20, since: 0, snapshot: true},
		{name: "recent", changes: 20, since: 15, replay: []uint64{16, 17, 18, 19, 20}},
		{name: "oldest-kept", changes: 20, since: 12, replay: []uint64{13, 14, 15, 16, 17, 18, 19, 20}},
		{name: "up-to-date", changes: 20, since: 20},
		{name: "too-old", changes: 20, since: 11, snapshot: true},
		{name: "future", changes: 20, since: 1020, snapshot: true},
		{name: "nothing-since-start", current: 100, since: 100},
		{name: "ring-not-full", current: 100, changes: 3, since: 100, replay: []uint64{101, 102, 103}},
		{name: "before-start", current: 100, changes: 3, since: 99, snapshot: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeFleet("a", "b", "c")
			h := newHub(t, f, Options{Buffer: 64, Replay: replay, Current: tt.current})
			for range tt.changes {
				upsert(h, &fleetv1.Node{NodeId: "a"})
			}
			w, st, ok := h.subscribe(tt.since)
			if !ok {
				t.Fatal("subscribe refused")
			}
			defer h.unsubscribe(w)
			if want := tt.current + uint64(tt.changes); st.rev != want || h.Revision() != want {
				t.Fatalf("starts at %d (hub at %d), want %d", st.rev, h.Revision(), want)
			}
			if tt.snapshot {
				if st.snapshot == nil || st.replay != nil {
					t.Fatalf("got a replay of %d changes, want a snapshot", len(st.replay))
				}
				if len(st.snapshot.entries) != 3 {
					t.Fatalf("snapshot of %d nodes, want 3", len(st.snapshot.entries))
				}
				return
			}
			if st.snapshot != nil {
				t.Fatalf("got a snapshot, want a replay of %v", tt.replay)
			}
			var got []uint64
			for _, m := range st.replay {
				got = append(got, m.GetRevision())
			}
			if !slices.Equal(got, tt.replay) {
				t.Fatalf("replayed revisions %v, want %v", got, tt.replay)
			}
		})
	}
}

// TestSlowWatcherResyncs: a watcher that does not read is marked behind;
// its queue never grows past the bound, and a resync gives it a fresh
// queue and a snapshot at the current revision.
func TestSlowWatcherResyncs(t *testing.T) {
	h := newHub(t, newFakeFleet("a"), Options{Buffer: 16, Replay: 64})
	w, st, ok := h.subscribe(0)
	if !ok || st.snapshot == nil {
		t.Fatal("no snapshot")
	}
	for range 1000 {
		upsert(h, &fleetv1.Node{NodeId: "a"})
	}
	if n := queued(h, w); n > 16 {
		t.Fatalf("queue grew to %d", n)
	}
	if !isClosed(laggedOf(h, w)) {
		t.Fatal("watcher not marked behind")
	}
	if n, deepest := h.Stats(); n != 1 || deepest != 16 {
		t.Fatalf("stats %d watchers, deepest queue %d; want 1 and 16", n, deepest)
	}
	st = h.resync(w)
	if st.snapshot == nil || st.rev != h.Revision() {
		t.Fatal("resync did not give a current snapshot")
	}
	if n, lagged := queued(h, w), laggedOf(h, w); n != 0 || isClosed(lagged) {
		t.Fatalf("after the resync %d changes are queued (behind: %v), want a fresh queue", n, isClosed(lagged))
	}
	upsert(h, &fleetv1.Node{NodeId: "a"})
	if n := queued(h, w); n != 1 {
		t.Fatalf("a resynced watcher got %d changes, want 1", n)
	}
	if n, deepest := h.Stats(); n != 1 || deepest != 1 {
		t.Fatalf("stats %d watchers, deepest queue %d; want 1 and 1", n, deepest)
	}
	h.unsubscribe(w)
	upsert(h, &fleetv1.Node{NodeId: "a"})
	if queued(h, w) != 1 {
		t.Fatal("a watcher got changes after it left")
	}
	if n, deepest := h.Stats(); n != 0 || deepest != 0 {
		t.Fatalf("stats %d watchers, deepest queue %d after it left; want none", n, deepest)
	}
}

// TestSlowWatcherHeartbeatsCoalesced: heartbeat batches are built every
// flush whether or not a watcher reads them. A watcher that has not taken
// the last ones gets no more batches; it is sent the latest state of the
// nodes it missed once its queue is empty, and is never resynced for it.
func TestSlowWatcherHeartbeatsCoalesced(t *testing.T) {
	f := newFakeFleet("a", "b", "c")
	h := newHub(t, f, Options{Buffer: 16, Replay: 64})
	w, _, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	// heartbeatBatches empties the queue as the stream would and counts
	// the heartbeat batches in it.
	heartbeatBatches := func() int {
		n := 0
		for _, m := range drain(h, w) {
			if m.GetHeartbeats() != nil {
				n++
			}
		}
		return n
	}
	for _, id := range []string{"a", "b", "c"} {
		f.beat(h, id, 1)
	}
	h.Flush()
	first := queued(h, w)
	// Many more rounds while the watcher reads nothing: more than its
	// queue holds.
	for round := range 1000 {
		f.beat(h, "a", uint32(10+round%50))
		f.beat(h, "b", 7)
		h.Flush()
	}
	if n := queued(h, w); n != first {
		t.Fatalf("a watcher that read nothing has %d messages queued, had %d after the first round", n, first)
	}
	if isClosed(laggedOf(h, w)) {
		t.Fatal("a slow watcher was resynced for heartbeats")
	}
	if n := heartbeatBatches(); n != 1 {
		t.Fatalf("%d heartbeat batches were queued, want the first round's one", n)
	}
	// Missed heartbeats wait while a change is queued: they carry the
	// current revision, and a client resuming from it must not skip that
	// change.
	upsert(h, &fleetv1.Node{NodeId: "c", Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED})
	if _, b := h.missed(w); b != nil {
		t.Fatal("missed heartbeats handed out ahead of a queued change")
	}
	heartbeatBatches()
	// Now its queue is empty: the missed nodes come with their latest state.
	rev, missed := h.missed(w)
	if rev != h.Revision() {
		t.Fatalf("missed heartbeats carry revision %d, want %d", rev, h.Revision())
	}
	got := map[string]uint32{}
	for _, hb := range entries(rev, missed) {
		got[hb.GetNodeId()] = hb.GetSamples()[0].GetUtilizationGpuPercent()
	}
	if len(got) != 2 || got["a"] != 10+999%50 || got["b"] != 7 {
		t.Fatalf("missed heartbeats %v, want a's and b's latest", got)
	}
	if _, again := h.missed(w); again != nil {
		t.Fatal("missed heartbeats handed out twice")
	}
	// A watcher that fell behind dropped changes the current revision
	// covers: no heartbeats carry it until the resync.
	f.beat(h, "a", 5)
	h.Flush()
	f.beat(h, "a", 6)
	h.Flush() // missed: the watcher has not taken the last batch
	drain(h, w)
	h.mu.Lock()
	w.behind = true
	h.mu.Unlock()
	if _, b := h.missed(w); b != nil {
		t.Fatal("missed heartbeats handed to a watcher that is behind")
	}
	h.resync(w)
	if _, b := h.missed(w); b != nil {
		t.Fatal("missed heartbeats kept past the resync, whose snapshot has their state")
	}
	// Caught up, it gets batches again.
	f.beat(h, "c", 3)
	h.Flush()
	if n := heartbeatBatches(); n != 1 {
		t.Fatalf("a watcher that caught up got %d batches", n)
	}
}

// serve runs h.Serve in the background; its messages arrive on the
// returned channel one at a time, so a test that does not read is a slow
// watcher. The error channel has Serve's result.
func serve(ctx context.Context, h *Hub, since uint64) (<-chan *controlplanev1.WatchFleetResponse, <-chan error) {
	msgs := make(chan *controlplanev1.WatchFleetResponse)
	done := make(chan error, 1)
	go func() {
		done <- h.Serve(ctx, since, SendFunc(func(m *controlplanev1.WatchFleetResponse) error {
			select {
			case msgs <- m:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}))
	}()
	return msgs, done
}

// next reads one message, failing after a timeout.
func next(t *testing.T, msgs <-chan *controlplanev1.WatchFleetResponse, what string) *controlplanev1.WatchFleetResponse {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// until reads messages until match holds, failing after a timeout.
func until(t *testing.T, msgs <-chan *controlplanev1.WatchFleetResponse, what string, match func(*controlplanev1.WatchFleetResponse) bool) *controlplanev1.WatchFleetResponse {
	t.Helper()
	for {
		if m := next(t, msgs, what); match(m) {
			return m
		}
	}
}

func wantCode(t *testing.T, done <-chan error, code codes.Code) {
	t.Helper()
	select {
	case err := <-done:
		if status.Code(err) != code {
			t.Fatalf("Serve returned %v, want %v", err, code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// TestServeSnapshotThenChanges: a new watcher gets the fleet in chunks at
// one revision, the last with the totals and the recent events newest
// first, and then every change.
func TestServeSnapshotThenChanges(t *testing.T) {
	f := fleetOf(1201)
	h := newHub(t, f, Options{Buffer: 64, Replay: 64})
	for _, xid := range []uint32{13, 31, 79} {
		h.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_HealthEvent{HealthEvent: &fleetv1.HealthEvent{Xid: xid}}})
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, done := serve(ctx, h, 0)
	nodes := map[string]bool{}
	var end *controlplanev1.Snapshot
	for end == nil {
		m := next(t, msgs, "snapshot")
		s := m.GetSnapshot()
		if s == nil || m.GetRevision() != 3 {
			t.Fatalf("got %v at revision %d, want a snapshot at 3", m, m.GetRevision())
		}
		if len(s.GetNodes()) > SnapshotChunk {
			t.Fatalf("chunk of %d nodes", len(s.GetNodes()))
		}
		for _, n := range s.GetNodes() {
			nodes[n.GetNodeId()] = true
		}
		if s.GetComplete() {
			end = s
		}
	}
	if len(nodes) != 1201 || end.GetSummary().GetNodes() != 1201 || end.GetBreaker() == nil {
		t.Fatalf("snapshot of %d nodes, summary %v, breaker %v", len(nodes), end.GetSummary(), end.GetBreaker())
	}
	var xids []uint32
	for _, e := range end.GetRecentEvents() {
		xids = append(xids, e.GetXid())
	}
	if !slices.Equal(xids, []uint32{79, 31, 13}) {
		t.Fatalf("recent events %v, want newest first", xids)
	}
	upsert(h, &fleetv1.Node{NodeId: "node-000007"})
	if m := next(t, msgs, "change"); m.GetNodeUpsert().GetNodeId() != "node-000007" || m.GetRevision() != 4 {
		t.Fatalf("got %v at revision %d, want node-000007's change at 4", m, m.GetRevision())
	}
	cancel()
	wantCode(t, done, codes.Canceled)
}

// TestServeEmptyFleet: a watcher of an empty fleet still gets a complete
// snapshot, so it knows it has everything.
func TestServeEmptyFleet(t *testing.T) {
	h := newHub(t, newFakeFleet(), Options{Buffer: 16, Replay: 16})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, _ := serve(ctx, h, 0)
	m := next(t, msgs, "snapshot")
	if !m.GetSnapshot().GetComplete() || len(m.GetSnapshot().GetNodes()) != 0 {
		t.Fatalf("got %v, want one complete empty snapshot", m)
	}
}

// TestServeClosed: closing the hub ends every stream, and a stream opened
// after it is refused.
func TestServeClosed(t *testing.T) {
	h := newHub(t, newFakeFleet("a"), Options{Buffer: 16, Replay: 16})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, done := serve(ctx, h, 0)
	until(t, msgs, "snapshot", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetSnapshot().GetComplete() })
	h.Close()
	wantCode(t, done, codes.Unavailable)
	_, late := serve(ctx, h, 0)
	wantCode(t, late, codes.Unavailable)
}

// TestServeResyncsSlowWatcher: a stream that stops reading is sent a
// Resync, with no revision, and then a fresh snapshot; the hub's Resynced
// hears of it.
func TestServeResyncsSlowWatcher(t *testing.T) {
	var resyncs atomic.Int32
	h := newHub(t, newFakeFleet("a"), Options{Buffer: 16, Replay: 64, Resynced: func() { resyncs.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, _ := serve(ctx, h, 0)
	until(t, msgs, "snapshot", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetSnapshot().GetComplete() })
	// Nothing is read meanwhile: the stream takes one change at most.
	for range 64 {
		upsert(h, &fleetv1.Node{NodeId: "a"})
	}
	r := until(t, msgs, "resync", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetResync() != nil })
	if r.GetRevision() != 0 {
		t.Fatalf("resync carries revision %d; a client resuming from it would skip what it dropped", r.GetRevision())
	}
	snap := next(t, msgs, "fresh snapshot")
	if !snap.GetSnapshot().GetComplete() || snap.GetRevision() != h.Revision() {
		t.Fatalf("after the resync got %v at %d, want a snapshot at %d", snap, snap.GetRevision(), h.Revision())
	}
	if n := resyncs.Load(); n != 1 {
		t.Fatalf("Resynced heard of %d resyncs, want 1", n)
	}
}

// TestServeSlowReaderGetsLatestHeartbeats: a stream that reads slowly gets
// every node's latest heartbeat, and no resync.
func TestServeSlowReaderGetsLatestHeartbeats(t *testing.T) {
	f := newFakeFleet("a", "b")
	h := newHub(t, f, Options{Buffer: 16, Replay: 64})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	msgs, _ := serve(ctx, h, 0)
	until(t, msgs, "snapshot", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetSnapshot().GetComplete() })
	for round := range 200 {
		f.beat(h, "a", uint32(round%90))
		h.Flush()
	}
	f.beat(h, "a", 100)
	h.Flush()
	until(t, msgs, "a's last heartbeat", func(m *controlplanev1.WatchFleetResponse) bool {
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

// TestMissedHeartbeatsSince: slow watchers share one record of who
// heartbeated; each is sent the nodes that heartbeated since the first
// flush it missed, not those it was sent in batches, and the record is
// dropped once no watcher is missing flushes.
func TestMissedHeartbeatsSince(t *testing.T) {
	f := newFakeFleet("a", "b", "c")
	h := newHub(t, f, Options{Buffer: 64, Replay: 64})
	early, _, _ := h.subscribe(0) // misses from the second flush on
	defer h.unsubscribe(early)
	late, _, _ := h.subscribe(0) // takes the second flush's batch, misses the third's
	defer h.unsubscribe(late)
	f.beat(h, "a", 1)
	h.Flush()
	drain(h, late)
	f.beat(h, "b", 2)
	h.Flush()
	f.beat(h, "c", 3)
	h.Flush()
	drain(h, early)
	drain(h, late)
	missedNodes := func(w *watcher) []string {
		var ids []string
		rev, batches := h.missed(w)
		for _, hb := range entries(rev, batches) {
			ids = append(ids, hb.GetNodeId())
		}
		slices.Sort(ids)
		return ids
	}
	if got := missedNodes(early); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("the early watcher missed %v, want [b c]", got)
	}
	if got := missedNodes(late); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("the late watcher missed %v, want [c]", got)
	}
	f.beat(h, "a", 4)
	h.Flush()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.beats != nil {
		t.Fatalf("%d heartbeats kept with no watcher missing any", len(h.beats))
	}
}
