package storetest

import (
	"slices"
	"testing"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

const (
	pending      = fleetv1.CommandStatus_COMMAND_STATUS_PENDING
	delivered    = fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED
	acknowledged = fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED
	succeeded    = fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
	failed       = fleetv1.CommandStatus_COMMAND_STATUS_FAILED
)

// testCommandsNewestFirst: a node's commands come newest first by the
// number in their id (cmd-10 after cmd-9), a limit keeps the newest, a
// command written again is replaced rather than repeated, and a node whose
// id starts with another's keeps its commands to itself.
func testCommandsNewestFirst(t *testing.T, open Opener) {
	s := newBackend(t, open, store.Limits{}).start()
	for seq := uint64(1); seq <= 30; seq++ {
		apply(t, s, store.Write{Commands: []*fleetv1.Command{cmd(seq, "n", succeeded)}})
	}
	apply(t, s, store.Write{Commands: []*fleetv1.Command{cmd(31, "n2", pending), cmd(32, "n-1", pending)}})
	apply(t, s, store.Write{Commands: []*fleetv1.Command{cmd(30, "n", failed)}})

	tests := []struct {
		name  string
		limit int
		want  []string
	}{
		{"all", 0, seqIDs("cmd", 30, 1)},
		{"limit", 5, seqIDs("cmd", 30, 26)},
		{"limit-above-count", 100, seqIDs("cmd", 30, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := commands(t, s, "n", tt.limit); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("replaced", func(t *testing.T) {
		cs, err := s.Commands(t.Context(), "n", 1)
		if err != nil {
			t.Fatalf("commands: %v", err)
		}
		if len(cs) != 1 || cs[0].GetStatus() != failed {
			t.Errorf("rewritten command reads back as %v", cs)
		}
	})
	t.Run("unknown-node", func(t *testing.T) {
		if got := commands(t, s, "none", 0); len(got) != 0 {
			t.Errorf("got %v", got)
		}
	})
}

// testOpenCommandsAreTheUnfinished: OpenCommands returns exactly the
// pending, delivered and acknowledged commands, oldest first within a node,
// as they change and after a reopen.
func testOpenCommandsAreTheUnfinished(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	apply(t, s, store.Write{Commands: []*fleetv1.Command{
		cmd(1, "a", pending),
		cmd(2, "a", succeeded),
		cmd(3, "b", delivered),
		cmd(4, "a", acknowledged),
		cmd(5, "b", failed),
		cmd(6, "b", fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED),
		cmd(7, "b", pending),
	}})
	checkOpen(t, "after the first write", s, map[string][]string{"a": {"cmd-1", "cmd-4"}, "b": {"cmd-3", "cmd-7"}})

	apply(t, s, store.Write{Commands: []*fleetv1.Command{
		cmd(1, "a", delivered),
		cmd(3, "b", succeeded),
		cmd(4, "a", fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED),
		cmd(8, "a", pending),
	}})
	want := map[string][]string{"a": {"cmd-1", "cmd-8"}, "b": {"cmd-7"}}
	checkOpen(t, "after updates", s, want)
	checkOpen(t, "after reopen", b.restart(s), want)
}

// checkOpen asserts OpenCommands returns want: per node, in order, with
// each node's commands together.
func checkOpen(t *testing.T, when string, s store.Store, want map[string][]string) {
	t.Helper()
	cs, err := s.OpenCommands(t.Context())
	if err != nil {
		t.Fatalf("%s: open commands: %v", when, err)
	}
	got := make(map[string][]string)
	var order []string
	for _, c := range cs {
		if store.Finished(c) {
			t.Errorf("%s: finished command %s is open", when, c.GetId())
		}
		node := c.GetNodeId()
		if len(order) == 0 || order[len(order)-1] != node {
			if slices.Contains(order, node) {
				t.Errorf("%s: commands of %s are not together: %v", when, node, ids(cs))
			}
			order = append(order, node)
		}
		got[node] = append(got[node], c.GetId())
	}
	if len(got) != len(want) {
		t.Errorf("%s: open commands %v, want %v", when, got, want)
	}
	for node, w := range want {
		if !slices.Equal(got[node], w) {
			t.Errorf("%s: open commands of %s %v, want %v", when, node, got[node], w)
		}
	}
}

// testFinishedCommandsCapped: beyond the per-node cap the oldest finished
// commands go; an unfinished one stays whatever its age, and leaves the
// open set once it finishes.
func testFinishedCommandsCapped(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{CommandsPerNode: 10})
	s := b.start()
	apply(t, s, store.Write{Commands: []*fleetv1.Command{cmd(1, "n", pending), cmd(2, "other", succeeded)}})
	for seq := uint64(3); seq <= 30; seq++ {
		apply(t, s, store.Write{Commands: []*fleetv1.Command{cmd(seq, "n", succeeded)}})
	}
	// Ten kept: the nine newest finished ones count with the open one,
	// which is never trimmed.
	want := append(seqIDs("cmd", 30, 22), "cmd-1")
	if got := commands(t, s, "n", 0); !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
	if got := commands(t, s, "other", 0); !slices.Equal(got, []string{"cmd-2"}) {
		t.Errorf("another node's history was trimmed: %v", got)
	}
	if got := openCommands(t, s); !slices.Equal(got, []string{"cmd-1"}) {
		t.Fatalf("open %v", got)
	}
	apply(t, s, store.Write{Commands: []*fleetv1.Command{cmd(1, "n", failed)}})
	s = b.restart(s)
	if got := openCommands(t, s); len(got) != 0 {
		t.Fatalf("finished command still open: %v", got)
	}
	if got := commands(t, s, "n", 0); len(got) != 10 {
		t.Errorf("kept %d after reopen: %v", len(got), got)
	}
}
