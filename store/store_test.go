package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func open(t *testing.T, dir string, o Options) *Store {
	t.Helper()
	o.Dir = dir
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestApplyAndLoadSurviveReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir, Options{})
	n := &fleetv1.Node{NodeId: "gpu-a", Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, Labels: map[string]string{"zone": "a"}}
	cmd := &fleetv1.Command{Id: FormatSeq("cmd", 7), NodeId: "gpu-a", Type: fleetv1.CommandType_COMMAND_TYPE_DRAIN, Status: fleetv1.CommandStatus_COMMAND_STATUS_PENDING}
	if err := s.Apply(ctx, Write{Nodes: []*fleetv1.Node{n}, Commands: []*fleetv1.Command{cmd}, Counters: map[string]uint64{"revision": 42}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveLastSeen(ctx, map[string]time.Time{"gpu-a": time.Unix(1700000000, 5)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, Options{})
	defer s.Close()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 1 || !proto.Equal(st.Nodes[0], n) {
		t.Fatalf("nodes after reopen: %v", st.Nodes)
	}
	if st.Counters["revision"] != 42 {
		t.Fatalf("counter %d", st.Counters["revision"])
	}
	if got := st.LastSeen["gpu-a"]; !got.Equal(time.Unix(1700000000, 5)) {
		t.Fatalf("last seen %v", got)
	}
	open, err := s.OpenCommands(ctx)
	if err != nil || len(open) != 1 || open[0].GetId() != cmd.GetId() {
		t.Fatalf("open commands %v, %v", open, err)
	}
}

func TestCommandsNewestFirst(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	for i := 1; i <= 300; i++ {
		c := &fleetv1.Command{Id: FormatSeq("cmd", uint64(i)), NodeId: "n", Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED}
		if err := s.Apply(ctx, Write{Commands: []*fleetv1.Command{c}}); err != nil {
			t.Fatal(err)
		}
	}
	// Another node's commands must not leak in, even with a prefix-sharing id.
	if err := s.Apply(ctx, Write{Commands: []*fleetv1.Command{{Id: "cmd-999", NodeId: "n2"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Commands(ctx, "n", 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || got[0].GetId() != "cmd-300" || got[4].GetId() != "cmd-296" {
		t.Fatalf("got %v", ids(got))
	}
}

func ids[T interface{ GetId() string }](xs []T) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.GetId())
	}
	return out
}

func TestEventsCapAndQuery(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{EventsPerNode: 10})
	defer s.Close()
	seq := uint64(0)
	for i := range 25 {
		for _, node := range []string{"a", "b"} {
			seq++
			e := &fleetv1.HealthEvent{Id: FormatSeq("ev", seq), NodeId: node, Xid: uint32(i)}
			if err := s.Apply(ctx, Write{Events: []*fleetv1.HealthEvent{e}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a, err := s.Events(ctx, EventQuery{NodeID: "a", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 10 || a[0].GetXid() != 24 || a[9].GetXid() != 15 {
		t.Fatalf("node a kept %d events, newest %d oldest %d", len(a), a[0].GetXid(), a[len(a)-1].GetXid())
	}
	all, err := s.Events(ctx, EventQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 20 || all[0].GetNodeId() != "b" || all[0].GetXid() != 24 {
		t.Fatalf("fleet-wide: %d events, first %v", len(all), all[0])
	}
	odd, err := s.Events(ctx, EventQuery{Limit: 3, Keep: func(e *fleetv1.HealthEvent) bool { return e.GetXid()%2 == 1 }})
	if err != nil {
		t.Fatal(err)
	}
	if len(odd) != 3 || odd[0].GetXid() != 23 {
		t.Fatalf("filtered: %v", odd)
	}
}

func TestDeleteNodeRemovesEverything(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	w := Write{
		Nodes:    []*fleetv1.Node{{NodeId: "gone"}, {NodeId: "kept"}},
		Commands: []*fleetv1.Command{{Id: "cmd-1", NodeId: "gone"}, {Id: "cmd-2", NodeId: "kept"}},
		Events:   []*fleetv1.HealthEvent{{Id: "ev-3", NodeId: "gone"}, {Id: "ev-4", NodeId: "kept"}},
	}
	if err := s.Apply(ctx, w); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, Write{DeleteNodes: []string{"gone"}}); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Load(ctx)
	if len(st.Nodes) != 1 || st.Nodes[0].GetNodeId() != "kept" {
		t.Fatalf("nodes %v", st.Nodes)
	}
	if c, _ := s.Commands(ctx, "gone", 0); len(c) != 0 {
		t.Fatalf("commands left: %v", c)
	}
	if e, _ := s.Events(ctx, EventQuery{}); len(e) != 1 || e[0].GetNodeId() != "kept" {
		t.Fatalf("events left: %v", e)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(Options{}); err == nil {
		t.Fatal("opened without a directory")
	}
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	for name, w := range map[string]Write{
		"node-without-id":    {Nodes: []*fleetv1.Node{{}}},
		"command-without-id": {Commands: []*fleetv1.Command{{NodeId: "n"}}},
		"event-bad-id":       {Events: []*fleetv1.HealthEvent{{Id: "ev-x", NodeId: "n"}}},
	} {
		if err := s.Apply(ctx, w); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestParseSeq(t *testing.T) {
	for _, id := range []string{"cmd-1", "ev-18446744073709551615", fmt.Sprintf("cmd-%d", 1<<40)} {
		if _, err := ParseSeq(id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	for _, id := range []string{"", "cmd", "cmd-", "cmd-0", "cmd-x", "cmd-1x"} {
		if _, err := ParseSeq(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}

func BenchmarkApplyEvent(b *testing.B) {
	ctx := context.Background()
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for i := range b.N {
		e := &fleetv1.HealthEvent{Id: FormatSeq("ev", uint64(i+1)), NodeId: fmt.Sprintf("node-%d", i%1000), Xid: 79}
		if err := s.Apply(ctx, Write{Events: []*fleetv1.HealthEvent{e}}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCommandHistoryIsCappedButOpenOnesStay: finished commands beyond the
// cap go, oldest first; unfinished ones stay, and the open index finds
// them without reading the history.
func TestCommandHistoryIsCappedButOpenOnesStay(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{CommandsPerNode: 10})
	defer s.Close()
	pending := &fleetv1.Command{Id: "cmd-1", NodeId: "n", Status: fleetv1.CommandStatus_COMMAND_STATUS_PENDING}
	if err := s.Apply(ctx, Write{Commands: []*fleetv1.Command{pending}}); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 30; i++ {
		c := &fleetv1.Command{Id: FormatSeq("cmd", uint64(i)), NodeId: "n", Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED}
		if err := s.Apply(ctx, Write{Commands: []*fleetv1.Command{c}}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Commands(ctx, "n", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 10 || all[0].GetId() != "cmd-30" || all[len(all)-1].GetId() != "cmd-1" {
		t.Fatalf("kept %v", ids(all))
	}
	open, err := s.OpenCommands(ctx)
	if err != nil || len(open) != 1 || open[0].GetId() != "cmd-1" {
		t.Fatalf("open %v %v", open, err)
	}
	pending.Status = fleetv1.CommandStatus_COMMAND_STATUS_FAILED
	if err := s.Apply(ctx, Write{Commands: []*fleetv1.Command{pending}}); err != nil {
		t.Fatal(err)
	}
	if open, _ := s.OpenCommands(ctx); len(open) != 0 {
		t.Fatalf("finished command still open: %v", open)
	}
}

// TestExpiredEventsDoNotCountTowardsTheCap: once old events expire, new
// ones are kept, not trimmed against a stale count.
func TestExpiredEventsDoNotCountTowardsTheCap(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir(), Options{EventsPerNode: 3, EventRetention: time.Second})
	defer s.Close()
	for i := 1; i <= 3; i++ {
		if err := s.Apply(ctx, Write{Events: []*fleetv1.HealthEvent{{Id: FormatSeq("ev", uint64(i)), NodeId: "n"}}}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2100 * time.Millisecond) // Badger's TTL has one-second resolution
	if err := s.Apply(ctx, Write{Events: []*fleetv1.HealthEvent{{Id: "ev-4", NodeId: "n"}}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Events(ctx, EventQuery{NodeID: "n"})
	if err != nil || len(got) != 1 || got[0].GetId() != "ev-4" {
		t.Fatalf("after expiry: %v %v", ids(got), err)
	}
}
