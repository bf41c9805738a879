package fleet

import (
	"testing"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

var wheelStart = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// secs is wheelStart plus s seconds.
func secs(s float64) time.Time { return wheelStart.Add(time.Duration(s * float64(time.Second))) }

func wheelNode(id string) *nodeState { return newNodeState(&fleetv1.Node{NodeId: id}) }

// dueSlot is the bucket ns is in, if any.
func (w *wheel) dueSlot(ns *nodeState) (int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.due[ns]
	return s, ok
}

func TestWheelTakesNodesWhenDue(t *testing.T) {
	tests := []struct {
		name     string
		schedule []float64 // seconds after start, in order
		drop     bool
		takes    []float64 // passes, in order
		want     []int     // how often the node is taken at each pass
	}{
		{"due-within-a-second", []float64{2.5}, false, []float64{1.999, 2, 3}, []int{0, 1, 0}},
		{"due-on-the-second", []float64{2}, false, []float64{1.5, 2, 2}, []int{0, 1, 0}},
		{"later-leaves-it-earlier", []float64{5, 10}, false, []float64{4, 5, 10}, []int{0, 1, 0}},
		{"earlier-wins", []float64{10, 5}, false, []float64{4, 5, 10}, []int{0, 1, 0}},
		{"same-bucket-twice", []float64{5, 5.5}, false, []float64{5, 6}, []int{1, 0}},
		{"dropped", []float64{5}, true, []float64{5, 100}, []int{0, 0}},
		{"late-pass-takes-what-is-past", []float64{1}, false, []float64{100, 101}, []int{1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWheel()
			ns := wheelNode("n1")
			for _, s := range tt.schedule {
				w.schedule(ns, secs(s))
			}
			if tt.drop {
				w.drop(ns)
			}
			for i, at := range tt.takes {
				got := 0
				for _, taken := range w.take(secs(at)) {
					if taken == ns {
						got++
					}
				}
				if got != tt.want[i] {
					t.Errorf("pass at %gs took the node %d times, want %d", at, got, tt.want[i])
				}
			}
		})
	}
}

// A node taken and scheduled again into a bucket that still holds its
// earlier, overtaken entry is taken once.
func TestWheelRescheduledNodeIsTakenOnce(t *testing.T) {
	w := newWheel()
	ns := wheelNode("n1")
	w.schedule(ns, secs(10))
	w.schedule(ns, secs(3))
	if got := w.take(secs(3)); len(got) != 1 {
		t.Fatalf("pass at 3s took %d nodes, want 1", len(got))
	}
	w.schedule(ns, secs(10))
	if got := w.take(secs(10)); len(got) != 1 {
		t.Fatalf("pass at 10s took %d nodes, want 1", len(got))
	}
	if _, ok := w.dueSlot(ns); ok {
		t.Fatal("node still scheduled after it was taken")
	}
}

// A pass takes every bucket that came up, however many, and only those.
func TestWheelTakesEveryBucketThatCameUp(t *testing.T) {
	w := newWheel()
	nodes := map[string]float64{"a": 7, "b": 1, "c": 30, "d": 4.2, "e": 31}
	byID := map[string]*nodeState{}
	for id, s := range nodes {
		byID[id] = wheelNode(id)
		w.schedule(byID[id], secs(s))
	}
	got := map[string]bool{}
	for _, ns := range w.take(secs(30.5)) {
		got[ns.id()] = true
	}
	for id, s := range nodes {
		if want := s < 31; got[id] != want {
			t.Errorf("node %s due at %gs: taken %v at 30.5s, want %v", id, s, got[id], want)
		}
	}
	if s, ok := w.dueSlot(byID["e"]); !ok || s != slot(secs(31)) {
		t.Errorf("node e is in bucket %d (%v), want %d", s, ok, slot(secs(31)))
	}
}

// A node that left the fleet is never scheduled again: a pass that looked
// at it as it was removed cannot put it back.
func TestWheelSkipsRemovedNodes(t *testing.T) {
	w := newWheel()
	ns := wheelNode("n1")
	ns.removed.Store(true)
	w.schedule(ns, secs(1))
	if _, ok := w.dueSlot(ns); ok {
		t.Fatal("a removed node was scheduled")
	}
	if got := w.take(secs(5)); len(got) != 0 {
		t.Fatalf("pass took %d nodes, want none", len(got))
	}
}

func TestWheelExpiryEveryTenSeconds(t *testing.T) {
	w := newWheel()
	ns := wheelNode("n1")
	if next := w.nextExpiry(ns, secs(0)); !next.Equal(secs(0)) {
		t.Fatalf("a node never looked at for quiet faults is due at %v, want now", next)
	}
	if !w.expireDue(ns, secs(0)) {
		t.Fatal("first look not due")
	}
	if w.expireDue(ns, secs(9.9)) {
		t.Fatal("looked again before expireEvery")
	}
	if next := w.nextExpiry(ns, secs(5)); !next.Equal(secs(10)) {
		t.Fatalf("next look at %v, want 10s", next.Sub(wheelStart))
	}
	if !w.expireDue(ns, secs(10)) {
		t.Fatal("not due after expireEvery")
	}
	w.healthy(ns)
	if !w.expireDue(ns, secs(11)) {
		t.Fatal("a node faulty again is not due at once")
	}
}
