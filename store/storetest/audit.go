package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

func auditEntry(seq uint64, node string) *store.AuditEntry {
	return &store.AuditEntry{ID: store.FormatSeq("au", seq), NodeID: node, Who: "ops", Role: operator, RPC: "CordonNode", Code: "OK"}
}

func audit(t *testing.T, s store.Store, q store.AuditQuery) []string {
	t.Helper()
	as, err := s.Audit(context.Background(), q)
	if err != nil {
		t.Fatalf("audit %+v: %v", q, err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

// testAuditSurvivesReopen: audit entries are read back by the next store
// opened on the same data with every field as written, the time to the
// nanosecond in UTC whatever zone it was given in, a zero time still
// zero.
func testAuditSurvivesReopen(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	entries := []*store.AuditEntry{
		{
			ID:      "au-7",
			Time:    time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600)),
			Who:     "oncall",
			Role:    operator,
			RPC:     "DrainNode",
			NodeID:  "gpu-a",
			Reason:  "NVLink errors, ticket 42",
			Params:  `{"force":true}`,
			Code:    "FailedPrecondition",
			Message: `node_id: node "gpu-a" is TERMINATED; it cannot be drained`,
		},
		{ID: "au-9", Who: "policy", RPC: "AutoCordon", NodeID: "gpu-a", Code: "OK"},
		{ID: "au-8", Time: time.Now(), Who: "root", Role: admin, RPC: "CreateToken", Params: `{"name":"ci"}`, Code: "OK"},
	}
	apply(t, s, store.Write{Audit: entries})
	want := []*store.AuditEntry{entries[1], entries[2], entries[0]}
	check := func(when string, s store.Store) {
		t.Helper()
		got, err := s.Audit(context.Background(), store.AuditQuery{})
		if err != nil {
			t.Fatalf("%s: audit: %v", when, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d entries, want %d", when, len(got), len(want))
		}
		for i, g := range got {
			w := *want[i]
			if !w.Time.IsZero() {
				w.Time = w.Time.UTC()
			}
			if g.Time.Location() != time.UTC {
				t.Errorf("%s: entry %s at %v, not in UTC", when, g.ID, g.Time)
			}
			if *g != w {
				t.Errorf("%s: entry %d reads back as %+v, want %+v", when, i, *g, w)
			}
		}
	}
	check("before reopen", s)
	check("after reopen", b.restart(s))
}

// testAuditQuery: entries come newest first by the number in their id,
// for the whole log and for one node; a query returns at most its limit
// (100 when unset); an entry about no node is only in the whole log.
func testAuditQuery(t *testing.T, open Opener) {
	s := newBackend(t, open, store.Limits{}).start()
	var w store.Write
	for seq := uint64(1); seq <= 120; seq++ {
		w.Audit = append(w.Audit, auditEntry(seq, "n"))
	}
	apply(t, s, w)
	// One entry per write too, out of order across nodes.
	for _, a := range []*store.AuditEntry{auditEntry(123, "n2"), auditEntry(121, "other"), auditEntry(122, "")} {
		apply(t, s, store.Write{Audit: []*store.AuditEntry{a}})
	}
	tests := []struct {
		name string
		q    store.AuditQuery
		want []string
	}{
		{"default-limit", store.AuditQuery{NodeID: "n"}, seqIDs("au", 120, 21)},
		{"limit", store.AuditQuery{NodeID: "n", Limit: 3}, seqIDs("au", 120, 118)},
		{"node-sharing-a-prefix", store.AuditQuery{NodeID: "n2"}, []string{"au-123"}},
		{"unknown-node", store.AuditQuery{NodeID: "none"}, nil},
		{"whole-log-newest-first", store.AuditQuery{Limit: 5}, seqIDs("au", 123, 119)},
		{"whole-log-default-limit", store.AuditQuery{}, seqIDs("au", 123, 24)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := audit(t, s, tt.q); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// testAuditOutlivesNode: deleting a node leaves every audit entry about
// it, in its node's query and in the whole log, also across a reopen.
func testAuditOutlivesNode(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	apply(t, s, store.Write{
		Nodes:  []*fleetv1.Node{{NodeId: "gone"}},
		Events: []*fleetv1.HealthEvent{event(1, "gone")},
		Audit:  []*store.AuditEntry{auditEntry(2, "gone")},
	})
	apply(t, s, store.Write{Audit: []*store.AuditEntry{auditEntry(3, "gone")}})
	// Deleted in a write that records it, as a removal is recorded.
	apply(t, s, store.Write{DeleteNodes: []string{"gone"}, Audit: []*store.AuditEntry{auditEntry(4, "gone")}})
	check := func(when string, s store.Store) {
		t.Helper()
		if got := nodeIDs(load(t, s)); len(got) != 0 {
			t.Fatalf("%s: nodes %v; the node was not deleted", when, got)
		}
		want := seqIDs("au", 4, 2)
		if got := audit(t, s, store.AuditQuery{NodeID: "gone"}); !slices.Equal(got, want) {
			t.Errorf("%s: the node's audit %v, want %v", when, got, want)
		}
		if got := audit(t, s, store.AuditQuery{}); !slices.Equal(got, want) {
			t.Errorf("%s: the whole log %v, want %v", when, got, want)
		}
	}
	check("after delete", s)
	check("after reopen", b.restart(s))
}

// testAuditExpires: audit entries go once the audit retention has passed,
// from the node's query and the whole log, while events, kept by their
// own retention, stay.
func testAuditExpires(t *testing.T, open Opener) {
	// Four seconds, as for events: a backend that expires on whole seconds
	// keeps an entry for at least three, long enough to see it first.
	s := newBackend(t, open, store.Limits{AuditRetention: 4 * time.Second, EventRetention: time.Hour}).start()
	apply(t, s, store.Write{
		Events: []*fleetv1.HealthEvent{event(1, "n")},
		Audit:  []*store.AuditEntry{auditEntry(2, "n"), auditEntry(3, "")},
	})
	if got := audit(t, s, store.AuditQuery{}); len(got) != 2 {
		t.Fatalf("audit right after writing: %v", got)
	}
	testutil.EventuallyWithin(t, 10*time.Second, "audit entries to expire", func() bool {
		return len(audit(t, s, store.AuditQuery{NodeID: "n"})) == 0 && len(audit(t, s, store.AuditQuery{})) == 0
	})
	if got := events(t, s, store.EventQuery{}); !slices.Equal(got, []string{"ev-1"}) {
		t.Errorf("events after the audit expired: %v; they have a retention of their own", got)
	}
	apply(t, s, store.Write{Audit: []*store.AuditEntry{auditEntry(4, "n")}})
	if got := audit(t, s, store.AuditQuery{NodeID: "n"}); !slices.Equal(got, []string{"au-4"}) {
		t.Errorf("after expiry the node's audit is %v, want [au-4]", got)
	}
}
