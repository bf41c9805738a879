package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// testEventsNewestFirst: events come newest first by the number in their
// id, fleet-wide across nodes and for one node.
func testEventsNewestFirst(t *testing.T, open Opener) {
	s := newBackend(t, open, store.Limits{}).start()
	for seq := uint64(1); seq <= 12; seq++ {
		node := "a"
		if seq%3 == 0 {
			node = "b"
		}
		apply(t, s, store.Write{Events: []*fleetv1.HealthEvent{event(seq, node)}})
	}
	tests := []struct {
		name string
		q    store.EventQuery
		want []string
	}{
		{"fleet", store.EventQuery{}, seqIDs("ev", 12, 1)},
		{"node", store.EventQuery{NodeID: "b"}, []string{"ev-12", "ev-9", "ev-6", "ev-3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := events(t, s, tt.q); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// testEventsQuery: a query keeps one node's events, returns at most its
// limit (100 when unset), and counts only the events its filter keeps.
func testEventsQuery(t *testing.T, open Opener) {
	s := newBackend(t, open, store.Limits{}).start()
	var w store.Write
	for seq := uint64(1); seq <= 120; seq++ {
		w.Events = append(w.Events, event(seq, "n"))
	}
	w.Events = append(w.Events, event(121, "n2"), event(122, "other"))
	apply(t, s, w)
	odd := func(e *fleetv1.HealthEvent) bool { return e.GetXid()%2 == 1 }

	tests := []struct {
		name string
		q    store.EventQuery
		want []string
	}{
		{"default-limit", store.EventQuery{NodeID: "n"}, seqIDs("ev", 120, 21)},
		{"limit", store.EventQuery{NodeID: "n", Limit: 3}, seqIDs("ev", 120, 118)},
		{"node-sharing-a-prefix", store.EventQuery{NodeID: "n2"}, []string{"ev-121"}},
		{"unknown-node", store.EventQuery{NodeID: "none"}, nil},
		{"fleet-limit", store.EventQuery{Limit: 3}, seqIDs("ev", 122, 120)},
		{"keep", store.EventQuery{NodeID: "n", Limit: 3, Keep: odd}, []string{"ev-119", "ev-117", "ev-115"}},
		{"keep-fleet", store.EventQuery{Limit: 2, Keep: odd}, []string{"ev-121", "ev-119"}},
		{"keep-none", store.EventQuery{Keep: func(*fleetv1.HealthEvent) bool { return false }}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := events(t, s, tt.q); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// testEventsCappedPerNode: beyond the per-node cap a node's oldest events
// go, other nodes' events stay, and the cap holds across a reopen.
func testEventsCappedPerNode(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{EventsPerNode: 10})
	s := b.start()
	seq := uint64(0)
	for range 25 {
		for _, node := range []string{"a", "b"} {
			seq++
			apply(t, s, store.Write{Events: []*fleetv1.HealthEvent{event(seq, node)}})
		}
	}
	// a has the odd sequence numbers 1..49, b the even ones 2..50.
	keptA := []string{"ev-49", "ev-47", "ev-45", "ev-43", "ev-41", "ev-39", "ev-37", "ev-35", "ev-33", "ev-31"}
	if got := events(t, s, store.EventQuery{NodeID: "a"}); !slices.Equal(got, keptA) {
		t.Errorf("node a kept %v, want %v", got, keptA)
	}
	if got := events(t, s, store.EventQuery{}); len(got) != 20 || got[0] != "ev-50" || got[19] != "ev-31" {
		t.Errorf("fleet-wide kept %v", got)
	}

	s = b.restart(s)
	apply(t, s, store.Write{Events: []*fleetv1.HealthEvent{event(51, "a"), event(52, "a")}})
	want := append([]string{"ev-52", "ev-51"}, keptA[:8]...)
	if got := events(t, s, store.EventQuery{NodeID: "a"}); !slices.Equal(got, want) {
		t.Errorf("after reopen node a kept %v, want %v", got, want)
	}
}

// testEventsExpire: events go once the retention has passed, from the
// node's events and the fleet's, and the expired ones no longer count
// towards the node's cap.
func testEventsExpire(t *testing.T, open Opener) {
	// Four seconds: a backend that expires on whole seconds keeps an event
	// for at least three, long enough on a loaded machine to see it before
	// it goes, and to see the next events counted before they go too.
	s := newBackend(t, open, store.Limits{EventRetention: 4 * time.Second, EventsPerNode: 3}).start()
	apply(t, s, store.Write{Events: []*fleetv1.HealthEvent{event(1, "n"), event(2, "n"), event(3, "n")}})
	if got := events(t, s, store.EventQuery{NodeID: "n"}); len(got) != 3 {
		t.Fatalf("events right after writing: %v", got)
	}
	testutil.EventuallyWithin(t, 10*time.Second, "events to expire", func() bool {
		return len(events(t, s, store.EventQuery{NodeID: "n"})) == 0 && len(events(t, s, store.EventQuery{})) == 0
	})
	for seq := uint64(4); seq <= 6; seq++ {
		apply(t, s, store.Write{Events: []*fleetv1.HealthEvent{event(seq, "n")}})
	}
	if got, want := events(t, s, store.EventQuery{NodeID: "n"}), seqIDs("ev", 6, 4); !slices.Equal(got, want) {
		t.Errorf("after expiry kept %v, want %v", got, want)
	}
}
