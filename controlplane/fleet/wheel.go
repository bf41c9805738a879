package fleet

import (
	"container/heap"
	"sync"
	"time"
)

// wheel holds each node in a one-second bucket keyed by the time it is
// next due a look from the monitor, so that a monitor pass touches the
// nodes whose bucket came up rather than the whole fleet.
//
// Scheduling is lazy: a node stays in its bucket when something makes it
// due later (a heartbeat moves its stale time on) and is put in its new
// bucket when the old one comes up. Whatever may make a node due earlier
// schedules it again, and the earlier time wins.
//
// A node is in at most one live bucket: due says which. An entry left in
// another bucket by an earlier schedule is skipped when that bucket comes
// up. The lock is a leaf: nothing else is locked while it is held.
type wheel struct {
	mu      sync.Mutex
	buckets map[int64][]*nodeState // by second since the Unix epoch
	seconds seconds                // the keys of buckets, soonest first
	due     map[*nodeState]int64
	// expired is when each DEGRADED or UNHEALTHY node's quiet faults were
	// last looked for.
	expired map[*nodeState]time.Time
}

func newWheel() *wheel {
	return &wheel{
		buckets: make(map[int64][]*nodeState),
		due:     make(map[*nodeState]int64),
		expired: make(map[*nodeState]time.Time),
	}
}

// slot is the bucket of time t: the second it falls in. A bucket comes up
// on the first pass in or after its second; a node due later within that
// second is looked at early, has nothing due yet, and goes back into the
// same bucket, which the next pass takes. Either way the node is looked at
// on the first pass at or after its due time.
func slot(t time.Time) int64 { return t.Unix() }

// schedule has ns looked at on the first pass at or after at, unless it
// is due earlier already. A node that left the fleet is not scheduled: it
// is marked removed before it is dropped, so either this sees the mark or
// drop comes after.
func (w *wheel) schedule(ns *nodeState, at time.Time) {
	s := slot(at)
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur, ok := w.due[ns]; (ok && cur <= s) || ns.removed.Load() {
		return
	}
	w.due[ns] = s
	b, ok := w.buckets[s]
	if !ok {
		heap.Push(&w.seconds, s)
	}
	w.buckets[s] = append(b, ns)
}

// take removes and returns the nodes due at or before now, each once.
func (w *wheel) take(now time.Time) []*nodeState {
	s := slot(now)
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*nodeState
	for len(w.seconds) > 0 && w.seconds[0] <= s {
		sec := heap.Pop(&w.seconds).(int64)
		for _, ns := range w.buckets[sec] {
			if due, ok := w.due[ns]; ok && due == sec {
				delete(w.due, ns)
				out = append(out, ns)
			}
		}
		delete(w.buckets, sec)
	}
	return out
}

// drop forgets a node that left the fleet.
func (w *wheel) drop(ns *nodeState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.due, ns)
	delete(w.expired, ns)
}

// expireDue reports whether a faulty node's quiet faults are due to be
// looked for at now, and if so records that they are. A node that left
// the fleet is not recorded, as schedule does not schedule one: the
// monitor's look removes a terminated node before it looks for its quiet
// faults, and a record made after drop would hold the node for good.
func (w *wheel) expireDue(ns *nodeState, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ns.removed.Load() {
		return false
	}
	if last, ok := w.expired[ns]; ok && now.Sub(last) < expireEvery {
		return false
	}
	w.expired[ns] = now
	return true
}

// nextExpiry is when a faulty node's quiet faults are next looked for:
// expireEvery after the last time, or now if never.
func (w *wheel) nextExpiry(ns *nodeState, now time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	if last, ok := w.expired[ns]; ok {
		return last.Add(expireEvery)
	}
	return now
}

// healthy forgets when a node that is no longer faulty was last looked at
// for quiet faults.
func (w *wheel) healthy(ns *nodeState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.expired, ns)
}

// seconds is a min-heap of bucket keys.
type seconds []int64

func (h seconds) Len() int           { return len(h) }
func (h seconds) Less(i, j int) bool { return h[i] < h[j] }
func (h seconds) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *seconds) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *seconds) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
