package storetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// testWritesSurviveReopen: everything acknowledged is read back, the same,
// by the next store opened on the same data.
func testWritesSurviveReopen(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	node := &fleetv1.Node{
		NodeId:    "gpu-a",
		Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED,
		Labels:    map[string]string{"zone": "a"},
	}
	pending := cmd(7, "gpu-a", fleetv1.CommandStatus_COMMAND_STATUS_PENDING)
	done := cmd(8, "gpu-a", fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED)
	ev := event(9, "gpu-a")
	seen := time.Unix(1700000000, 5)
	apply(t, s, store.Write{
		Nodes:    []*fleetv1.Node{node},
		Commands: []*fleetv1.Command{pending, done},
		Events:   []*fleetv1.HealthEvent{ev},
		Counters: map[string]uint64{"revision": 42, "ids": 9},
	})
	if err := s.SaveLastSeen(context.Background(), map[string]time.Time{"gpu-a": seen}); err != nil {
		t.Fatalf("save last seen: %v", err)
	}

	s = b.restart(s)
	st := load(t, s)
	if !protoEqual(st.Nodes, []*fleetv1.Node{node}) {
		t.Errorf("nodes after reopen: %v", st.Nodes)
	}
	if want := map[string]uint64{"revision": 42, "ids": 9}; !maps.Equal(st.Counters, want) {
		t.Errorf("counters after reopen: %v, want %v", st.Counters, want)
	}
	if got := st.LastSeen["gpu-a"]; !got.Equal(seen) || len(st.LastSeen) != 1 {
		t.Errorf("last seen after reopen: %v, want gpu-a at %v", st.LastSeen, seen)
	}
	cs, err := s.Commands(context.Background(), "gpu-a", 0)
	if err != nil {
		t.Fatalf("commands: %v", err)
	}
	if !protoEqual(cs, []*fleetv1.Command{done, pending}) {
		t.Errorf("commands after reopen: %v", cs)
	}
	if got := openCommands(t, s); !slices.Equal(got, []string{"cmd-7"}) {
		t.Errorf("open commands after reopen: %v", got)
	}
	es, err := s.Events(context.Background(), store.EventQuery{NodeID: "gpu-a"})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	if !protoEqual(es, []*fleetv1.HealthEvent{ev}) {
		t.Errorf("events after reopen: %v", es)
	}
}

// testApplyIsAtomic: a write that fails stores none of its parts, neither
// deletes a binding it names, and an empty write succeeds without storing
// anything.
func testApplyIsAtomic(t *testing.T, open Opener) {
	tests := []struct {
		name string
		bad  store.Write
	}{
		{"node-without-id", store.Write{Nodes: []*fleetv1.Node{{}}}},
		{"command-without-id", store.Write{Commands: []*fleetv1.Command{{NodeId: "ok"}}}},
		{"command-bad-id", store.Write{Commands: []*fleetv1.Command{{Id: "cmd-0", NodeId: "ok"}}}},
		{"event-without-id", store.Write{Events: []*fleetv1.HealthEvent{{NodeId: "ok"}}}},
		{"event-bad-id", store.Write{Events: []*fleetv1.HealthEvent{{Id: "ev-x", NodeId: "ok"}}}},
		{"token-without-name", store.Write{Tokens: []*store.Token{{Role: viewer}}}},
		{"token-time-past-9999", store.Write{Tokens: []*store.Token{{Name: "late", ExpiresAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}},
		{"audit-without-id", store.Write{Audit: []*store.AuditEntry{{NodeID: "ok", Who: "ops"}}}},
		{"audit-bad-id", store.Write{Audit: []*store.AuditEntry{{ID: "au-0", NodeID: "ok"}}}},
		{"audit-time-past-9999", store.Write{Audit: []*store.AuditEntry{{ID: "au-5", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}}},
		{"node-key-without-node", store.Write{NodeKeys: []*store.NodeKey{{KeyHash: hash("k")}}}},
		{"node-key-without-hash", store.Write{NodeKeys: []*store.NodeKey{{NodeID: "n"}}}},
		{"node-key-short-hash", store.Write{NodeKeys: []*store.NodeKey{{NodeID: "n", KeyHash: hash("k")[:16]}}}},
		{"node-key-time-past-9999", store.Write{NodeKeys: []*store.NodeKey{nodeKey("n", "k", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))}}},
	}
	s := newBackend(t, open, store.Limits{}).start()
	held := nodeKey("held", "k1", time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC))
	apply(t, s, store.Write{NodeKeys: []*store.NodeKey{held}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.bad
			// The good parts come before the bad one, so a backend that
			// writes as it goes is caught.
			w.Nodes = append([]*fleetv1.Node{{NodeId: "ok"}}, w.Nodes...)
			w.Commands = append([]*fleetv1.Command{cmd(1, "ok", fleetv1.CommandStatus_COMMAND_STATUS_PENDING)}, w.Commands...)
			w.Events = append([]*fleetv1.HealthEvent{event(2, "ok")}, w.Events...)
			w.Counters = map[string]uint64{"ids": 3}
			w.Tokens = append([]*store.Token{{Name: "ok", Role: viewer}}, w.Tokens...)
			w.Audit = append([]*store.AuditEntry{auditEntry(4, "ok")}, w.Audit...)
			w.NodeKeys = append([]*store.NodeKey{nodeKey("ok", "k1", time.Now()), nodeKey("held", "k2", time.Now())}, w.NodeKeys...)
			w.DeleteNodeKeys = []string{"held"}
			if err := s.Apply(context.Background(), w); err == nil {
				t.Fatal("accepted")
			}
			st := load(t, s)
			if len(st.Nodes) != 0 || len(st.Counters) != 0 || len(st.Tokens) != 0 {
				t.Errorf("failed write left nodes %v, counters %v, tokens %v", nodeIDs(st), st.Counters, tokenNames(st))
			}
			checkNodeKeys(t, "after the failed write", st.NodeKeys, []*store.NodeKey{held})
			if got := commands(t, s, "ok", 0); len(got) != 0 {
				t.Errorf("failed write left commands %v", got)
			}
			if got := openCommands(t, s); len(got) != 0 {
				t.Errorf("failed write left open commands %v", got)
			}
			if got := events(t, s, store.EventQuery{}); len(got) != 0 {
				t.Errorf("failed write left events %v", got)
			}
			if got := audit(t, s, store.AuditQuery{}); len(got) != 0 {
				t.Errorf("failed write left audit entries %v", got)
			}
			if got := audit(t, s, store.AuditQuery{NodeID: "ok"}); len(got) != 0 {
				t.Errorf("failed write left the node's audit entries %v", got)
			}
		})
	}
	t.Run("empty-write", func(t *testing.T) {
		if err := s.Apply(context.Background(), store.Write{}); err != nil {
			t.Fatalf("empty write: %v", err)
		}
		if st := load(t, s); len(st.Nodes) != 0 || len(st.Counters) != 0 || len(st.Tokens) != 0 {
			t.Errorf("empty write stored nodes %v, counters %v, tokens %v", nodeIDs(st), st.Counters, tokenNames(st))
		}
	})
}

// testNodesReplacedAndOrdered: a node is replaced whole, and Load returns
// the nodes ordered by id.
func testNodesReplacedAndOrdered(t *testing.T, open Opener) {
	s := newBackend(t, open, store.Limits{}).start()
	apply(t, s, store.Write{Nodes: []*fleetv1.Node{
		{NodeId: "node-b", Labels: map[string]string{"zone": "b", "rack": "2"}},
		{NodeId: "node-10"},
		{NodeId: "node-a"},
	}})
	replaced := &fleetv1.Node{NodeId: "node-b", Labels: map[string]string{"zone": "c"}}
	apply(t, s, store.Write{Nodes: []*fleetv1.Node{replaced}})
	st := load(t, s)
	if got, want := nodeIDs(st), []string{"node-10", "node-a", "node-b"}; !slices.Equal(got, want) {
		t.Fatalf("nodes %v, want %v", got, want)
	}
	if !proto.Equal(st.Nodes[2], replaced) {
		t.Errorf("replaced node reads back as %v, want %v", st.Nodes[2], replaced)
	}
}

// testDeleteNodeRemovesEverything: deleting a node removes its commands,
// open commands, events and last-seen time, and leaves other nodes and
// every token (one named like the node too) alone, also across a reopen.
func testDeleteNodeRemovesEverything(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	pending := fleetv1.CommandStatus_COMMAND_STATUS_PENDING
	apply(t, s, store.Write{
		Nodes:    []*fleetv1.Node{{NodeId: "gone"}, {NodeId: "kept"}, {NodeId: "gone2"}},
		Commands: []*fleetv1.Command{cmd(1, "gone", pending), cmd(2, "kept", pending), cmd(3, "gone2", pending)},
		Events:   []*fleetv1.HealthEvent{event(4, "gone"), event(5, "kept"), event(6, "gone2")},
		Tokens:   []*store.Token{{Name: "gone", Role: viewer}, {Name: "gone2", Role: admin}},
	})
	now := time.Unix(1700000000, 0)
	if err := s.SaveLastSeen(context.Background(), map[string]time.Time{"gone": now, "kept": now}); err != nil {
		t.Fatalf("save last seen: %v", err)
	}
	apply(t, s, store.Write{DeleteNodes: []string{"gone"}})
	// A node written and deleted in one write ends deleted.
	apply(t, s, store.Write{Nodes: []*fleetv1.Node{{NodeId: "gone2"}}, DeleteNodes: []string{"gone2"}})

	check := func(when string, s store.Store) {
		t.Helper()
		st := load(t, s)
		if got := nodeIDs(st); !slices.Equal(got, []string{"kept"}) {
			t.Errorf("%s: nodes %v", when, got)
		}
		if _, ok := st.LastSeen["gone"]; ok || len(st.LastSeen) != 1 {
			t.Errorf("%s: last seen %v", when, st.LastSeen)
		}
		if got := tokenNames(st); !slices.Equal(got, []string{"gone", "gone2"}) {
			t.Errorf("%s: tokens %v", when, got)
		}
		for _, node := range []string{"gone", "gone2"} {
			if got := commands(t, s, node, 0); len(got) != 0 {
				t.Errorf("%s: commands of %s left: %v", when, node, got)
			}
			if got := events(t, s, store.EventQuery{NodeID: node}); len(got) != 0 {
				t.Errorf("%s: events of %s left: %v", when, node, got)
			}
		}
		if got := openCommands(t, s); !slices.Equal(got, []string{"cmd-2"}) {
			t.Errorf("%s: open commands %v", when, got)
		}
		if got := events(t, s, store.EventQuery{}); !slices.Equal(got, []string{"ev-5"}) {
			t.Errorf("%s: events %v", when, got)
		}
	}
	check("after delete", s)
	check("after reopen", b.restart(s))
}

// testCountersReadBackAsLastWritten: a counter reads back as last
// acknowledged, across reopens, so a caller that starts above it never
// hands out an id or revision twice.
func testCountersReadBackAsLastWritten(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	apply(t, s, store.Write{Counters: map[string]uint64{"revision": 100, "ids": 7}})
	apply(t, s, store.Write{Counters: map[string]uint64{"revision": 200}})
	s = b.restart(s)
	if got, want := load(t, s).Counters, map[string]uint64{"revision": 200, "ids": 7}; !maps.Equal(got, want) {
		t.Fatalf("counters after first reopen %v, want %v", got, want)
	}
	apply(t, s, store.Write{Counters: map[string]uint64{"revision": 300}})
	s = b.restart(s)
	if got, want := load(t, s).Counters, map[string]uint64{"revision": 300, "ids": 7}; !maps.Equal(got, want) {
		t.Fatalf("counters after second reopen %v, want %v", got, want)
	}
}

// testLastSeenLargeBatch: a fleet's batch, larger than a backend writes
// at once, is saved whole.
func testLastSeenLargeBatch(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	t0 := time.Unix(1700000000, 0)
	seen := make(map[string]time.Time)
	for i := range 2500 {
		seen[fmt.Sprintf("n-%04d", i)] = t0.Add(time.Duration(i) * time.Second)
	}
	if err := s.SaveLastSeen(context.Background(), seen); err != nil {
		t.Fatalf("save: %v", err)
	}
	s = b.restart(s)
	got := load(t, s).LastSeen
	if !maps.EqualFunc(got, seen, time.Time.Equal) {
		t.Fatalf("read back %d last-seen times of the %d saved", len(got), len(seen))
	}
}

// testLastSeenReplaced: a later batch replaces a node's time and leaves
// the others; an empty batch changes nothing.
func testLastSeenReplaced(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	ctx := context.Background()
	t0 := time.Unix(1700000000, 0)
	apply(t, s, store.Write{Nodes: []*fleetv1.Node{{NodeId: "a"}, {NodeId: "b"}}})
	if err := s.SaveLastSeen(ctx, map[string]time.Time{"a": t0, "b": t0}); err != nil {
		t.Fatalf("first batch: %v", err)
	}
	if err := s.SaveLastSeen(ctx, map[string]time.Time{"b": t0.Add(time.Minute)}); err != nil {
		t.Fatalf("second batch: %v", err)
	}
	if err := s.SaveLastSeen(ctx, nil); err != nil {
		t.Fatalf("empty batch: %v", err)
	}
	s = b.restart(s)
	got := load(t, s).LastSeen
	if len(got) != 2 || !got["a"].Equal(t0) || !got["b"].Equal(t0.Add(time.Minute)) {
		t.Fatalf("last seen %v", got)
	}
}
