package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
)

// Store is the durable state the fleet needs. *store.Store implements it; a
// distributed backend can implement it too.
type Store interface {
	Apply(ctx context.Context, w store.Write) error
	SaveLastSeen(ctx context.Context, seen map[string]time.Time) error
	Load(ctx context.Context) (*store.State, error)
	Commands(ctx context.Context, nodeID string, limit int) ([]*fleetv1.Command, error)
	OpenCommands(ctx context.Context) ([]*fleetv1.Command, error)
	Events(ctx context.Context, q store.EventQuery) ([]*fleetv1.HealthEvent, error)
}

// nodeState is one node in memory.
//
// Locks, always taken in this order: mu (serialises the node's durable
// changes, including their disk write), then the fleet's hub lock (orders
// published changes), then rt (heartbeat data).
type nodeState struct {
	mu sync.Mutex
	// node is the durable part, immutable once stored here; changes swap
	// in a new copy under the hub lock.
	node atomic.Pointer[fleetv1.Node]
	// reach is the reachability, written under the hub lock.
	reach atomic.Int32
	// repeats count recent events per GPU index, under mu.
	repeats map[uint32]*policy.Repeats
	// open holds the node's unfinished commands, oldest first, under mu.
	open []*fleetv1.Command
	// wake is closed and replaced when a command is queued, under mu.
	wake chan struct{}
	// stopping is set while a provider stops the node's instance, under mu.
	stopping bool
	// unprovision is set while the instance of a provision that timed out
	// still has to be stopped, under mu; failed stops are retried.
	unprovision bool
	// pending counts the PENDING commands in open, for heartbeat answers
	// that must not wait for mu; delivered counts the DELIVERED ones, so
	// the monitor locks only nodes that may need a redelivery.
	pending   atomic.Int32
	delivered atomic.Int32
	// removed is set, under the hub lock, when the node leaves the fleet;
	// a caller that found the node before then must not change it.
	removed atomic.Bool
	// terminateQueued is when a TERMINATE command was last queued, under
	// mu, so a failing agent is not asked again every second.
	terminateQueued time.Time
	// redelivered counts how often each open command was handed out again
	// for want of an answer, under mu; nil until the first time.
	redelivered map[string]int

	// Heartbeat data, kept compact: a hundred thousand nodes of it must
	// fit in memory next to everything else.
	rt            sync.Mutex
	lastHeartbeat time.Time // zero until heard from since start
	lastSaved     time.Time // last heartbeat time written to the store
	storedSeen    time.Time // last seen time read from the store at start
	samples       []sample
	metrics       []byte // the latest snapshot, an encoded ReportHealthRequest
	history       []gpuHistory
	dropped       uint64
}

func newNodeState(n *fleetv1.Node) *nodeState {
	ns := &nodeState{
		repeats: make(map[uint32]*policy.Repeats),
		wake:    make(chan struct{}),
	}
	ns.node.Store(n)
	ns.reach.Store(int32(fleetv1.Reachability_REACHABILITY_UNKNOWN))
	return ns
}

// recount refreshes pending and delivered from open. The caller holds mu.
func (ns *nodeState) recount() {
	pending, delivered := 0, 0
	for _, c := range ns.open {
		switch c.GetStatus() {
		case fleetv1.CommandStatus_COMMAND_STATUS_PENDING:
			pending++
		case fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED:
			delivered++
		}
	}
	ns.pending.Store(int32(pending))
	ns.delivered.Store(int32(delivered))
}

func (ns *nodeState) reachability() fleetv1.Reachability {
	return fleetv1.Reachability(ns.reach.Load())
}

// Fleet is the control plane's state: every node in memory, backed by the
// store, with changes published to watchers.
type Fleet struct {
	cfg    Config
	store  Store
	policy *policy.Policy
	clock  clockwork.Clock
	log    *slog.Logger

	mu       sync.RWMutex // guards nodes and creating (the maps, not the nodes)
	nodes    map[string]*nodeState
	creating map[string]*nodeState // nodes whose first registration is under way
	// earlyFailures holds provision failures reported before the node's
	// record was written, by node id.
	earlyFailures map[string]string

	hub       *hub
	totals    *fleetv1.FleetSummary // guarded by the hub lock
	ids       *counter
	breaker   *breaker
	providers *providers
	started   time.Time

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// FleetOptions configures NewFleet.
type FleetOptions struct {
	Config    Config
	Store     Store
	Policy    *policy.Policy
	Clock     clockwork.Clock
	Logger    *slog.Logger
	Providers []Provider
}

// NewFleet loads the fleet from the store. Every node starts as not yet heard
// from; its last-seen time is kept for operators.
func NewFleet(ctx context.Context, o FleetOptions) (*Fleet, error) {
	if o.Store == nil {
		return nil, errors.New("new fleet: store is required")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("new fleet: %w", err)
	}
	if o.Policy == nil {
		o.Policy = policy.Default()
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := o.Store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("new fleet: %w", err)
	}
	f := &Fleet{
		cfg:     o.Config,
		store:   o.Store,
		policy:  o.Policy,
		clock:   o.Clock,
		log:     o.Logger,
		nodes:   make(map[string]*nodeState, len(st.Nodes)),
		totals:  &fleetv1.FleetSummary{},
		started: o.Clock.Now(),
		closing: make(chan struct{}),
	}
	f.providers = newProviders(o.Providers)
	f.breaker = newBreaker(o.Config.AutoCordonEnabled(), o.Config.AutoCordon.MaxFraction, o.Config.AutoCordon.Window.Duration)
	f.ids = newCounter("ids", st.Counters["ids"], o.Store)
	// Every node's reachability reset with the restart: a watcher resuming
	// from any revision of the previous run must get a snapshot, so this
	// run starts past them all. That is past the stored ceiling, and a
	// block beyond it for the revisions a run hands out while the store
	// cannot record a new ceiling (counter.force).
	// A fresh store has no ceiling and counts from 1.
	var firstRev uint64
	if ceiling, ok := st.Counters["revision"]; ok {
		firstRev = ceiling + counterBlock
	}
	revs := newCounter("revision", firstRev, o.Store)
	if _, err := revs.next(ctx); err != nil {
		return nil, fmt.Errorf("new fleet: %w", err)
	}
	f.hub = newHub(revs, o.Config.WatchBuffer, o.Config.WatchReplay)
	for _, n := range st.Nodes {
		ns := newNodeState(n)
		ns.storedSeen = st.LastSeen[n.GetNodeId()]
		if !ns.storedSeen.IsZero() {
			n.LastHeartbeatAt = timestamppb.New(ns.storedSeen)
		}
		// A timed-out provision whose instance was still being stopped is
		// stopped again.
		ns.unprovision = n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED &&
			n.GetInstanceId() != "" && strings.Contains(n.GetLifecycleReason(), stoppingInstance)
		f.nodes[n.GetNodeId()] = ns
		count(f.totals, n, ns.reachability(), 1)
	}
	open, err := o.Store.OpenCommands(ctx)
	if err != nil {
		return nil, fmt.Errorf("new fleet: %w", err)
	}
	for _, c := range open {
		if ns := f.nodes[c.GetNodeId()]; ns != nil {
			ns.open = append(ns.open, c)
			ns.recount()
		}
	}
	return f, nil
}

// Start runs the background loops until ctx ends or Close is called.
func (f *Fleet) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	f.wg.Add(3)
	go func() { defer f.wg.Done(); <-f.closing; cancel() }()
	go func() { defer f.wg.Done(); f.hub.run(ctx, f.clock, f) }()
	go func() { defer f.wg.Done(); f.monitor(ctx) }()
}

// stopServing ends long polls and watch streams so the server can stop.
func (f *Fleet) stopServing() {
	f.closeOnce.Do(func() { close(f.closing) })
	f.hub.closeAll()
}

// stopping reports whether the fleet is shutting down.
func (f *Fleet) stopping() bool {
	select {
	case <-f.closing:
		return true
	default:
		return false
	}
}

// Close stops the loops and saves last-seen times.
func (f *Fleet) Close() {
	f.stopServing()
	f.wg.Wait()
	f.saveLastSeen(context.Background())
}

func (f *Fleet) get(id string) *nodeState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.nodes[id]
}

func (f *Fleet) mustGet(id string) (*nodeState, error) {
	ns := f.get(id)
	if ns == nil {
		return nil, apierr.NodeNotFound(id)
	}
	return ns, nil
}

// all returns every node, in no particular order.
func (f *Fleet) all() []*nodeState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*nodeState, 0, len(f.nodes))
	for _, ns := range f.nodes {
		out = append(out, ns)
	}
	return out
}

// Len is the number of nodes.
func (f *Fleet) Len() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.nodes)
}

// change is one durable change of one node, built while its lock is held.
type change struct {
	node     *fleetv1.Node // the node's new durable state; nil if unchanged
	events   []*fleetv1.HealthEvent
	commands []*fleetv1.Command
	insert   bool // the node is new: add it to the fleet
	remove   bool // the node leaves the fleet with everything stored for it
	// reach, when set, is the node's reachability after the change.
	reach fleetv1.Reachability
}

func (c *change) empty() bool {
	return c.node == nil && len(c.events) == 0 && len(c.commands) == 0 && !c.remove && c.reach == 0
}

// commit writes c to the store (synced), then installs and publishes it.
// The caller holds ns.mu.
func (f *Fleet) commit(ctx context.Context, ns *nodeState, c *change) error {
	if c.empty() {
		return nil
	}
	id := c.node.GetNodeId()
	if id == "" {
		id = ns.node.Load().GetNodeId()
	}
	for _, e := range c.events {
		if e.GetId() == "" {
			eid, err := f.newID(ctx, "ev")
			if err != nil {
				return err
			}
			e.Id = eid
		}
		e.NodeId = id
	}
	w := store.Write{Events: c.events, Commands: c.commands}
	if c.node != nil {
		w.Nodes = []*fleetv1.Node{durable(c.node)}
	}
	if c.remove {
		w.DeleteNodes = []string{id}
	}
	if err := f.store.Apply(ctx, w); err != nil {
		f.log.Error("store write failed", "node", id, "err", err)
		return apierr.NotSaved()
	}
	f.hub.publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
		if c.insert {
			f.mu.Lock()
			f.nodes[c.node.GetNodeId()] = ns
			f.mu.Unlock()
		}
		if c.remove {
			f.mu.Lock()
			delete(f.nodes, id)
			f.mu.Unlock()
			ns.removed.Store(true)
			f.swap(ns, nil, 0, true)
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeRemoved{NodeRemoved: &controlplanev1.NodeRemoved{NodeId: id}}})
			return
		}
		for _, e := range c.events {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_HealthEvent{HealthEvent: e}})
		}
		for _, cmd := range c.commands {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_Command{Command: cmd}})
		}
		if c.node != nil || c.reach != 0 {
			next, reach := c.node, c.reach
			if next == nil {
				next = ns.node.Load()
			}
			if reach == 0 {
				reach = ns.reachability()
			}
			f.swap(ns, next, reach, !c.insert)
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: f.view(ns)}})
		}
	})
	return nil
}

// durable strips what lives only in memory before a node is stored.
func durable(n *fleetv1.Node) *fleetv1.Node {
	d := proto.CloneOf(n)
	d.Reachability = fleetv1.Reachability_REACHABILITY_UNSPECIFIED
	d.LastHeartbeatAt = nil
	d.Samples = nil
	d.DroppedEvents = 0
	for _, g := range d.Gpus {
		g.Metrics = nil
	}
	return d
}

// view is the node as operators see it: durable state plus heartbeat data.
func (f *Fleet) view(ns *nodeState) *fleetv1.Node {
	return ns.viewOf(ns.node.Load(), ns.reachability(), false)
}

// viewOf builds the operator's view from a given durable state and
// reachability (a snapshot's), adding the latest heartbeat data and, with
// withMetrics, each GPU's latest full metrics.
func (ns *nodeState) viewOf(durable *fleetv1.Node, reach fleetv1.Reachability, withMetrics bool) *fleetv1.Node {
	var n *fleetv1.Node
	if withMetrics {
		// Metrics go into the GPUs, which must be copies of their own.
		n = proto.CloneOf(durable)
	} else {
		n = shallowCopy(durable)
	}
	n.Reachability = reach
	ns.rt.Lock()
	defer ns.rt.Unlock()
	if !ns.lastHeartbeat.IsZero() {
		n.LastHeartbeatAt = timestamppb.New(ns.lastHeartbeat)
	}
	n.Samples = protoSamples(ns.samples)
	n.DroppedEvents = ns.dropped
	if withMetrics && ns.metrics != nil {
		snap := &nodev1.ReportHealthRequest{}
		if proto.Unmarshal(ns.metrics, snap) == nil {
			for _, m := range snap.GetMetrics() {
				for _, g := range n.Gpus {
					if g.GetIndex() == m.GetGpuIndex() && !g.GetLost() {
						g.Metrics = m
					}
				}
			}
		}
	}
	return n
}

// shallowCopy copies a node's fields but shares its GPUs, labels and
// timestamps, which are never changed in place once stored: every change
// clones the node first. A snapshot of a hundred thousand nodes thus
// copies no GPUs. TestShallowCopyCopiesEveryField keeps this list whole.
func shallowCopy(src *fleetv1.Node) *fleetv1.Node {
	return &fleetv1.Node{
		NodeId:             src.NodeId,
		Hostname:           src.Hostname,
		Labels:             src.Labels,
		Lifecycle:          src.Lifecycle,
		LifecycleReason:    src.LifecycleReason,
		LifecycleChangedAt: src.LifecycleChangedAt,
		CordonedByPolicy:   src.CordonedByPolicy,
		Health:             src.Health,
		HealthCause:        src.HealthCause,
		Remedy:             src.Remedy,
		Reachability:       src.Reachability,
		LastHeartbeatAt:    src.LastHeartbeatAt,
		RegisteredAt:       src.RegisteredAt,
		Gpus:               src.Gpus,
		DriverVersion:      src.DriverVersion,
		CudaVersion:        src.CudaVersion,
		AgentVersion:       src.AgentVersion,
		Simulated:          src.Simulated,
		Provider:           src.Provider,
		InstanceId:         src.InstanceId,
		Drain:              src.Drain,
		Samples:            src.Samples,
		DroppedEvents:      src.DroppedEvents,
		BootId:             src.BootId,
	}
}

// newID hands out a command or event id.
func (f *Fleet) newID(ctx context.Context, prefix string) (string, error) {
	seq, err := f.ids.next(ctx)
	if err != nil {
		f.log.Error("id allocation failed", "err", err)
		return "", apierr.NotSaved()
	}
	return store.FormatSeq(prefix, seq), nil
}

// counter hands out increasing numbers that stay increasing across restarts:
// it reserves blocks by writing a ceiling to the store, and after a restart
// starts above the last ceiling.
type counter struct {
	name  string
	store Store

	mu      sync.Mutex
	value   uint64
	ceiling uint64
}

const counterBlock = 100000

func newCounter(name string, ceiling uint64, st Store) *counter {
	return &counter{name: name, store: st, value: ceiling, ceiling: ceiling}
}

func (c *counter) next(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.value >= c.ceiling {
		ceil := c.value + counterBlock
		if err := c.store.Apply(ctx, store.Write{Counters: map[string]uint64{c.name: ceil}}); err != nil {
			return 0, fmt.Errorf("reserve %s: %w", c.name, err)
		}
		c.ceiling = ceil
	}
	c.value++
	return c.value, nil
}

func (c *counter) current() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.value
}

// summary returns the fleet's totals.
func (f *Fleet) summary() *fleetv1.FleetSummary {
	f.hub.mu.Lock()
	defer f.hub.mu.Unlock()
	return proto.CloneOf(f.totals)
}

// count adds (sign 1) or takes away (sign -1) one node's share of the
// fleet's totals. The totals are kept as nodes change, under the hub lock,
// so that reading them never scans the fleet.
func count(s *fleetv1.FleetSummary, n *fleetv1.Node, reach fleetv1.Reachability, sign int32) {
	d := uint32(sign) // adding uint32(-1) subtracts one
	bump := func(p *uint32) { *p += d }
	bump(&s.Nodes)
	switch n.GetLifecycle() {
	case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING:
		bump(&s.Provisioning)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE:
		bump(&s.Active)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED:
		bump(&s.Cordoned)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING:
		bump(&s.Draining)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED:
		bump(&s.Drained)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING:
		bump(&s.Terminating)
	case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED:
		// Terminated nodes count only as terminated.
		bump(&s.Terminated)
		return
	case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED:
		bump(&s.ProvisionFailed)
	}
	switch n.GetHealth() {
	case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
		bump(&s.Healthy)
	case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		bump(&s.Degraded)
	case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
		bump(&s.Unhealthy)
	default:
		bump(&s.HealthUnknown)
	}
	switch reach {
	case fleetv1.Reachability_REACHABILITY_ONLINE:
		bump(&s.Online)
	case fleetv1.Reachability_REACHABILITY_STALE:
		bump(&s.Stale)
	case fleetv1.Reachability_REACHABILITY_OFFLINE:
		bump(&s.Offline)
	default:
		bump(&s.ReachabilityUnknown)
	}
	for _, g := range n.GetGpus() {
		bump(&s.Gpus)
		switch g.GetHealth() {
		case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
			bump(&s.GpusHealthy)
		case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
			bump(&s.GpusDegraded)
		case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
			bump(&s.GpusUnhealthy)
		}
	}
}

// swap installs a node's new durable state and reachability and keeps the
// totals right. The caller holds the hub lock; nil next removes the node,
// and a node not yet in the fleet has no previous share.
func (f *Fleet) swap(ns *nodeState, next *fleetv1.Node, reach fleetv1.Reachability, inFleet bool) {
	if inFleet {
		count(f.totals, ns.node.Load(), ns.reachability(), -1)
	}
	if next == nil {
		return
	}
	count(f.totals, next, reach, 1)
	ns.node.Store(next)
	ns.reach.Store(int32(reach))
}

// saveLastSeen writes the heartbeat times that changed since the last save.
func (f *Fleet) saveLastSeen(ctx context.Context) {
	seen := make(map[string]time.Time)
	var saved []*nodeState
	for _, ns := range f.all() {
		ns.rt.Lock()
		if !ns.lastHeartbeat.IsZero() && ns.lastHeartbeat != ns.lastSaved {
			seen[ns.node.Load().GetNodeId()] = ns.lastHeartbeat
			saved = append(saved, ns)
		}
		ns.rt.Unlock()
	}
	if err := f.store.SaveLastSeen(ctx, seen); err != nil {
		f.log.Warn("saving last-seen times failed; will retry", "err", err)
		return
	}
	for _, ns := range saved {
		ns.rt.Lock()
		ns.lastSaved = seen[ns.node.Load().GetNodeId()]
		ns.rt.Unlock()
	}
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// force takes the next value without reserving a block; used only when the
// store cannot record a new ceiling, so the change can still go out.
func (c *counter) force() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.value++
	return c.value
}
