package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// operations calls every method of the store but Close, each with a
// write or a query that would do something.
var operations = []struct {
	name string
	call func(context.Context, store.Store) error
}{
	{"apply", func(ctx context.Context, s store.Store) error {
		return s.Apply(ctx, store.Write{
			Nodes:    []*fleetv1.Node{{NodeId: "late"}},
			Counters: map[string]uint64{"late": 1},
			Tokens:   []*store.Token{{Name: "late", Role: admin}},
			NodeKeys: []*store.NodeKey{nodeKey("late", "k1", time.Unix(1700000000, 0))},
			Audit:    []*store.AuditEntry{auditEntry(9, "late")},
		})
	}},
	{"apply-delete-node-keys", func(ctx context.Context, s store.Store) error {
		return s.Apply(ctx, store.Write{DeleteNodeKeys: []string{"n"}})
	}},
	{"save-last-seen", func(ctx context.Context, s store.Store) error {
		return s.SaveLastSeen(ctx, map[string]time.Time{"late": time.Unix(1700000000, 0)})
	}},
	{"load", func(ctx context.Context, s store.Store) error {
		_, err := s.Load(ctx)
		return err
	}},
	{"commands", func(ctx context.Context, s store.Store) error {
		_, err := s.Commands(ctx, "n", 0)
		return err
	}},
	{"open-commands", func(ctx context.Context, s store.Store) error {
		_, err := s.OpenCommands(ctx)
		return err
	}},
	{"events", func(ctx context.Context, s store.Store) error {
		_, err := s.Events(ctx, store.EventQuery{})
		return err
	}},
	{"node-events", func(ctx context.Context, s store.Store) error {
		_, err := s.Events(ctx, store.EventQuery{NodeID: "n"})
		return err
	}},
	{"audit", func(ctx context.Context, s store.Store) error {
		_, err := s.Audit(ctx, store.AuditQuery{})
		return err
	}},
	{"node-audit", func(ctx context.Context, s store.Store) error {
		_, err := s.Audit(ctx, store.AuditQuery{NodeID: "n"})
		return err
	}},
}

// seed gives the operations something to read, so a backend that only
// notices a closed store or a done context on its first row is caught.
func seed(t *testing.T, s store.Store) {
	t.Helper()
	apply(t, s, store.Write{
		Nodes:    []*fleetv1.Node{{NodeId: "n"}},
		Commands: []*fleetv1.Command{cmd(1, "n", pending)},
		Events:   []*fleetv1.HealthEvent{event(2, "n")},
		NodeKeys: []*store.NodeKey{nodeKey("n", "k1", time.Unix(1700000000, 0))},
		Audit:    []*store.AuditEntry{auditEntry(3, "n")},
	})
}

// testClosedStore: after Close every operation fails with ErrClosed, and
// closing again succeeds.
func testClosedStore(t *testing.T, open Opener) {
	s := newBackend(t, open, store.Limits{}).start()
	seed(t, s)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	for _, op := range operations {
		t.Run(op.name, func(t *testing.T) {
			if err := op.call(context.Background(), s); !errors.Is(err, store.ErrClosed) {
				t.Errorf("got %v, want ErrClosed", err)
			}
		})
	}
	if err := s.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// testCancelledContext: every operation given a cancelled context fails
// with the context's error, and the writes among them store nothing.
func testCancelledContext(t *testing.T, open Opener) {
	s := newBackend(t, open, store.Limits{}).start()
	seed(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, op := range operations {
		t.Run(op.name, func(t *testing.T) {
			if err := op.call(ctx, s); !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		})
	}
	st := load(t, s)
	if len(st.Nodes) != 1 || len(st.Counters) != 0 || len(st.LastSeen) != 0 || len(st.Tokens) != 0 {
		t.Errorf("cancelled writes stored nodes %v, counters %v, last seen %v, tokens %v",
			nodeIDs(st), st.Counters, st.LastSeen, tokenNames(st))
	}
	if got := audit(t, s, store.AuditQuery{}); !slices.Equal(got, []string{"au-3"}) {
		t.Errorf("cancelled writes left the audit log as %v, want [au-3]", got)
	}
	checkNodeKeys(t, "after cancelled writes", st.NodeKeys, []*store.NodeKey{nodeKey("n", "k1", time.Unix(1700000000, 0))})
}
