// Package storetest owns the conformance suite of store.Store: the
// behaviour every backend must show, run against a real instance of it.
// A backend's own test calls Run with an Opener:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T, dir string, l store.Limits) store.Store {
//			s, err := mybackend.Open(mybackend.Options{Dir: dir, Limits: l})
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
package storetest

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// Opener opens the backend whose data lives in dir, with limits, and fails
// t when it cannot. Each case gets a fresh dir from t.TempDir. To check that
// acknowledged writes are kept, a case closes the store and calls the Opener
// again with the same dir and limits, so what one store wrote there must be
// what the next one reads. A backend whose data does not live in files (a
// database server) treats dir as the name of a namespace of its own. The
// suite closes every store it opens. Its cases set only the limits they
// check, the others left at the backend's defaults; those of retention use
// 4 s and expect what expired gone within a few seconds after that.
type Opener func(t *testing.T, dir string, limits store.Limits) store.Store

// Run runs every case of the suite against the backend that open opens,
// each as a subtest.
func Run(t *testing.T, open Opener) {
	cases := []struct {
		name string
		run  func(t *testing.T, open Opener)
	}{
		{"writes-survive-reopen", testWritesSurviveReopen},
		{"apply-is-atomic", testApplyIsAtomic},
		{"nodes-replaced-and-ordered", testNodesReplacedAndOrdered},
		{"delete-node-removes-everything", testDeleteNodeRemovesEverything},
		{"counters-read-back-as-last-written", testCountersReadBackAsLastWritten},
		{"last-seen-replaced", testLastSeenReplaced},
		{"last-seen-large-batch", testLastSeenLargeBatch},
		{"tokens-survive-reopen", testTokensSurviveReopen},
		{"tokens-replaced-and-ordered", testTokensReplacedAndOrdered},
		{"node-keys-survive-reopen", testNodeKeysSurviveReopen},
		{"node-keys-replaced-and-ordered", testNodeKeysReplacedAndOrdered},
		{"node-keys-deleted", testNodeKeysDeleted},
		{"delete-node-frees-its-key", testDeleteNodeFreesItsKey},
		{"commands-newest-first", testCommandsNewestFirst},
		{"open-commands-are-the-unfinished", testOpenCommandsAreTheUnfinished},
		{"finished-commands-capped", testFinishedCommandsCapped},
		{"events-newest-first", testEventsNewestFirst},
		{"events-query", testEventsQuery},
		{"events-capped-per-node", testEventsCappedPerNode},
		{"events-expire", testEventsExpire},
		{"audit-survives-reopen", testAuditSurvivesReopen},
		{"audit-query", testAuditQuery},
		{"audit-outlives-node", testAuditOutlivesNode},
		{"audit-expires", testAuditExpires},
		{"pools-survive-reopen", testPoolsSurviveReopen},
		{"breaker-survives-reopen", testBreakerSurvivesReopen},
		{"closed-store", testClosedStore},
		{"cancelled-context", testCancelledContext},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, open) })
	}
}

// backend is one case's data directory and the limits it is opened with.
type backend struct {
	t      *testing.T
	open   Opener
	dir    string
	limits store.Limits
}

func newBackend(t *testing.T, open Opener, limits store.Limits) *backend {
	return &backend{t: t, open: open, dir: t.TempDir(), limits: limits}
}

// start opens the store and closes it when the case ends.
func (b *backend) start() store.Store {
	b.t.Helper()
	s := b.open(b.t, b.dir, b.limits)
	b.t.Cleanup(func() { _ = s.Close() })
	return s
}

// restart closes s and opens the same data again.
func (b *backend) restart(s store.Store) store.Store {
	b.t.Helper()
	if err := s.Close(); err != nil {
		b.t.Fatalf("close before reopening: %v", err)
	}
	return b.start()
}

func apply(t *testing.T, s store.Store, w store.Write) {
	t.Helper()
	if err := s.Apply(context.Background(), w); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

func load(t *testing.T, s store.Store) *store.State {
	t.Helper()
	st, err := s.Load(context.Background())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}

func commands(t *testing.T, s store.Store, node string, limit int) []string {
	t.Helper()
	cs, err := s.Commands(context.Background(), node, limit)
	if err != nil {
		t.Fatalf("commands of %s: %v", node, err)
	}
	return ids(cs)
}

func openCommands(t *testing.T, s store.Store) []string {
	t.Helper()
	cs, err := s.OpenCommands(context.Background())
	if err != nil {
		t.Fatalf("open commands: %v", err)
	}
	return ids(cs)
}

func events(t *testing.T, s store.Store, q store.EventQuery) []string {
	t.Helper()
	es, err := s.Events(context.Background(), q)
	if err != nil {
		t.Fatalf("events %+v: %v", q, err)
	}
	return ids(es)
}

func nodeIDs(st *store.State) []string {
	var out []string
	for _, n := range st.Nodes {
		out = append(out, n.GetNodeId())
	}
	return out
}

func ids[T interface{ GetId() string }](xs []T) []string {
	var out []string
	for _, x := range xs {
		out = append(out, x.GetId())
	}
	return out
}

func cmd(seq uint64, node string, status fleetv1.CommandStatus) *fleetv1.Command {
	return &fleetv1.Command{Id: store.FormatSeq("cmd", seq), NodeId: node, Type: fleetv1.CommandType_COMMAND_TYPE_DRAIN, Status: status}
}

func event(seq uint64, node string) *fleetv1.HealthEvent {
	return &fleetv1.HealthEvent{Id: store.FormatSeq("ev", seq), NodeId: node, Xid: uint32(seq)}
}

// seqIDs are the ids FormatSeq(prefix, seq) for seqs from, from±1, ... to.
func seqIDs(prefix string, from, to uint64) []string {
	var out []string
	for seq := from; ; {
		out = append(out, store.FormatSeq(prefix, seq))
		if seq == to {
			return out
		}
		if from < to {
			seq++
		} else {
			seq--
		}
	}
}

func protoEqual[T proto.Message](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
