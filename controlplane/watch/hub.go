// Package watch owns the fleet's change stream: it numbers every change with
// a revision, keeps a replay ring for watchers that resume, hands out
// snapshots to those that start afresh (one, built and encoded once, for all
// that start between two changes), coalesces heartbeat-only changes and
// bounds each watcher's queue, telling one that falls behind to resync. A
// watcher's queue takes memory for what waits in it, not for its bound. It
// reads the fleet only through the Fleet and Node interfaces declared here.
package watch

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// coalesceInterval is how often heartbeat-only changes and totals are sent
// to watchers.
const coalesceInterval = time.Second

// heartbeatBatchSize caps the entries of one HeartbeatBatch message.
const heartbeatBatchSize = 1000

// SnapshotChunk caps the nodes of one Snapshot message.
const SnapshotChunk = 500

// RecentEventsKept is how many health events a snapshot carries: as many
// as the console keeps, so that a console whose stream resumes with a
// snapshot (after a restart, or on the control plane that took over from
// the leader) has every event it would have had with no break.
const RecentEventsKept = 2000

// Node is one node as the hub sees it; the fleet implements it.
type Node interface {
	// AppendHeartbeat appends the node's latest heartbeat data to b, the
	// protobuf encoding of a NodeHeartbeat without tag or length, and
	// returns false once the node has left the fleet.
	AppendHeartbeat(b []byte) ([]byte, bool)
	// Render builds the operator's view of the node from a state and
	// reachability taken at a snapshot's revision.
	Render(state *fleetv1.Node, reach fleetv1.Reachability) *fleetv1.Node
	// AppendView appends the protobuf encoding of the node Render would
	// build, without tag or length, to b. Its fields may come in another
	// order than proto.Marshal's, but it decodes to the same node.
	AppendView(b []byte, state *fleetv1.Node, reach fleetv1.Reachability) ([]byte, error)
}

// Entry is one node as of a snapshot's revision.
type Entry struct {
	Node  Node
	State *fleetv1.Node
	Reach fleetv1.Reachability
}

// Fleet is what the hub reads of the fleet.
type Fleet interface {
	// Entries returns every node's current state. The hub calls it with
	// its lock held, so no change is published meanwhile and the entries
	// are exactly the state at the hub's revision.
	Entries() []Entry
	// Summary returns the fleet's totals. The hub calls it without its
	// lock.
	Summary() *fleetv1.FleetSummary
	// Breaker returns the auto-cordon breaker's status, which also changes
	// with time alone.
	Breaker() *fleetv1.BreakerStatus
}

// Options configures New.
type Options struct {
	// Fleet is read for snapshots and totals. Required.
	Fleet Fleet
	// Next hands out the next revision; revisions must increase. Required.
	Next func() uint64
	// Current is the revision before the first change.
	Current uint64
	// RecentEvents are the health events recorded before the hub started,
	// newest first, so that snapshots taken before the next event still
	// carry them; at most RecentEventsKept are kept.
	RecentEvents []*fleetv1.HealthEvent
	// Buffer is how many changes may wait for one watcher before it is
	// told to resync; at least 1. A watcher's queue grows to it only as
	// changes wait.
	Buffer int
	// Replay is how many recent changes are kept for watchers that resume;
	// at least 1.
	Replay int
	// Clock drives the coalescing; nil means the real clock.
	Clock clockwork.Clock
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
	// Resynced, when set, is told of each watcher that fell behind and
	// is sent a fresh snapshot.
	Resynced func()
}

// Hub orders the fleet's changes by revision and fans them out to watchers.
// Every message it hands out is shared between watchers and never changed.
type Hub struct {
	fleet    Fleet
	next     func() uint64
	bufSize  int
	replay   int
	clock    clockwork.Clock
	log      *slog.Logger
	resynced func()

	mu       sync.Mutex
	rev      uint64
	ring     []*controlplanev1.WatchFleetResponse // the last replay changes
	ringNext int
	ringLen  int
	recent   []*fleetv1.HealthEvent // newest last, at most 2*RecentEventsKept
	watchers map[*watcher]struct{}
	// snap is the snapshot watchers that start now share; nil once a
	// change or new totals were sent, or a flush had nobody to send
	// heartbeats to.
	snap  *snapshot
	dirty bool // totals may have changed since the last flush
	// flushes numbers the flushes that had heartbeats. A watcher that has
	// not taken the last heartbeat batches gets no more: it notes the first
	// flush it missed, and once its queue is empty it is sent the latest
	// state of the nodes beats says heartbeated since. beats is shared by
	// every such watcher, so a slow watcher costs a number, not a pointer
	// per node; it has each node that heartbeated while some watcher was
	// missing flushes, or the shared snapshot was older than the flush,
	// with the last flush that had it, and is dropped once neither holds.
	// The field is guarded by mu, the map's entries by beatsMu.
	flushes uint64
	beats   map[Node]uint64
	beatsMu sync.RWMutex
	// sentBreaker is the breaker status the last totals carried.
	sentBreaker *fleetv1.BreakerStatus
	closed      bool
	done        chan struct{}

	// pools are the latest view of every pool, by name, for snapshots.
	pools map[string]*fleetv1.Pool

	hbMu    sync.Mutex
	hbDirty map[Node]struct{}
}

// New builds a hub; Run starts its coalescing.
func New(o Options) (*Hub, error) {
	if o.Fleet == nil || o.Next == nil {
		return nil, errors.New("new watch hub: fleet and revision source are required")
	}
	if o.Buffer < 1 || o.Replay < 1 {
		return nil, errors.New("new watch hub: buffer and replay must be at least 1")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Resynced == nil {
		o.Resynced = func() {}
	}
	// The hub keeps its events newest last.
	recent := make([]*fleetv1.HealthEvent, 0, min(len(o.RecentEvents), RecentEventsKept))
	for i := min(len(o.RecentEvents), RecentEventsKept) - 1; i >= 0; i-- {
		recent = append(recent, o.RecentEvents[i])
	}
	return &Hub{
		fleet:    o.Fleet,
		recent:   recent,
		next:     o.Next,
		bufSize:  o.Buffer,
		replay:   o.Replay,
		clock:    o.Clock,
		log:      o.Logger,
		resynced: o.Resynced,
		rev:      o.Current,
		ring:     make([]*controlplanev1.WatchFleetResponse, o.Replay),
		watchers: make(map[*watcher]struct{}),
		done:     make(chan struct{}),
		hbDirty:  make(map[Node]struct{}),
		pools:    make(map[string]*fleetv1.Pool),
	}, nil
}

// Publish runs fn under the hub lock; each message fn emits gets the next
// revision and goes to every watcher, in order; once the hub is closed, to
// none, so that a revision handed out after Close is seen by nobody. The fleet installs its
// changes inside fn, so that a snapshot sees a change exactly when its
// revision is the hub's.
func (h *Hub) Publish(fn func(emit func(*controlplanev1.WatchFleetResponse))) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(func(m *controlplanev1.WatchFleetResponse) {
		rev := h.next()
		h.rev = rev
		m.Revision = rev
		h.ring[h.ringNext] = m
		h.ringNext = (h.ringNext + 1) % h.replay
		h.ringLen = min(h.ringLen+1, h.replay)
		if e := m.GetHealthEvent(); e != nil {
			h.recent = append(h.recent, e)
			if len(h.recent) > 2*RecentEventsKept {
				h.recent = append(h.recent[:0:0], h.recent[len(h.recent)-RecentEventsKept:]...)
			}
		}
		h.dirty = true
		h.snap = nil
		if !h.closed {
			h.fanOut(m)
		}
	})
}

// PublishPool sends a pool upsert, and keeps the pool for snapshots. p is
// shared with every watcher and must not change afterwards.
func (h *Hub) PublishPool(p *fleetv1.Pool) {
	h.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
		h.pools[p.GetName()] = p
		emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_PoolUpsert{PoolUpsert: p}})
	})
}

// RemovePool sends a pool's removal, and forgets the pool.
func (h *Hub) RemovePool(name string) {
	h.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
		delete(h.pools, name)
		emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_PoolRemoved{PoolRemoved: name}})
	})
}

// poolList is every pool, by name. The hub lock is held.
func (h *Hub) poolList() []*fleetv1.Pool {
	out := make([]*fleetv1.Pool, 0, len(h.pools))
	for _, p := range h.pools {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *fleetv1.Pool) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// fanOut queues m for every watcher that keeps up; one that does not is
// marked behind and gets nothing more until it resyncs. The hub lock is held.
func (h *Hub) fanOut(m *controlplanev1.WatchFleetResponse) {
	for w := range h.watchers {
		h.deliver(w, item{m: m})
	}
}

// deliver queues it for w, or marks w behind when its queue is full. The
// hub lock is held.
func (h *Hub) deliver(w *watcher, it item) {
	if w.behind {
		return
	}
	if w.queue.len() == h.bufSize {
		w.behind = true
		close(w.lagged)
		return
	}
	w.queue.push(it)
	if it.beats {
		w.heartbeats.Add(1)
	}
	if w.queue.len() == 1 {
		// A queue that had messages already is the stream's to empty:
		// each take leaves ready set while more wait.
		select {
		case w.ready <- struct{}{}:
		default:
		}
	}
}

// Close ends every stream; Serve returns Unavailable from then on.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// Revision is the revision of the latest change.
func (h *Hub) Revision() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Stats are the watchers open now and the most changes waiting for any
// one of them.
func (h *Hub) Stats() (watchers, deepestQueue int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		deepestQueue = max(deepestQueue, w.queue.len())
	}
	return len(h.watchers), deepestQueue
}

// TotalsChanged asks the next flush to send totals, for a change that
// published no message (a breaker that suppressed a cordon).
func (h *Hub) TotalsChanged() {
	h.mu.Lock()
	h.dirty = true
	h.snap = nil
	h.mu.Unlock()
}

// Heartbeat notes a heartbeat-only change of n for the next flush.
func (h *Hub) Heartbeat(n Node) {
	h.hbMu.Lock()
	h.hbDirty[n] = struct{}{}
	h.hbMu.Unlock()
}

// Run flushes coalesced heartbeats and totals until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	t := h.clock.NewTicker(coalesceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
			h.Flush()
		}
	}
}

// noteBeatsLocked records the nodes of the current flush in beats while
// some watcher may miss flushes, and drops beats once none may. The hub
// lock is held.
func (h *Hub) noteBeatsLocked(nodes map[Node]struct{}, needed bool) {
	if !needed {
		h.beats = nil
		return
	}
	if h.beats == nil {
		h.beats = make(map[Node]uint64, len(nodes))
	}
	h.beatsMu.Lock()
	defer h.beatsMu.Unlock()
	for n := range nodes {
		h.beats[n] = h.flushes
	}
}

// Flush sends the heartbeats coalesced since the last flush, and the
// totals if they changed. Run calls it every second.
func (h *Hub) Flush() {
	// The flush takes the map only when it has entries; an empty one stays
	// with Heartbeat, and the flush must not read it unlocked.
	var dirty map[Node]struct{}
	h.hbMu.Lock()
	if len(h.hbDirty) > 0 {
		dirty = h.hbDirty
		h.hbDirty = make(map[Node]struct{}, len(dirty))
	}
	h.hbMu.Unlock()
	h.mu.Lock()
	watching := len(h.watchers) > 0
	if !watching {
		// The heartbeats taken are told to nobody, so a new watcher must
		// start from a new snapshot, which has them.
		h.snap = nil
		h.beats = nil
	}
	h.mu.Unlock()
	if !watching {
		// Nobody to tell; a new watcher starts from a snapshot anyway.
		return
	}

	batches := encodeBeats(dirty)

	// The breaker changes with time alone (its window moves on), so its
	// status is compared with the last one sent.
	breaker := h.fleet.Breaker()
	h.mu.Lock()
	sendTotals := h.dirty || !proto.Equal(breaker, h.sentBreaker)
	h.dirty = false
	h.sentBreaker = breaker
	h.mu.Unlock()
	// Read after dirty is cleared: a change published meanwhile marks it
	// again, so the next flush sends totals that include it.
	var summary *fleetv1.FleetSummary
	if sendTotals {
		summary = h.fleet.Summary()
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if sendTotals {
		// A watcher that starts from the shared snapshot after this flush
		// would not get the new totals. Heartbeats it does get: see
		// snapshotLocked.
		h.snap = nil
	}
	msgs := make([]item, len(batches))
	for i, b := range batches {
		msgs[i] = b.message(h.rev)
	}
	if len(dirty) > 0 {
		h.flushes++
		missing := false
		for w := range h.watchers {
			if w.behind {
				continue
			}
			if w.heartbeats.Load() > 0 {
				h.missLocked(w)
			} else {
				for _, m := range msgs {
					h.deliver(w, m)
				}
			}
			// One that took this flush's batches may not have been sent
			// what it missed before.
			missing = missing || w.missedSince > 0
		}
		// A watcher that starts from the shared snapshot is to be sent the
		// nodes that heartbeated since it was taken.
		h.noteBeatsLocked(dirty, missing || h.snap != nil)
	}
	if sendTotals {
		totals := &controlplanev1.FleetTotals{Summary: summary, Breaker: breaker}
		h.fanOut(&controlplanev1.WatchFleetResponse{Revision: h.rev, Change: &controlplanev1.WatchFleetResponse_Totals{Totals: totals}})
	}
}
