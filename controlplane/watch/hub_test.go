package watch

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func TestNew(t *testing.T) {
	next := func() uint64 { return 1 }
	fleet := newFakeFleet()
	tests := []struct {
		name    string
		o       Options
		wantErr bool
	}{
		{name: "valid", o: Options{Fleet: fleet, Next: next, Buffer: 1, Replay: 1}},
		{name: "no-fleet", o: Options{Next: next, Buffer: 1, Replay: 1}, wantErr: true},
		{name: "no-revisions", o: Options{Fleet: fleet, Buffer: 1, Replay: 1}, wantErr: true},
		{name: "no-buffer", o: Options{Fleet: fleet, Next: next, Replay: 1}, wantErr: true},
		{name: "no-replay", o: Options{Fleet: fleet, Next: next, Buffer: 1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(tt.o)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New: %v, want error %v", err, tt.wantErr)
			}
			if h != nil {
				h.Close()
			}
		})
	}
}

// TestHeartbeatsCoalesced: a flush sends one entry per node that
// heartbeated, with its latest sample, and none for a node that left.
// Heartbeats do not advance the revision.
func TestHeartbeatsCoalesced(t *testing.T) {
	f := newFakeFleet("a", "b", "gone")
	h := newHub(t, f, Options{Buffer: 64, Replay: 64})
	upsert(h, &fleetv1.Node{NodeId: "a"})
	w, _, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	for i := range 50 {
		for _, id := range []string{"a", "b", "gone"} {
			f.beat(h, id, uint32(i))
		}
	}
	f.node("gone").leave()
	revBefore := h.Revision()
	h.Flush()
	var batches []*controlplanev1.WatchFleetResponse
	for _, m := range drain(h, w) {
		switch {
		case m.GetHeartbeats() != nil:
			batches = append(batches, m)
		case m.GetTotals() == nil:
			t.Fatalf("heartbeats produced %v", m)
		}
	}
	if len(batches) != 1 {
		t.Fatalf("%d heartbeat batches, want 1", len(batches))
	}
	hbs := batches[0].GetHeartbeats().GetHeartbeats()
	if len(hbs) != 2 {
		t.Fatalf("150 heartbeats became %d entries, want 2 (a node that left has none)", len(hbs))
	}
	for _, hb := range hbs {
		if hb.GetNodeId() == "gone" || hb.GetSamples()[0].GetUtilizationGpuPercent() != 49 {
			t.Fatalf("batch carries %s with %v, want a's and b's latest sample", hb.GetNodeId(), hb.GetSamples())
		}
	}
	if h.Revision() != revBefore || batches[0].GetRevision() != revBefore {
		t.Fatal("heartbeats advanced the revision")
	}
	// Nothing since: the next flush sends nothing.
	h.Flush()
	if got := drain(h, w); len(got) != 0 {
		t.Fatalf("a flush with nothing new sent %v", got)
	}
}

// TestHeartbeatsDuringFlush: a heartbeat that comes while a flush runs
// is left to the next flush, and the node's latest state gets out.
func TestHeartbeatsDuringFlush(t *testing.T) {
	f := newFakeFleet("a")
	h := newHub(t, f, Options{Buffer: 64, Replay: 64})
	w, _, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	const beats = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range beats {
			f.beat(h, "a", uint32(i))
		}
	}()
	var last uint32
	take := func() {
		for _, m := range drain(h, w) {
			for _, hb := range m.GetHeartbeats().GetHeartbeats() {
				last = hb.GetSamples()[0].GetUtilizationGpuPercent()
			}
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		h.Flush()
		take()
	}
	h.Flush()
	take()
	if last != beats-1 {
		t.Fatalf("the last heartbeat sent carries %d, want %d", last, beats-1)
	}
}

// TestHeartbeatBatches: a flush's heartbeats go out in batches of at most
// heartbeatBatchSize, one entry for each node that has not left, encoded
// from the node's own encoding, each batch a WatchFleetResponse at its
// revision.
func TestHeartbeatBatches(t *testing.T) {
	tests := []struct {
		name  string
		nodes int
		left  bool  // the first node has left the fleet
		want  []int // entries per batch
	}{
		{name: "none", nodes: 0},
		{name: "one", nodes: 1, want: []int{1}},
		{name: "one-full", nodes: heartbeatBatchSize, want: []int{heartbeatBatchSize}},
		{name: "several", nodes: 2*heartbeatBatchSize + 5, want: []int{heartbeatBatchSize, heartbeatBatchSize, 5}},
		{name: "one-left", nodes: heartbeatBatchSize + 1, left: true, want: []int{heartbeatBatchSize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := map[Node]struct{}{}
			f := fleetOf(tt.nodes)
			for _, n := range f.nodes {
				nodes[n] = struct{}{}
			}
			var left string
			if tt.left {
				f.nodes[0].leave()
				left = f.nodes[0].state.GetNodeId()
			}
			var got []int
			seen := map[string]bool{}
			for i, b := range encodeBeats(nodes) {
				rev := uint64(i) // the first at revision 0, which is left out
				m, err := b.message(rev).forStream(false)
				if err != nil {
					t.Fatal(err)
				}
				if m.GetRevision() != rev || m.GetHeartbeats() == nil {
					t.Fatalf("batch %d decodes as %v, want heartbeats at revision %d", i, m, rev)
				}
				got = append(got, len(m.GetHeartbeats().GetHeartbeats()))
				for _, hb := range m.GetHeartbeats().GetHeartbeats() {
					if seen[hb.GetNodeId()] || hb.GetNodeId() == left || hb.GetReachability() != online || len(hb.GetSamples()) != 1 {
						t.Fatalf("entry %v: each node that did not leave once, as its AppendHeartbeat encodes it", hb)
					}
					seen[hb.GetNodeId()] = true
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("batches of %v entries, want %v", got, tt.want)
			}
		})
	}
}

// TestFlushTotals: a flush sends the totals when a change was published,
// when the fleet said they changed, or when the breaker's status moved,
// and not otherwise.
func TestFlushTotals(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Hub, *fakeFleet)
		want   bool
	}{
		{name: "nothing", change: func(*Hub, *fakeFleet) {}},
		{name: "heartbeat-only", change: func(h *Hub, f *fakeFleet) { f.beat(h, "a", 9) }},
		{name: "published", change: func(h *Hub, _ *fakeFleet) { upsert(h, &fleetv1.Node{NodeId: "a"}) }, want: true},
		{name: "totals-changed", change: func(h *Hub, _ *fakeFleet) { h.TotalsChanged() }, want: true},
		{name: "breaker-moved", change: func(_ *Hub, f *fakeFleet) { f.setBreaker(&fleetv1.BreakerStatus{Tripped: true}) }, want: true},
		{name: "breaker-same", change: func(_ *Hub, f *fakeFleet) { f.setBreaker(&fleetv1.BreakerStatus{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeFleet("a")
			h := newHub(t, f, Options{Buffer: 64, Replay: 64})
			w, _, _ := h.subscribe(0)
			defer h.unsubscribe(w)
			// The first flush sends the totals: none were sent yet.
			h.Flush()
			drain(h, w)
			tt.change(h, f)
			h.Flush()
			var totals *controlplanev1.WatchFleetResponse
			for _, m := range drain(h, w) {
				if m.GetTotals() != nil {
					totals = m
				}
			}
			if (totals != nil) != tt.want {
				t.Fatalf("totals sent: %v, want %v", totals != nil, tt.want)
			}
			if totals != nil && (totals.GetRevision() != h.Revision() || totals.GetTotals().GetSummary().GetNodes() != 1) {
				t.Fatalf("totals %v at revision %d, want the fleet's at %d", totals.GetTotals(), totals.GetRevision(), h.Revision())
			}
		})
	}
}

// TestTotalsOfAChangeDuringAFlushAreSent: a change published while a
// flush is deciding whether to send totals reaches watchers in totals that
// include it, by that flush or the next, never in totals that do not.
func TestTotalsOfAChangeDuringAFlushAreSent(t *testing.T) {
	f := newFakeFleet("a")
	h := newHub(t, f, Options{Buffer: 64, Replay: 64})
	w, _, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	h.Flush()
	drain(h, w)
	f.onBreaker = func() {
		f.onBreaker = nil
		f.mu.Lock()
		f.joined++
		f.mu.Unlock()
		upsert(h, &fleetv1.Node{NodeId: "b"})
	}
	h.Flush()
	h.Flush()
	var last *controlplanev1.FleetTotals
	for _, m := range drain(h, w) {
		if m.GetTotals() != nil {
			last = m.GetTotals()
		}
	}
	if last.GetSummary().GetNodes() != 2 {
		t.Fatalf("the last totals sent count %d nodes, want 2: %v", last.GetSummary().GetNodes(), last)
	}
}

// TestRunFlushesEachSecond: Run flushes on its clock's ticker.
func TestRunFlushesEachSecond(t *testing.T) {
	clock := clockwork.NewFakeClock()
	f := newFakeFleet("a")
	h := newHub(t, f, Options{Buffer: 64, Replay: 64, Clock: clock})
	w, _, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); h.Run(ctx) }()
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.beat(h, "a", 42)
	if queued(h, w) != 0 {
		t.Fatal("flushed before a second passed")
	}
	clock.Advance(time.Second)
	testutil.Eventually(t, "a's heartbeat", func() bool {
		for _, m := range drain(h, w) {
			if hb := m.GetHeartbeats().GetHeartbeats(); len(hb) == 1 && hb[0].GetSamples()[0].GetUtilizationGpuPercent() == 42 {
				return true
			}
		}
		return false
	})
	cancel()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop with its context")
	}
}

// TestRecentEvents: a snapshot carries the latest health events, newest
// first, at most RecentEventsKept of them.
func TestRecentEvents(t *testing.T) {
	h := newHub(t, newFakeFleet("a"), Options{Buffer: 16, Replay: 16})
	const published = 2*RecentEventsKept + 50
	for i := range published {
		h.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_HealthEvent{HealthEvent: &fleetv1.HealthEvent{Xid: uint32(i)}}})
		})
	}
	w, st, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	events := st.snapshot.events
	if len(events) != RecentEventsKept {
		t.Fatalf("snapshot carries %d events, want %d", len(events), RecentEventsKept)
	}
	for i, e := range events {
		if want := uint32(published - 1 - i); e.GetXid() != want {
			t.Fatalf("event %d is %d, want %d (newest first)", i, e.GetXid(), want)
		}
	}
}

// TestRecentEventsSeeded: the events a hub starts with are in its
// snapshots, after the events published since, newest first and at most
// RecentEventsKept in all.
func TestRecentEventsSeeded(t *testing.T) {
	seeded := make([]*fleetv1.HealthEvent, RecentEventsKept+10)
	for i := range seeded {
		seeded[i] = &fleetv1.HealthEvent{Xid: uint32(len(seeded) - i)} // newest first
	}
	h := newHub(t, newFakeFleet("a"), Options{Buffer: 16, Replay: 16, RecentEvents: seeded})
	h.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
		emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_HealthEvent{HealthEvent: &fleetv1.HealthEvent{Xid: 1000}}})
	})
	w, st, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	events := st.snapshot.events
	if len(events) != RecentEventsKept {
		t.Fatalf("snapshot carries %d events, want %d", len(events), RecentEventsKept)
	}
	if events[0].GetXid() != 1000 {
		t.Fatalf("newest event is %d, want the one published (1000)", events[0].GetXid())
	}
	for i, e := range events[1:] {
		if want := uint32(len(seeded) - i); e.GetXid() != want {
			t.Fatalf("event %d is %d, want %d (the seeded ones, newest first)", i+1, e.GetXid(), want)
		}
	}
}

// TestPublishAfterCloseReachesNobody: a change published once the hub is
// closed goes to no watcher, so its revision is seen by nobody and the
// next run may hand it out again.
func TestPublishAfterCloseReachesNobody(t *testing.T) {
	h := newHub(t, newFakeFleet("a"), Options{Buffer: 16, Replay: 16})
	w, _, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	h.Close()
	h.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
		emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeRemoved{NodeRemoved: &controlplanev1.NodeRemoved{NodeId: "a"}}})
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := w.queue.len(); n != 0 {
		t.Fatalf("a watcher was queued %d changes published after Close", n)
	}
}
