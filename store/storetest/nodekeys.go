package storetest

import (
	"bytes"
	"slices"
	"testing"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// nodeKey binds node to the hash of a key named after it and key.
func nodeKey(node, key string, boundAt time.Time) *store.NodeKey {
	return &store.NodeKey{NodeID: node, KeyHash: hash(node + "/" + key), BoundAt: boundAt}
}

// checkNodeKeys fails t unless got holds want's bindings in want's order,
// every field equal and every time in UTC.
func checkNodeKeys(t *testing.T, when string, got, want []*store.NodeKey) {
	t.Helper()
	checkOrder(t, when, "node keys", got, want, func(k *store.NodeKey) string { return k.NodeID })
	for i, g := range got {
		w := want[i]
		if !bytes.Equal(g.KeyHash, w.KeyHash) {
			t.Errorf("%s: node %s bound to %x, want %x", when, g.NodeID, g.KeyHash, w.KeyHash)
		}
		if !g.BoundAt.Equal(w.BoundAt) || g.BoundAt.IsZero() != w.BoundAt.IsZero() {
			t.Errorf("%s: node %s bound at %v, want %v", when, g.NodeID, g.BoundAt, w.BoundAt)
		}
		if g.BoundAt.Location() != time.UTC {
			t.Errorf("%s: node %s bound at %v, not in UTC", when, g.NodeID, g.BoundAt)
		}
	}
}

// testNodeKeysSurviveReopen: bindings written on their own are read back
// by the next store opened on the same data with every field as written:
// the time to the nanosecond, whatever zone it was given in, a zero time
// still zero.
func testNodeKeysSurviveReopen(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	keys := []*store.NodeKey{
		nodeKey("gpu-a", "k1", time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))),
		nodeKey("gpu-b", "k1", time.Now()),
		nodeKey("gpu-c", "k1", time.Time{}),
	}
	apply(t, s, store.Write{NodeKeys: keys})
	checkNodeKeys(t, "before reopen", load(t, s).NodeKeys, keys)
	checkNodeKeys(t, "after reopen", load(t, b.restart(s)).NodeKeys, keys)
}

// testNodeKeysReplacedAndOrdered: Load returns bindings ordered by node
// id, and a later write replaces a node's binding whole, a time it leaves
// zero included, and leaves the others as they were.
func testNodeKeysReplacedAndOrdered(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	bound := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	n10 := nodeKey("node-10", "k1", bound)
	n9 := nodeKey("node-9", "k1", bound)
	na := nodeKey("node-a", "k1", bound)
	apply(t, s, store.Write{NodeKeys: []*store.NodeKey{na, n9, n10}})
	checkNodeKeys(t, "first write", load(t, s).NodeKeys, []*store.NodeKey{n10, n9, na})

	rekeyed := nodeKey("node-9", "k2", time.Time{})
	apply(t, s, store.Write{NodeKeys: []*store.NodeKey{rekeyed}})
	want := []*store.NodeKey{n10, rekeyed, na}
	checkNodeKeys(t, "after replacing", load(t, s).NodeKeys, want)
	checkNodeKeys(t, "after reopen", load(t, b.restart(s)).NodeKeys, want)
}

// testNodeKeysDeleted: DeleteNodeKeys removes the bindings it names and
// leaves the others and the nodes themselves; a node bound and unbound in
// one write ends unbound; unbinding a node that has no binding is no
// error.
func testNodeKeysDeleted(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	bound := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	kept := nodeKey("n2", "k1", bound)
	apply(t, s, store.Write{
		Nodes:    []*fleetv1.Node{{NodeId: "n"}, {NodeId: "n2"}},
		NodeKeys: []*store.NodeKey{nodeKey("n", "k1", bound), kept},
	})
	apply(t, s, store.Write{DeleteNodeKeys: []string{"n", "never-bound"}})
	apply(t, s, store.Write{NodeKeys: []*store.NodeKey{nodeKey("both", "k1", bound)}, DeleteNodeKeys: []string{"both"}})
	check := func(when string, s store.Store) {
		t.Helper()
		st := load(t, s)
		checkNodeKeys(t, when, st.NodeKeys, []*store.NodeKey{kept})
		if got := nodeIDs(st); !slices.Equal(got, []string{"n", "n2"}) {
			t.Errorf("%s: nodes %v, want [n n2]: unbinding deletes no node", when, got)
		}
	}
	check("after delete", s)
	check("after reopen", b.restart(s))
}

// testDeleteNodeFreesItsKey: deleting a node removes its binding, also
// one written in the same write, and only its: a node whose id starts
// with the deleted one's keeps its own. The id is then free to bind to
// another key.
func testDeleteNodeFreesItsKey(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	bound := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	gone2 := nodeKey("gone2", "k1", bound)
	kept := nodeKey("kept", "k1", bound)
	apply(t, s, store.Write{
		Nodes:    []*fleetv1.Node{{NodeId: "gone"}, {NodeId: "gone2"}, {NodeId: "kept"}},
		NodeKeys: []*store.NodeKey{nodeKey("gone", "k1", bound), gone2, kept},
	})
	apply(t, s, store.Write{DeleteNodes: []string{"gone"}})
	apply(t, s, store.Write{
		Nodes:       []*fleetv1.Node{{NodeId: "fresh"}},
		NodeKeys:    []*store.NodeKey{nodeKey("fresh", "k1", bound)},
		DeleteNodes: []string{"fresh"},
	})
	want := []*store.NodeKey{gone2, kept}
	checkNodeKeys(t, "after delete", load(t, s).NodeKeys, want)
	s = b.restart(s)
	checkNodeKeys(t, "after reopen", load(t, s).NodeKeys, want)

	again := nodeKey("gone", "k2", bound.Add(time.Hour))
	apply(t, s, store.Write{NodeKeys: []*store.NodeKey{again}})
	checkNodeKeys(t, "after binding the id again", load(t, s).NodeKeys, []*store.NodeKey{again, gone2, kept})
}
