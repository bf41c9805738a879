package watch

import controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"

// segmentSize is how many messages one segment of a queue holds.
const segmentSize = 64

// item is one message waiting for a watcher. beats marks a heartbeat
// batch, whose message holds its own encoding (see beatBatch).
type item struct {
	m     *controlplanev1.WatchFleetResponse
	beats bool
}

// segment is a fixed run of a queue's messages.
type segment struct {
	items [segmentSize]item
	next  *segment
}

// queue holds the changes waiting for one watcher, oldest first. It is a
// list of fixed segments, so it takes memory for what waits rather than
// for the watcher's bound, and a push or a pop costs the same however long
// it is: the hub pushes under its lock, to every watcher. An empty queue
// keeps one segment, and a queue keeps the last segment it emptied for the
// next it needs, so a watcher that keeps up, or nearly, allocates nothing.
// The hub lock guards it.
type queue struct {
	head, tail  *segment
	first, last int // the oldest message in head; the next free slot in tail
	n           int
	spare       *segment // emptied, for the next segment needed
}

// len is how many messages wait.
func (q *queue) len() int { return q.n }

// push adds it after the others.
func (q *queue) push(it item) {
	switch {
	case q.tail == nil:
		q.head = &segment{}
		q.tail = q.head
	case q.last == segmentSize:
		next := q.spare
		if next == nil {
			next = &segment{}
		}
		q.spare = nil
		q.tail.next = next
		q.tail = next
		q.last = 0
	}
	q.tail.items[q.last] = it
	q.last++
	q.n++
}

// pop takes the oldest message, or returns false when none waits.
func (q *queue) pop() (item, bool) {
	if q.n == 0 {
		return item{}, false
	}
	it := q.head.items[q.first]
	q.head.items[q.first] = item{}
	q.first++
	q.n--
	switch {
	case q.n == 0:
		// head is the only segment: keep it, emptied, for the next message.
		q.first, q.last = 0, 0
	case q.first == segmentSize:
		emptied := q.head
		q.head = emptied.next
		q.first = 0
		emptied.next = nil
		q.spare = emptied
	}
	return it, true
}

// reset drops every message and every segment.
func (q *queue) reset() { *q = queue{} }
