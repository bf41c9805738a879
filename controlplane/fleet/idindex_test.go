package fleet

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// TestIDIndexFollowsTheFleet: after any run of additions and removals,
// some of the same id, merged at random moments, the index holds exactly
// the ids present, in order, once each.
func TestIDIndexFollowsTheFleet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var x idIndex
	present := map[string]bool{}
	for step := range 20000 {
		id := fmt.Sprintf("n-%03d", rng.IntN(300))
		switch {
		case rng.IntN(3) == 0:
			x.note(id, false)
			delete(present, id)
		default:
			x.note(id, true)
			present[id] = true
		}
		if rng.IntN(50) == 0 || step == 19999 {
			x.merge()
			want := slices.Sorted(maps.Keys(present))
			if !slices.Equal(x.sorted, want) {
				t.Fatalf("step %d: index %v, fleet %v", step, x.sorted, want)
			}
		}
	}
	if !x.current() {
		t.Fatal("merged index still has notes")
	}
}

// TestListWithoutFilterPagesByID: unfiltered pages come from the index in
// id order, nodes registered between pages are found on the pages after
// their place, and the total is the fleet's size.
func TestListWithoutFilterPagesByID(t *testing.T) {
	f := newFleet(t, Options{})
	for i := 0; i < 40; i += 2 {
		register(t, f, fmt.Sprintf("node-%02d", i), 1)
	}
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		if pages == 2 {
			// Between pages: one id before the position, two after it.
			register(t, f, "node-01", 1)
			register(t, f, "node-31", 1)
			register(t, f, "node-39", 1)
		}
		page, next, total, _ := f.List(NodeFilter{}, 7, after)
		if wantTotal := 20 + 3*min(1, pages/2); total != wantTotal {
			t.Fatalf("page %d: total %d, want %d", pages, total, wantTotal)
		}
		for _, n := range page {
			got = append(got, n.GetNodeId())
		}
		if next == "" {
			break
		}
		if next != page[len(page)-1].GetNodeId() {
			t.Fatalf("next %q is not the page's last id", next)
		}
		after = next
	}
	var want []string
	for i := 0; i < 40; i += 2 {
		want = append(want, fmt.Sprintf("node-%02d", i))
	}
	want = append(want, "node-31", "node-39")
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("pages gave %v, want %v", got, want)
	}
	// A filtered list still finds the node added before the position.
	page, _, total, _ := f.List(NodeFilter{Lifecycle: []fleetv1.LifecycleState{fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE}}, 100, "")
	if total != 23 || len(page) != 23 || page[1].GetNodeId() != "node-01" {
		t.Fatalf("filtered: %d of %d, second %q", len(page), total, page[1].GetNodeId())
	}
}

// TestIDIndexOfALoadedFleet: a fleet loaded at start pages in id order at
// once, and a node registered after the load joins the order.
func TestIDIndexOfALoadedFleet(t *testing.T) {
	st := &store.State{}
	for _, id := range []string{"n-3", "n-1", "n-4", "n-0", "n-2"} {
		st.Nodes = append(st.Nodes, &fleetv1.Node{NodeId: id, Hostname: id, Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE})
	}
	f := newFleet(t, Options{State: st})
	if !f.byID.current() {
		t.Fatal("the loaded fleet's index waits for a merge")
	}
	register(t, f, "n-15", 1)
	page, next, total, _ := f.List(NodeFilter{}, 10, "")
	var got []string
	for _, n := range page {
		got = append(got, n.GetNodeId())
	}
	if want := []string{"n-0", "n-1", "n-15", "n-2", "n-3", "n-4"}; !slices.Equal(got, want) || next != "" || total != 6 {
		t.Fatalf("page %v next %q total %d, want %v", got, next, total, want)
	}
}
