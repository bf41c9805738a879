package etcdstore

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// sameState fails t unless a and b hold the same state.
func sameState(t *testing.T, what string, a, b *store.State) {
	t.Helper()
	if len(a.Nodes) != len(b.Nodes) {
		t.Fatalf("%s: %d nodes against %d", what, len(a.Nodes), len(b.Nodes))
	}
	for i := range a.Nodes {
		if !proto.Equal(a.Nodes[i], b.Nodes[i]) {
			t.Fatalf("%s: node %d: %v against %v", what, i, a.Nodes[i], b.Nodes[i])
		}
	}
	if len(a.Pools) != len(b.Pools) {
		t.Fatalf("%s: %d pools against %d", what, len(a.Pools), len(b.Pools))
	}
	for i := range a.Pools {
		if !proto.Equal(a.Pools[i], b.Pools[i]) {
			t.Fatalf("%s: pool %d: %v against %v", what, i, a.Pools[i], b.Pools[i])
		}
	}
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"last-seen", a.LastSeen, b.LastSeen},
		{"counters", a.Counters, b.Counters},
		{"tokens", a.Tokens, b.Tokens},
		{"node keys", a.NodeKeys, b.NodeKeys},
		{"breaker", a.Breaker, b.Breaker},
	} {
		if !reflect.DeepEqual(f.a, f.b) {
			t.Fatalf("%s: %s differ: %+v against %+v", what, f.name, f.a, f.b)
		}
	}
}

// TestFollowKeepsLoadInMemory: a store that follows the cluster loads,
// from memory, exactly what a read of the cluster returns, including
// writes made by another store just before, and deletions.
func TestFollowKeepsLoadInMemory(t *testing.T) {
	writer := openShared(t, Options{})
	follower := openShared(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	now := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	nodes := func(from, n int) []*fleetv1.Node {
		var out []*fleetv1.Node
		for i := from; i < from+n; i++ {
			out = append(out, &fleetv1.Node{NodeId: fmt.Sprintf("gpu-%04d", i), Hostname: "h", Labels: map[string]string{"rack": "r1"}})
		}
		return out
	}
	if err := writer.Apply(ctx, store.Write{Nodes: nodes(0, 50), Counters: map[string]uint64{"ids": 7},
		Tokens:  []*store.Token{{Name: "ops", Role: controlplanev1.Role_ROLE_OPERATOR, Hash: make([]byte, 32), CreatedAt: now}},
		Pools:   []*fleetv1.Pool{{Name: "train"}},
		Breaker: &store.BreakerState{Recent: []time.Time{now}},
	}); err != nil {
		t.Fatal(err)
	}
	followCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); follower.Follow(followCtx) }()
	defer func() { stop(); <-done }()
	testutil.Eventually(t, "the follower to hold a copy", func() bool { return follower.mirror.Load() != nil })

	// Changes after the copy was read, the last just before the load.
	if err := writer.Apply(ctx, store.Write{Nodes: nodes(50, 30), DeleteNodes: []string{"gpu-0003"},
		NodeKeys: []*store.NodeKey{{NodeID: "gpu-0001", KeyHash: make([]byte, 32), BoundAt: now}},
		Counters: map[string]uint64{"ids": 9}}); err != nil {
		t.Fatal(err)
	}
	if err := writer.SaveLastSeen(ctx, map[string]time.Time{"gpu-0001": now, "gpu-0060": now.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := writer.Apply(ctx, store.Write{DeletePools: []string{"train"}, Nodes: []*fleetv1.Node{{NodeId: "gpu-0099", Hostname: "last"}}}); err != nil {
		t.Fatal(err)
	}
	fromMemory, err := follower.loadMirror(ctx, follower.mirror.Load())
	if err != nil {
		t.Fatal(err)
	}
	fromCluster, err := writer.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromCluster.Nodes) != 80 || len(fromCluster.Pools) != 0 || fromCluster.Counters["ids"] != 9 {
		t.Fatalf("the cluster's state is not the one written: %d nodes, %d pools, ids %d", len(fromCluster.Nodes), len(fromCluster.Pools), fromCluster.Counters["ids"])
	}
	sameState(t, "from memory against from the cluster", fromMemory, fromCluster)
	viaLoad, err := follower.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, "Load of a following store", viaLoad, fromCluster)

	stop()
	<-done
	if follower.mirror.Load() != nil {
		t.Fatal("the copy outlived Follow")
	}
}

// TestLoadWhenTheCopyStopped: a copy that stopped following the cluster
// (a watch ended) is not waited on: loading from it fails at once, and
// Load reads the cluster instead.
func TestLoadWhenTheCopyStopped(t *testing.T) {
	writer := openShared(t, Options{})
	follower := openShared(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	followCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); follower.Follow(followCtx) }()
	testutil.Eventually(t, "the follower to hold a copy", func() bool { return follower.mirror.Load() != nil })
	stale := follower.mirror.Load()
	stop()
	<-done
	if err := writer.Apply(ctx, store.Write{Nodes: []*fleetv1.Node{{NodeId: "after"}}}); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := follower.loadMirror(ctx, stale); err == nil {
		t.Fatal("a copy that stopped following was loaded from")
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Fatalf("loading from a copy that stopped following took %s; it must fail at once", took)
	}
	st, err := follower.Load(ctx)
	if err != nil || len(st.Nodes) != 1 || st.Nodes[0].GetNodeId() != "after" {
		t.Fatalf("Load after the copy stopped: %v, %v; want the cluster's node", st, err)
	}
}
