package watch

import (
	"testing"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestPools: pool upserts and removals are changes with revisions of their
// own, sent to watchers in order, and a snapshot taken after them holds
// the pools as they are then, by name.
func TestPools(t *testing.T) {
	f := newFakeFleet("a")
	h := newHub(t, f, Options{Buffer: 64, Replay: 64})
	w, _, _ := h.subscribe(0)
	defer h.unsubscribe(w)
	h.PublishPool(&fleetv1.Pool{Name: "train", Wanted: 2})
	h.PublishPool(&fleetv1.Pool{Name: "infer", Wanted: 1})
	h.PublishPool(&fleetv1.Pool{Name: "train", Wanted: 3})
	h.RemovePool("infer")
	got := drain(h, w)
	if len(got) != 4 || got[2].GetPoolUpsert().GetWanted() != 3 || got[3].GetPoolRemoved() != "infer" {
		t.Fatalf("watcher got %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i].GetRevision() != got[i-1].GetRevision()+1 {
			t.Fatalf("revisions %d then %d", got[i-1].GetRevision(), got[i].GetRevision())
		}
	}
	h.PublishPool(&fleetv1.Pool{Name: "a-first"})
	late, st, _ := h.subscribe(0)
	defer h.unsubscribe(late)
	chunks := st.snapshot.messages(f)
	pools := chunks[len(chunks)-1].GetSnapshot().GetPools()
	if len(pools) != 2 || pools[0].GetName() != "a-first" || pools[1].GetName() != "train" || pools[1].GetWanted() != 3 {
		t.Fatalf("snapshot pools %v", pools)
	}
}
