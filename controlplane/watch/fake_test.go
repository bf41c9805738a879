package watch

import (
	"fmt"
	"sync"
	"testing"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

const online = fleetv1.Reachability_REACHABILITY_ONLINE

// fakeNode is a node whose heartbeat is its latest sample.
type fakeNode struct {
	state *fleetv1.Node

	mu   sync.Mutex
	util uint32
	left bool
}

func (n *fakeNode) AppendHeartbeat(b []byte) ([]byte, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.left {
		return b, false
	}
	b, err := proto.MarshalOptions{}.MarshalAppend(b, &controlplanev1.NodeHeartbeat{
		NodeId:       n.state.GetNodeId(),
		Reachability: online,
		Samples:      []*fleetv1.GpuSample{{UtilizationGpuPercent: n.util}},
	})
	if err != nil {
		panic(err)
	}
	return b, true
}

// Render builds a fresh view, as the fleet does, so that a snapshot costs
// one allocation per node.
func (n *fakeNode) Render(state *fleetv1.Node, reach fleetv1.Reachability) *fleetv1.Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return &fleetv1.Node{
		NodeId:       state.GetNodeId(),
		Lifecycle:    state.GetLifecycle(),
		Health:       state.GetHealth(),
		Gpus:         state.GetGpus(),
		Reachability: reach,
		Samples:      []*fleetv1.GpuSample{{UtilizationGpuPercent: n.util}},
	}
}

// leave makes the node one that has left the fleet.
func (n *fakeNode) leave() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.left = true
}

// fakeFleet is a fixed set of fake nodes, all ONLINE.
type fakeFleet struct {
	nodes []*fakeNode
	byID  map[string]*fakeNode

	mu      sync.Mutex
	breaker *fleetv1.BreakerStatus
	// joined counts nodes added after the start, for Summary.
	joined int
	// onBreaker, when set, runs each time the hub reads the breaker.
	onBreaker func()
}

func newFakeFleet(ids ...string) *fakeFleet {
	f := &fakeFleet{byID: make(map[string]*fakeNode), breaker: &fleetv1.BreakerStatus{}}
	for _, id := range ids {
		n := &fakeNode{state: &fleetv1.Node{NodeId: id, Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE}}
		f.nodes = append(f.nodes, n)
		f.byID[id] = n
	}
	return f
}

// fleetOf is a fake fleet of n nodes named node-000000 onwards.
func fleetOf(n int) *fakeFleet {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%06d", i)
	}
	return newFakeFleet(ids...)
}

func (f *fakeFleet) Entries() []Entry {
	out := make([]Entry, 0, len(f.nodes))
	for _, n := range f.nodes {
		out = append(out, Entry{Node: n, State: n.state, Reach: online})
	}
	return out
}

func (f *fakeFleet) Summary() *fleetv1.FleetSummary {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &fleetv1.FleetSummary{Nodes: uint32(len(f.nodes) + f.joined)}
}

func (f *fakeFleet) Breaker() *fleetv1.BreakerStatus {
	f.mu.Lock()
	hook := f.onBreaker
	b := f.breaker
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	return b
}

func (f *fakeFleet) setBreaker(b *fleetv1.BreakerStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.breaker = b
}

func (f *fakeFleet) node(id string) *fakeNode { return f.byID[id] }

// beat records a heartbeat of a node and tells the hub, as the fleet does.
func (f *fakeFleet) beat(h *Hub, id string, util uint32) {
	n := f.byID[id]
	n.mu.Lock()
	n.util = util
	n.mu.Unlock()
	h.Heartbeat(n)
}

// newHub builds a hub with o's settings on fleet, whose revisions count up
// from o.Current, closed when the test ends. Its clock is fake unless o
// says otherwise; only Run reads it.
func newHub(t testing.TB, fleet Fleet, o Options) *Hub {
	t.Helper()
	rev := o.Current
	o.Fleet = fleet
	// Next is called with the hub lock held.
	o.Next = func() uint64 { rev++; return rev }
	if o.Clock == nil {
		o.Clock = clockwork.NewFakeClock()
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// upsert publishes a change of one node.
func upsert(h *Hub, n *fleetv1.Node) {
	h.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
		emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: n}})
	})
}

// drain empties a watcher's queue as its stream would, and returns what
// was in it, heartbeat batches decoded.
func drain(h *Hub, w *watcher) []*controlplanev1.WatchFleetResponse {
	var out []*controlplanev1.WatchFleetResponse
	for it, ok := h.take(w); ok; it, ok = h.take(w) {
		m, err := it.forStream(false)
		if err != nil {
			panic(err)
		}
		out = append(out, m)
	}
	return out
}

// entries decodes heartbeat batches, as a watcher is sent them at rev,
// into their entries.
func entries(rev uint64, batches []beatBatch) []*controlplanev1.NodeHeartbeat {
	var out []*controlplanev1.NodeHeartbeat
	for _, b := range batches {
		m, err := b.message(rev).forStream(false)
		if err != nil {
			panic(err)
		}
		out = append(out, m.GetHeartbeats().GetHeartbeats()...)
	}
	return out
}

// queued is how many messages wait in a watcher's queue.
func queued(h *Hub, w *watcher) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.queue.len()
}

// laggedOf is the channel closed when a watcher falls behind; resync
// replaces it.
func laggedOf(h *Hub, w *watcher) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.lagged
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// AppendView encodes Render's node, as the fleet's encoding decodes to.
func (n *fakeNode) AppendView(b []byte, state *fleetv1.Node, reach fleetv1.Reachability) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(b, n.Render(state, reach))
}
