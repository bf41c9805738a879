package watch

import (
	"testing"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// segments counts the segments a queue holds.
func segments(q *queue) int {
	n := 0
	for s := q.head; s != nil; s = s.next {
		n++
	}
	return n
}

// TestQueue: messages leave in the order they came, across segments; a
// queue holds segments for what waits, and keeps one when it empties.
func TestQueue(t *testing.T) {
	tests := []struct {
		name         string
		push, pop    int
		wantSegments int
	}{
		{name: "empty", wantSegments: 0},
		{name: "one", push: 1, wantSegments: 1},
		{name: "one-segment-full", push: segmentSize, wantSegments: 1},
		{name: "spills-over", push: segmentSize + 1, wantSegments: 2},
		{name: "many", push: 10*segmentSize + 3, wantSegments: 11},
		{name: "first-segment-taken", push: 2 * segmentSize, pop: segmentSize, wantSegments: 1},
		{name: "emptied-keeps-one", push: 10 * segmentSize, pop: 10 * segmentSize, wantSegments: 1},
		{name: "partly-taken", push: 3*segmentSize + 5, pop: segmentSize + 7, wantSegments: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q queue
			msgs := make([]*controlplanev1.WatchFleetResponse, tt.push)
			for i := range msgs {
				msgs[i] = &controlplanev1.WatchFleetResponse{Revision: uint64(i + 1)}
				q.push(item{m: msgs[i]})
			}
			for i := range tt.pop {
				if it, _ := q.pop(); it.m != msgs[i] {
					t.Fatalf("pop %d returned revision %d, want %d", i, it.m.GetRevision(), i+1)
				}
			}
			if q.len() != tt.push-tt.pop {
				t.Fatalf("len %d, want %d", q.len(), tt.push-tt.pop)
			}
			if got := segments(&q); got != tt.wantSegments {
				t.Fatalf("%d segments, want %d", got, tt.wantSegments)
			}
			// What is left comes out in order, then nothing.
			for i := tt.pop; i < tt.push; i++ {
				if it, _ := q.pop(); it.m != msgs[i] {
					t.Fatalf("pop %d returned revision %d, want %d", i, it.m.GetRevision(), i+1)
				}
			}
			if it, ok := q.pop(); ok || q.len() != 0 {
				t.Fatalf("an emptied queue returned %v with len %d", it.m, q.len())
			}
		})
	}
}

// TestQueueReusedAfterEmptying: a queue that empties and fills again
// keeps its order, and reset lets every segment go.
func TestQueueReusedAfterEmptying(t *testing.T) {
	var q queue
	rev := uint64(0)
	want := uint64(1)
	for round := range 5 {
		for range round*segmentSize/2 + 1 {
			rev++
			q.push(item{m: &controlplanev1.WatchFleetResponse{Revision: rev}})
		}
		for it, ok := q.pop(); ok; it, ok = q.pop() {
			if it.m.GetRevision() != want {
				t.Fatalf("round %d: got revision %d, want %d", round, it.m.GetRevision(), want)
			}
			want++
		}
	}
	if want != rev+1 {
		t.Fatalf("got %d messages, pushed %d", want-1, rev)
	}
	q.push(item{m: &controlplanev1.WatchFleetResponse{}})
	q.reset()
	if q.len() != 0 || segments(&q) != 0 {
		t.Fatalf("after reset: len %d, %d segments", q.len(), segments(&q))
	}
}

// TestQueueReusesSegments: a watcher that keeps a steady distance behind,
// more than a segment, allocates nothing once its queue has the segments
// for that distance.
func TestQueueReusesSegments(t *testing.T) {
	var q queue
	m := item{m: &controlplanev1.WatchFleetResponse{}}
	for range segmentSize + segmentSize/2 {
		q.push(m)
	}
	step := func() {
		q.push(m)
		q.pop()
	}
	for range 4 * segmentSize {
		step()
	}
	if allocs := testing.AllocsPerRun(10*segmentSize, step); allocs != 0 {
		t.Fatalf("%v allocations per message, want 0", allocs)
	}
}
