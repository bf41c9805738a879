package watch

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Stream is where one watcher's messages go: a WatchFleet server stream,
// which is sent snapshot chunks encoded once and shared with the other
// streams of its encoding (see sendSnapshot), or a SendFunc.
type Stream interface {
	Send(*controlplanev1.WatchFleetResponse) error
}

// SendFunc is a Stream that calls a function, for a watcher in the same
// process.
type SendFunc func(*controlplanev1.WatchFleetResponse) error

// Send calls f.
func (f SendFunc) Send(m *controlplanev1.WatchFleetResponse) error { return f(m) }

// watcher is one stream's queue.
type watcher struct {
	// queue, lagged and behind are guarded by the hub lock.
	queue  queue
	lagged chan struct{} // closed when the watcher fell behind
	behind bool
	ready  chan struct{} // has a value when the queue gained a message
	// heartbeats counts the heartbeat batches queued and not yet sent.
	heartbeats atomic.Int64

	// missedSince is the first flush whose heartbeats the watcher missed,
	// 0 when it missed none; the hub lock guards it. See Hub.beats.
	missedSince uint64
	kick        chan struct{} // has a value when the watcher missed a flush
}

// sent tells the watcher that it left its queue.
func (w *watcher) sent(it item) {
	if it.beats {
		w.heartbeats.Add(-1)
	}
}

// missLocked notes that w missed the current flush's heartbeats. The hub
// lock is held.
func (h *Hub) missLocked(w *watcher) {
	if w.missedSince == 0 {
		w.missedSince = h.flushes
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// missed returns the heartbeat batches w missed, built from the nodes'
// current state, once w has taken everything queued for it, and the
// revision they carry, and forgets them. The queue is checked and the
// revision read under the hub lock, so no change at or below that revision
// still waits in the queue: a client resuming from it misses nothing.
func (h *Hub) missed(w *watcher) (uint64, []beatBatch) {
	h.mu.Lock()
	if w.missedSince == 0 || w.queue.len() > 0 || w.behind {
		// Behind, it dropped changes the revision would claim it had.
		h.mu.Unlock()
		return 0, nil
	}
	since, beats, rev := w.missedSince, h.beats, h.rev
	w.missedSince = 0
	h.mu.Unlock()
	// beats is read as taken: a flush that finds no watcher missing drops
	// the map rather than clearing it.
	nodes := make(map[Node]struct{})
	h.beatsMu.RLock()
	for n, flush := range beats {
		if flush >= since {
			nodes[n] = struct{}{}
		}
	}
	h.beatsMu.RUnlock()
	return rev, encodeBeats(nodes)
}

// start is what a new or resyncing watcher sends first.
type start struct {
	rev      uint64
	replay   []*controlplanev1.WatchFleetResponse // set when resuming
	snapshot *snapshot                            // set otherwise
}

// subscribe registers a watcher. It replays the changes after since when the
// ring still holds them all, and otherwise hands out a snapshot taken at the
// same revision the watcher starts from.
func (h *Hub) subscribe(since uint64) (*watcher, start, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, start{}, false
	}
	w := &watcher{
		lagged: make(chan struct{}),
		ready:  make(chan struct{}, 1),
		kick:   make(chan struct{}, 1),
	}
	h.watchers[w] = struct{}{}
	oldest := h.rev - uint64(h.ringLen) // the ring holds (oldest, rev]
	if since > 0 && since >= oldest && since <= h.rev {
		st := start{rev: h.rev}
		for i := range h.ringLen {
			m := h.ring[(h.ringNext-h.ringLen+i+h.replay)%h.replay]
			if m.GetRevision() > since {
				st.replay = append(st.replay, m)
			}
		}
		return w, st, true
	}
	return w, h.snapshotLocked(w), true
}

// snapshotLocked starts w from the shared snapshot, taking a new one when
// a change or new totals were sent since the last was taken. Heartbeats
// flushed since it was taken are not in it: w is sent those nodes' latest
// state as a watcher that missed them is. The hub lock is held.
func (h *Hub) snapshotLocked(w *watcher) start {
	if h.snap == nil {
		s := &snapshot{rev: h.rev, flush: h.flushes, entries: h.fleet.Entries(), pools: h.poolList()}
		for i := len(h.recent) - 1; i >= 0 && len(s.events) < RecentEventsKept; i-- {
			s.events = append(s.events, h.recent[i])
		}
		h.snap = s
	}
	if h.snap.flush < h.flushes {
		w.missedSince = h.snap.flush + 1
		h.missLocked(w)
	}
	return start{rev: h.snap.rev, snapshot: h.snap}
}

// resync gives a watcher that fell behind an empty queue and a snapshot.
func (h *Hub) resync(w *watcher) start {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.queue.reset()
	w.lagged = make(chan struct{})
	w.behind = false
	w.heartbeats.Store(0)
	w.missedSince = 0 // the snapshot has their latest state
	return h.snapshotLocked(w)
}

func (h *Hub) unsubscribe(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers, w)
}

// take returns the watcher's oldest queued message, which leaves the
// queue, or false when none waits or the watcher is behind. While more
// wait, ready keeps a value, so the stream takes one message at a time and
// still sees its context end or the hub close between two.
func (h *Hub) take(w *watcher) (item, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.behind {
		return item{}, false
	}
	it, ok := w.queue.pop()
	if !ok {
		return item{}, false
	}
	w.sent(it)
	if w.queue.len() > 0 {
		select {
		case w.ready <- struct{}{}:
		default:
		}
	}
	return it, true
}

// Serve streams to one watcher until ctx ends, the stream fails or the hub
// closes: a snapshot (or the changes since a revision), then every change.
// A watcher that falls behind gets a Resync and a fresh snapshot instead
// of growing the server's memory.
func (h *Hub) Serve(ctx context.Context, since uint64, stream Stream) error {
	w, st, ok := h.subscribe(since)
	if !ok {
		return status.Error(codes.Unavailable, "control plane is shutting down")
	}
	defer h.unsubscribe(w)
	// A stream that writes protobuf encodings out as they are is sent the
	// heartbeat batches as encoded; another, decoded.
	_, encoded := encodingOf(stream)
	if err := h.sendStart(stream, st); err != nil {
		return err
	}
	// Only resync, called here, replaces lagged.
	lagged := w.lagged
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-h.done:
			return status.Error(codes.Unavailable, "control plane is shutting down")
		case <-w.ready:
			it, ok := h.take(w)
			if !ok {
				continue
			}
			if err := send(stream, it, encoded); err != nil {
				return err
			}
			if err := h.sendMissed(stream, w, encoded); err != nil {
				return err
			}
		case <-w.kick:
			if err := h.sendMissed(stream, w, encoded); err != nil {
				return err
			}
		case <-lagged:
			h.log.Warn("watcher fell behind; resyncing it")
			// No revision: the watcher dropped changes, and one that resumes
			// before the snapshot arrives must resume from what it had.
			if err := stream.Send(&controlplanev1.WatchFleetResponse{
				Change: &controlplanev1.WatchFleetResponse_Resync{Resync: &controlplanev1.Resync{Reason: "watcher fell behind"}},
			}); err != nil {
				return err
			}
			st := h.resync(w)
			h.resynced()
			lagged = w.lagged
			if err := h.sendStart(stream, st); err != nil {
				return err
			}
		}
	}
}

// send sends it to stream; encoded says whether the stream writes
// protobuf encodings out as they are (see item.forStream).
func send(stream Stream, it item, encoded bool) error {
	m, err := it.forStream(encoded)
	if err != nil {
		return err
	}
	return stream.Send(m)
}

// sendMissed sends the latest state of the nodes whose heartbeat batches
// the watcher missed while it was behind on them.
func (h *Hub) sendMissed(stream Stream, w *watcher, encoded bool) error {
	rev, batches := h.missed(w)
	for _, b := range batches {
		if err := send(stream, b.message(rev), encoded); err != nil {
			return err
		}
	}
	return nil
}

// sendStart sends what a new or resyncing watcher starts with.
func (h *Hub) sendStart(stream Stream, st start) error {
	if st.snapshot == nil {
		for _, m := range st.replay {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		return nil
	}
	return sendSnapshot(stream, st.snapshot, h.fleet)
}
