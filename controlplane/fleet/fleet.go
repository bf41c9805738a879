// Package fleet is the only writer of the fleet's state: every node in
// memory, backed by the store, with each change published to the watch hub.
// It owns the node record and its bookkeeping, the lifecycle transitions,
// the command outbox, registration and inventory reconciliation, health
// judgement through the policy, heartbeats and reachability, provisioning
// and termination through providers, the monitor's periodic pass, the
// auto-cordon breaker, the queries operators make, and the audit log's
// entries, written as changes are.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/watch"
	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
)

// Config is what the fleet needs of the control plane's configuration.
type Config struct {
	// HeartbeatInterval, HealthReportInterval and CommandPollTimeout are
	// handed to agents when they register.
	HeartbeatInterval    time.Duration
	HealthReportInterval time.Duration
	CommandPollTimeout   time.Duration
	// CommandDelivery is how agents fetch their commands.
	CommandDelivery nodev1.CommandDelivery
	// StaleAfter and OfflineAfter are the heartbeat ages at which a node
	// turns STALE and OFFLINE.
	StaleAfter   time.Duration
	OfflineAfter time.Duration
	// ProvisionTimeout is how long a provisioned node may take to register.
	ProvisionTimeout time.Duration
	// TerminatedRetention is how long terminated nodes stay listed.
	TerminatedRetention time.Duration
	// AutoCordon cordons UNHEALTHY nodes automatically, at most
	// AutoCordonMaxFraction of the fleet within AutoCordonWindow.
	AutoCordon            bool
	AutoCordonMaxFraction float64
	AutoCordonWindow      time.Duration
	// WatchBuffer and WatchReplay size each watcher's queue and the replay
	// ring.
	WatchBuffer int
	WatchReplay int
}

func (c *Config) check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"heartbeat interval", c.HeartbeatInterval}, {"health report interval", c.HealthReportInterval},
		{"command poll timeout", c.CommandPollTimeout}, {"stale after", c.StaleAfter}, {"offline after", c.OfflineAfter},
		{"provision timeout", c.ProvisionTimeout}, {"terminated retention", c.TerminatedRetention},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive", d.name)
		}
	}
	if c.AutoCordon && (c.AutoCordonMaxFraction <= 0 || c.AutoCordonMaxFraction > 1 || c.AutoCordonWindow <= 0) {
		return errors.New("auto-cordon needs a fraction within (0, 1] and a positive window")
	}
	if c.WatchBuffer < 1 || c.WatchReplay < 1 {
		return errors.New("watch buffer and replay must be at least 1")
	}
	return nil
}

// Fleet is the control plane's state: every node in memory, backed by the
// store, with changes published to watchers.
type Fleet struct {
	cfg       Config
	store     store.Store
	policy    *policy.Policy
	clock     clockwork.Clock
	log       *slog.Logger
	hub       *watch.Hub
	ids       *counter
	revs      *counter
	breaker   *breaker
	providers *provider.Registry
	userData  provider.UserDataFunc
	observer  Observer
	started   time.Time

	mu       sync.RWMutex // guards nodes, byID, creating and launching
	nodes    map[string]*nodeState
	byID     idIndex               // nodes' ids in order, for ListNodes pages
	creating map[string]*nodeState // nodes whose first registration is under way
	// launching are the nodes whose provider has yet to answer whether it
	// started them.
	launching map[string]bool
	// lookedUp is when each failed node's instance was last looked for
	// in its provider's list, so that a list slow to show it is asked
	// again now and then, not at every monitor pass.
	lookedUp map[string]time.Time

	// totals are the fleet's counts, kept as nodes change (under the hub
	// lock, then totalsMu) so that reading them never scans the fleet.
	totalsMu sync.Mutex
	totals   *fleetv1.FleetSummary
	// faults counts the active GPU faults by remedy, kept as the totals
	// are.
	faults map[fleetv1.Remedy]uint32

	// wheel holds each node until the monitor is next due to look at it;
	// passing lets one monitor pass run at a time.
	wheel   *wheel
	passing sync.Mutex

	// onRemove is told of each node removed from the fleet and the store.
	onRemove []func(nodeID ...string)

	// reconciled is closed once Reconcile has compared the records with
	// what the providers run; launches wait for it.
	reconciled    chan struct{}
	reconcileOnce sync.Once

	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// Options configures New.
type Options struct {
	Config Config
	// Store is where the fleet's durable state lives. Required.
	Store store.Store
	// Policy judges health events; nil means the built-in policy.
	Policy *policy.Policy
	// Clock drives every interval and timestamp; nil means the real clock.
	Clock clockwork.Clock
	// Logger receives the fleet's logs; nil discards them.
	Logger *slog.Logger
	// Providers start and stop nodes for ProvisionNodes and TerminateNode.
	Providers *provider.Registry
	// UserData renders the cloud-init user data of a node a provider
	// launches from an image; nil where no bootstrap is configured.
	UserData provider.UserDataFunc
	// State is what the store held at start, when the caller read it
	// already; nil reads it from Store.
	State *store.State
	// Observer hears what the fleet saved; nil tells nobody.
	Observer Observer
	// ReconcileAtStart holds launches until Reconcile has run, so that
	// nothing is started while the records are compared with what the
	// providers run.
	ReconcileAtStart bool
}

// New loads the fleet from the store. Every node starts as not yet heard
// from; its last-seen time is kept for operators.
func New(ctx context.Context, o Options) (*Fleet, error) {
	if o.Store == nil {
		return nil, errors.New("new fleet: store is required")
	}
	if err := o.Config.check(); err != nil {
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
	if o.Providers == nil {
		o.Providers = provider.NewRegistry()
	}
	if o.Observer == nil {
		o.Observer = noObserver{}
	}
	st := o.State
	var err error
	if st == nil {
		if st, err = o.Store.Load(ctx); err != nil {
			return nil, fmt.Errorf("new fleet: %w", err)
		}
	}
	f := &Fleet{
		cfg:        o.Config,
		store:      o.Store,
		policy:     o.Policy,
		clock:      o.Clock,
		log:        o.Logger,
		providers:  o.Providers,
		userData:   o.UserData,
		observer:   o.Observer,
		nodes:      make(map[string]*nodeState, len(st.Nodes)),
		totals:     &fleetv1.FleetSummary{},
		faults:     make(map[fleetv1.Remedy]uint32),
		wheel:      newWheel(),
		started:    o.Clock.Now(),
		closing:    make(chan struct{}),
		reconciled: make(chan struct{}),
	}
	if !o.ReconcileAtStart {
		f.reconcileOnce.Do(func() { close(f.reconciled) })
	}
	f.breaker = newBreaker(o.Config.AutoCordon, o.Config.AutoCordonMaxFraction, o.Config.AutoCordonWindow)
	// Ids are never handed out past the stored ceiling.
	f.ids = loadCounter("ids", st.Counters, 0, o.Store)
	// Every node's reachability reset with the restart: a watcher resuming
	// from any revision of the previous run must get a snapshot, so this
	// run starts past them all. After a clean close, that is right after
	// the last one, which Close sealed; after a crash, past the stored
	// ceiling and a block beyond it for the revisions a run hands out
	// while the store cannot record a new ceiling (counter.force), of
	// which nothing durable tells how many there were.
	revs := loadCounter("revision", st.Counters, counterBlock, o.Store)
	f.revs = revs
	if _, err := revs.next(ctx); err != nil {
		return nil, fmt.Errorf("new fleet: %w", err)
	}
	// A snapshot taken before the next event carries the events the
	// previous runs recorded, as ListEvents does.
	recent, err := o.Store.Events(ctx, store.EventQuery{Limit: watch.RecentEventsKept})
	if err != nil {
		return nil, fmt.Errorf("new fleet: recent events: %w", err)
	}
	f.hub, err = watch.New(watch.Options{
		Fleet: hubView{f},
		// A failed ceiling write leaves the counter below its ceiling; it
		// is retried on the next revision, and the change still goes out.
		Next: func() uint64 {
			rev, err := revs.next(context.Background())
			if err != nil {
				rev = revs.force()
			}
			return rev
		},
		Current:      revs.current(),
		RecentEvents: recent,
		Buffer:       o.Config.WatchBuffer,
		Replay:       o.Config.WatchReplay,
		Clock:        o.Clock,
		Logger:       o.Logger,
		Resynced:     o.Observer.Resynced,
	})
	if err != nil {
		return nil, fmt.Errorf("new fleet: %w", err)
	}
	for _, n := range st.Nodes {
		ns := newNodeState(n)
		if seen := st.LastSeen[n.GetNodeId()]; !seen.IsZero() {
			n.LastHeartbeatAt = timestamppb.New(seen)
		}
		// A timed-out provision whose instance was still being stopped is
		// stopped again.
		ns.book.unprovision = n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED &&
			strings.Contains(n.GetLifecycleReason(), stoppingInstance)
		f.nodes[n.GetNodeId()] = ns
		f.wheel.schedule(ns, f.started)
		count(f.totals, n, ns.reachability(), 1)
		countFaults(f.faults, n, 1)
	}
	f.byID.load(f.nodes)
	f.breaker.restore(st.Breaker, f.activeFleetSize())
	open, err := o.Store.OpenCommands(ctx)
	if err != nil {
		return nil, fmt.Errorf("new fleet: %w", err)
	}
	for _, c := range open {
		if ns := f.nodes[c.GetNodeId()]; ns != nil {
			ns.book.open = append(ns.book.open, c)
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
	go func() { defer f.wg.Done(); f.hub.Run(ctx) }()
	go func() { defer f.wg.Done(); f.monitor(ctx) }()
}

// StopServing ends long polls and watch streams so the server can stop.
func (f *Fleet) StopServing() {
	f.closeOnce.Do(func() { close(f.closing) })
	f.hub.Close()
}

// Stopping reports whether the fleet is shutting down.
func (f *Fleet) Stopping() bool {
	select {
	case <-f.closing:
		return true
	default:
		return false
	}
}

// Close stops the loops, saves last-seen times and seals the counters,
// so the next run's revisions and ids continue right after this run's.
func (f *Fleet) Close() {
	f.StopServing()
	f.wg.Wait()
	f.saveLastSeen(context.Background())
	// The hub is closed: a revision handed out from here on reaches no
	// watcher, so the next run may hand it out again.
	for _, c := range []*counter{f.revs, f.ids} {
		if err := c.seal(context.Background()); err != nil {
			f.log.Warn("sealing a counter failed; the next run skips past its block", "err", err)
		}
	}
}

// Watch streams the fleet's changes to one watcher: a WatchFleet stream,
// which is sent snapshot chunks encoded once and shared with the other
// streams, or a watch.SendFunc in this process; see watch.Hub.Serve.
func (f *Fleet) Watch(ctx context.Context, since uint64, stream watch.Stream) error {
	return f.hub.Serve(ctx, since, stream)
}

func (f *Fleet) get(id string) *nodeState {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.nodes[id]
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

// hubView is the fleet as the watch hub reads it.
type hubView struct{ f *Fleet }

// Entries is every node's state, for the hub's snapshots; the hub holds its
// lock.
func (v hubView) Entries() []watch.Entry {
	f := v.f
	nodes := f.all()
	out := make([]watch.Entry, 0, len(nodes))
	for _, ns := range nodes {
		out = append(out, watch.Entry{Node: ns, State: ns.node.Load(), Reach: ns.reachability()})
	}
	return out
}

// Summary is the fleet's totals.
func (v hubView) Summary() *fleetv1.FleetSummary { return v.f.summary() }

// Breaker is the auto-cordon breaker's status.
func (v hubView) Breaker() *fleetv1.BreakerStatus { return v.f.breaker.status(v.f.clock.Now()) }

// summary returns the fleet's totals.
func (f *Fleet) summary() *fleetv1.FleetSummary {
	f.totalsMu.Lock()
	defer f.totalsMu.Unlock()
	return proto.CloneOf(f.totals)
}

// saveLastSeen writes the heartbeat times that changed since the last save.
func (f *Fleet) saveLastSeen(ctx context.Context) {
	seen := make(map[string]time.Time)
	var saved []*nodeState
	for _, ns := range f.all() {
		ns.live.mu.Lock()
		if !ns.live.lastHeartbeat.IsZero() && ns.live.lastHeartbeat != ns.live.lastSaved {
			seen[ns.id()] = ns.live.lastHeartbeat
			saved = append(saved, ns)
		}
		ns.live.mu.Unlock()
	}
	if err := f.store.SaveLastSeen(ctx, seen); err != nil {
		f.log.Warn("saving last-seen times failed; will retry", "err", err)
		return
	}
	for _, ns := range saved {
		ns.live.mu.Lock()
		ns.live.lastSaved = seen[ns.id()]
		ns.live.mu.Unlock()
	}
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// mustGet finds the node or says there is none.
func (f *Fleet) mustGet(id string) (*nodeState, error) {
	ns := f.get(id)
	if ns == nil {
		return nil, apierr.NodeNotFound(id)
	}
	return ns, nil
}

// Has reports whether the fleet knows node id.
func (f *Fleet) Has(id string) bool { return f.get(id) != nil }

// OnRemove has fn told of each node the fleet removes, once the store has
// forgotten it (and, with it, its agent's identity). Call it before Start.
func (f *Fleet) OnRemove(fn func(nodeID ...string)) { f.onRemove = append(f.onRemove, fn) }
