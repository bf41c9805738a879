package storetest

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// testPoolsSurviveReopen: pools read back ordered by name, each as last
// written but for its status, which is never stored; a later write
// replaces a pool whole and DeletePools removes one, also when the same
// write names it in Pools; a pool without a name is refused.
func testPoolsSurviveReopen(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	train := &fleetv1.Pool{
		Name:   "train",
		Wanted: 4,
		Spec: &fleetv1.PoolSpec{
			Providers: []string{"aws", "gcp"}, Min: 2, Max: 8, Labels: map[string]string{"team": "ml"},
			ReplaceUnhealthy: true, UnhealthyGrace: durationpb.New(600e9),
		},
		Status: &fleetv1.PoolStatus{Nodes: 3},
	}
	infer := &fleetv1.Pool{Name: "infer", Wanted: 1, Spec: &fleetv1.PoolSpec{Providers: []string{"local"}, Max: 1}}
	apply(t, s, store.Write{Pools: []*fleetv1.Pool{train, infer}})
	stored := proto.CloneOf(train)
	stored.Status = nil
	checkPools(t, "before reopen", load(t, s).Pools, infer, stored)
	if train.GetStatus().GetNodes() != 3 {
		t.Fatal("Apply changed the pool it was given")
	}
	s = b.restart(s)
	checkPools(t, "after reopen", load(t, s).Pools, infer, stored)

	grown := proto.CloneOf(stored)
	grown.Wanted = 8
	apply(t, s, store.Write{Pools: []*fleetv1.Pool{grown}})
	checkPools(t, "after replacing", load(t, s).Pools, infer, grown)
	apply(t, s, store.Write{Pools: []*fleetv1.Pool{infer}, DeletePools: []string{"infer"}})
	checkPools(t, "after deleting", load(t, s).Pools, grown)

	if err := s.Apply(t.Context(), store.Write{Pools: []*fleetv1.Pool{{Wanted: 1}}}); err == nil {
		t.Fatal("a pool without a name was stored")
	}
}

func checkPools(t *testing.T, when string, got []*fleetv1.Pool, want ...*fleetv1.Pool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d pools, want %d: %v", when, len(got), len(want), got)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s: pool %d is %v, want %v", when, i, got[i], want[i])
		}
	}
}
