package controlplane

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// coalesceInterval is how often heartbeat-only changes and totals are sent
// to watchers.
const coalesceInterval = time.Second

// heartbeatBatchSize caps the entries of one HeartbeatBatch message.
const heartbeatBatchSize = 1000

// snapshotChunk caps the nodes of one Snapshot message.
const snapshotChunk = 500

// recentEventsKept is how many health events the hub keeps for snapshots.
const recentEventsKept = 200

// hub orders the fleet's changes by revision and fans them out to watchers.
// Every message it hands out is shared between watchers and never changed.
type hub struct {
	revs       *counter
	bufSize    int
	replaySize int

	mu       sync.Mutex
	rev      uint64
	ring     []*controlplanev1.WatchFleetResponse // the last replaySize changes
	ringNext int
	ringLen  int
	recent   []*fleetv1.HealthEvent // newest last, at most recentEventsKept
	watchers map[*watcher]struct{}
	dirty    bool // totals may have changed since the last flush
	// sentBreaker is the breaker status the last totals carried.
	sentBreaker *fleetv1.BreakerStatus
	closed      bool
	done        chan struct{}

	hbMu    sync.Mutex
	hbDirty map[*nodeState]struct{}
}

// watcher is one WatchFleet stream's queue.
type watcher struct {
	ch     chan *controlplanev1.WatchFleetResponse
	lagged chan struct{} // closed when the watcher fell behind
	behind bool
	// heartbeats counts the heartbeat entries queued in ch and not yet sent.
	heartbeats atomic.Int64

	// A watcher that has not taken the last heartbeat batches yet gets no
	// more: the nodes that heartbeated meanwhile gather in missed, and it
	// is sent their latest state once its queue is empty. Heartbeats are
	// coalesced per watcher, so a slow one costs a pointer per node, not a
	// batch per second.
	mu     sync.Mutex
	missed map[*nodeState]struct{}
	kick   chan struct{} // has a value when missed gained nodes
}

// sent tells the watcher that m left its queue.
func (w *watcher) sent(m *controlplanev1.WatchFleetResponse) {
	if hb := m.GetHeartbeats(); hb != nil {
		w.heartbeats.Add(-int64(len(hb.GetHeartbeats())))
	}
}

// miss records nodes whose heartbeats the watcher is to get later.
func (w *watcher) miss(nodes map[*nodeState]struct{}) {
	w.mu.Lock()
	if w.missed == nil {
		w.missed = make(map[*nodeState]struct{}, len(nodes))
	}
	for ns := range nodes {
		w.missed[ns] = struct{}{}
	}
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// missed returns the heartbeat batches w missed, built from the nodes'
// current state, once w has taken everything queued for it, and the
// revision they carry. The queue is checked and the revision read under
// the hub lock, so no change at or below that revision still waits in the
// queue: a client resuming from it misses nothing.
func (h *hub) missed(w *watcher) (uint64, []*controlplanev1.HeartbeatBatch) {
	h.mu.Lock()
	if len(w.ch) > 0 || w.behind {
		// Behind, it dropped changes the revision would claim it had.
		h.mu.Unlock()
		return 0, nil
	}
	rev := h.rev
	h.mu.Unlock()
	return rev, w.takeMissed()
}

// takeMissed returns the heartbeat batches the watcher missed, built from
// the nodes' current state, and forgets them.
func (w *watcher) takeMissed() []*controlplanev1.HeartbeatBatch {
	w.mu.Lock()
	missed := w.missed
	w.missed = nil
	w.mu.Unlock()
	return heartbeatBatches(missed)
}

func newHub(revs *counter, bufSize, replaySize int) *hub {
	return &hub{
		revs:       revs,
		bufSize:    bufSize,
		replaySize: replaySize,
		rev:        revs.current(),
		ring:       make([]*controlplanev1.WatchFleetResponse, replaySize),
		watchers:   make(map[*watcher]struct{}),
		done:       make(chan struct{}),
		hbDirty:    make(map[*nodeState]struct{}),
	}
}

// publish runs fn under the hub lock; each message fn emits gets the next
// revision and goes to every watcher, in order.
func (h *hub) publish(fn func(emit func(*controlplanev1.WatchFleetResponse))) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(func(m *controlplanev1.WatchFleetResponse) {
		// A failed ceiling write leaves the counter below its ceiling; it is
		// retried on the next revision, and the change still goes out.
		rev, err := h.revs.next(context.Background())
		if err != nil {
			rev = h.revs.force()
		}
		h.rev = rev
		m.Revision = rev
		h.ring[h.ringNext] = m
		h.ringNext = (h.ringNext + 1) % h.replaySize
		h.ringLen = min(h.ringLen+1, h.replaySize)
		if e := m.GetHealthEvent(); e != nil {
			h.recent = append(h.recent, e)
			if len(h.recent) > 2*recentEventsKept {
				h.recent = append(h.recent[:0:0], h.recent[len(h.recent)-recentEventsKept:]...)
			}
		}
		h.dirty = true
		h.fanOut(m)
	})
}

// fanOut queues m for every watcher that keeps up; one that does not is
// marked behind and gets nothing more until it resyncs. The hub lock is held.
func (h *hub) fanOut(m *controlplanev1.WatchFleetResponse) {
	for w := range h.watchers {
		h.deliver(w, m)
	}
}

// deliver queues m for w, or marks w behind when its queue is full. The hub
// lock is held.
func (h *hub) deliver(w *watcher, m *controlplanev1.WatchFleetResponse) {
	if w.behind {
		return
	}
	select {
	case w.ch <- m:
		w.heartbeats.Add(int64(len(m.GetHeartbeats().GetHeartbeats())))
	default:
		w.behind = true
		close(w.lagged)
	}
}

// snapshotEntry is one node as of a snapshot's revision.
type snapshotEntry struct {
	ns    *nodeState
	node  *fleetv1.Node
	reach fleetv1.Reachability
}

// start is what a new or resyncing watcher sends first.
type start struct {
	rev      uint64
	replay   []*controlplanev1.WatchFleetResponse // set when resuming
	snapshot []snapshotEntry                      // set otherwise
	events   []*fleetv1.HealthEvent               // newest first, with a snapshot
}

// subscribe registers a watcher. It replays the changes after since when the
// ring still holds them all, and otherwise hands out a snapshot taken at the
// same revision the watcher starts from.
func (h *hub) subscribe(since uint64, all func() []*nodeState) (*watcher, start, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, start{}, false
	}
	w := &watcher{
		ch:     make(chan *controlplanev1.WatchFleetResponse, h.bufSize),
		lagged: make(chan struct{}),
		kick:   make(chan struct{}, 1),
	}
	h.watchers[w] = struct{}{}
	oldest := h.rev - uint64(h.ringLen) // the ring holds (oldest, rev]
	if since > 0 && since >= oldest && since <= h.rev {
		st := start{rev: h.rev}
		for i := range h.ringLen {
			m := h.ring[(h.ringNext-h.ringLen+i+h.replaySize)%h.replaySize]
			if m.GetRevision() > since {
				st.replay = append(st.replay, m)
			}
		}
		return w, st, true
	}
	return w, h.snapshotLocked(all), true
}

func (h *hub) snapshotLocked(all func() []*nodeState) start {
	nodes := all()
	st := start{rev: h.rev, snapshot: make([]snapshotEntry, 0, len(nodes))}
	for _, ns := range nodes {
		st.snapshot = append(st.snapshot, snapshotEntry{ns: ns, node: ns.node.Load(), reach: ns.reachability()})
	}
	for i := len(h.recent) - 1; i >= 0 && len(st.events) < recentEventsKept; i-- {
		st.events = append(st.events, h.recent[i])
	}
	return st
}

// resync gives a watcher that fell behind a fresh queue and a snapshot.
func (h *hub) resync(w *watcher, all func() []*nodeState) start {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.ch = make(chan *controlplanev1.WatchFleetResponse, h.bufSize)
	w.lagged = make(chan struct{})
	w.behind = false
	w.heartbeats.Store(0)
	w.mu.Lock()
	w.missed = nil // the snapshot has their latest state
	w.mu.Unlock()
	return h.snapshotLocked(all)
}

func (h *hub) unsubscribe(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers, w)
}

// queue returns the watcher's current channels; resync replaces them.
func (h *hub) queue(w *watcher) (chan *controlplanev1.WatchFleetResponse, chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.ch, w.lagged
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

func (h *hub) revision() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// markTotalsDirty asks the next flush to send totals.
func (h *hub) markTotalsDirty() {
	h.mu.Lock()
	h.dirty = true
	h.mu.Unlock()
}

// heartbeat notes a heartbeat-only change of ns for the next flush.
func (h *hub) heartbeat(ns *nodeState) {
	h.hbMu.Lock()
	h.hbDirty[ns] = struct{}{}
	h.hbMu.Unlock()
}

// run flushes coalesced heartbeats and totals until ctx ends.
func (h *hub) run(ctx context.Context, clock clockwork.Clock, f *Fleet) {
	t := clock.NewTicker(coalesceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
			h.flush(f)
		}
	}
}

// heartbeatBatches builds heartbeat entries from the nodes' current state,
// at most heartbeatBatchSize to a batch.
func heartbeatBatches(nodes map[*nodeState]struct{}) []*controlplanev1.HeartbeatBatch {
	var batches []*controlplanev1.HeartbeatBatch
	batch := &controlplanev1.HeartbeatBatch{}
	for ns := range nodes {
		if ns.removed.Load() {
			continue
		}
		ns.rt.Lock()
		hb := &controlplanev1.NodeHeartbeat{
			NodeId:          ns.node.Load().GetNodeId(),
			Reachability:    ns.reachability(),
			LastHeartbeatAt: timestamppb.New(ns.lastHeartbeat),
			Samples:         protoSamples(ns.samples),
		}
		ns.rt.Unlock()
		batch.Heartbeats = append(batch.Heartbeats, hb)
		if len(batch.Heartbeats) == heartbeatBatchSize {
			batches = append(batches, batch)
			batch = &controlplanev1.HeartbeatBatch{}
		}
	}
	if len(batch.Heartbeats) > 0 {
		batches = append(batches, batch)
	}
	return batches
}

func (h *hub) flush(f *Fleet) {
	h.hbMu.Lock()
	dirty := h.hbDirty
	if len(dirty) > 0 {
		h.hbDirty = make(map[*nodeState]struct{}, len(dirty))
	}
	h.hbMu.Unlock()
	h.mu.Lock()
	watching := len(h.watchers) > 0
	h.mu.Unlock()
	if !watching {
		// Nobody to tell; a new watcher starts from a snapshot anyway.
		return
	}

	batches := heartbeatBatches(dirty)

	// The breaker changes with time alone (its window moves on), so its
	// status is compared with the last one sent.
	breaker := f.breaker.status(f.clock.Now())
	h.mu.Lock()
	sendTotals := h.dirty || !proto.Equal(breaker, h.sentBreaker)
	h.dirty = false
	h.sentBreaker = breaker
	h.mu.Unlock()
	var totals *controlplanev1.FleetTotals
	if sendTotals {
		totals = &controlplanev1.FleetTotals{Summary: f.summary(), Breaker: breaker}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	msgs := make([]*controlplanev1.WatchFleetResponse, len(batches))
	for i, b := range batches {
		msgs[i] = &controlplanev1.WatchFleetResponse{Revision: h.rev, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: b}}
	}
	for w := range h.watchers {
		if len(dirty) == 0 || w.behind {
			continue
		}
		if w.heartbeats.Load() > 0 {
			w.miss(dirty)
			continue
		}
		for _, m := range msgs {
			h.deliver(w, m)
		}
	}
	if totals != nil {
		h.fanOut(&controlplanev1.WatchFleetResponse{Revision: h.rev, Change: &controlplanev1.WatchFleetResponse_Totals{Totals: totals}})
	}
}
