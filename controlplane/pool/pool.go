// Package pool keeps named pools of nodes at their wanted size: it holds
// each pool's spec and wanted size (from the configuration file, or made
// through the API, and saved in the store), and a reconciler that, at
// every pass, provisions the nodes a pool lacks through its providers in
// order, replaces nodes that stayed UNHEALTHY or OFFLINE past the pool's
// grace (drained first, at most max_surge at a time), removes nodes beyond
// the wanted size (idle ones first, drained first), lets autoscaling move
// the wanted size, and records every decision in the pool, the audit log
// and the fleet's stream. While the auto-cordon breaker is open a pool
// starts and stops nothing: a fleet in trouble is not churned.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/controlplane/pool/autoscale"
	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// Fleet is what pools need of the fleet.
type Fleet interface {
	// PoolNodes returns the nodes of every pool, by pool name.
	PoolNodes() map[string][]*fleetv1.Node
	// Launch provisions nodes for a pool.
	Launch(ctx context.Context, l fleet.Launch) ([]*fleetv1.Node, error)
	// Terminate drains a node, then stops it.
	Terminate(ctx context.Context, id, reason string, force bool, drainTimeout time.Duration) (*fleetv1.Node, error)
	// BreakerOpen reports whether the auto-cordon breaker is open.
	BreakerOpen() bool
	// RecordAudit writes an audit entry.
	RecordAudit(ctx context.Context, e *store.AuditEntry) error
	// PublishPool and RemovePool tell watchers of a pool's change.
	PublishPool(p *fleetv1.Pool)
	RemovePool(name string)
}

// Queue counts the nodes the Slurm jobs pending for a partition ask for.
type Queue interface {
	Pending(ctx context.Context, partition string) (nodes, jobs int, err error)
}

// Options configures New.
type Options struct {
	Fleet Fleet
	Store store.Store
	// Providers are the names of the providers the control plane offers.
	Providers []string
	// Config are the pools the configuration file defines, checked.
	Config []*fleetv1.Pool
	// Stored are the pools the store held at start.
	Stored []*fleetv1.Pool
	// Queue reads Slurm's queue for queue-driven autoscaling; nil where
	// there is no Slurm.
	Queue Queue
	// Interval is the time between passes; 0 means 10 seconds.
	Interval time.Duration
	Clock    clockwork.Clock
	Logger   *slog.Logger
}

// Pools holds the pools and reconciles them.
type Pools struct {
	fleet     Fleet
	store     store.Store
	providers []string
	queue     Queue
	interval  time.Duration
	clock     clockwork.Clock
	log       *slog.Logger

	// passMu serialises passes: a pass reads the nodes after the one
	// before it has acted on them.
	passMu sync.Mutex
	// mu guards pools and each pool's durable record, and is held while
	// a pool is sent to watchers, so that they get its versions in order
	// and nothing of it after its removal.
	mu    sync.Mutex
	pools map[string]*poolState
	wg    sync.WaitGroup
	// kick asks Run for a pass now: a pool was scaled or changed.
	kick chan struct{}
}

// poolState is one pool: its durable record and what the reconciler keeps
// of it in memory.
type poolState struct {
	p *fleetv1.Pool // durable part; replaced, never changed in place
	// bad holds since when each node of the pool has been UNHEALTHY or
	// OFFLINE, as the passes saw it; a restart starts the grace again.
	bad  map[string]time.Time
	util autoscale.Window
	// launching is set while a launch for the pool is under way; only
	// that launch clears it.
	launching bool
	// launches counts the launches that ended: a pass whose nodes were
	// read before one ended does not see what it started, and launches
	// nothing.
	launches uint64
	// retryAt holds the pool's launches back after one failed.
	retryAt time.Time
	backoff time.Duration
	// held is the hold decision last recorded, so it is not repeated.
	held string
	// shown is the pool as last published, status included.
	shown *fleetv1.Pool
}

// New loads the pools: those of the configuration file, with the wanted
// size the store kept for them, and those made through the API, and sends
// them to watchers. A stored pool that the configuration file used to
// define, and no longer does, is dropped.
func New(ctx context.Context, o Options) (*Pools, error) {
	if o.Fleet == nil || o.Store == nil {
		return nil, errors.New("pools need a fleet and a store")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	ps := &Pools{
		fleet: o.Fleet, store: o.Store, providers: o.Providers, queue: o.Queue,
		interval: o.Interval, clock: o.Clock, log: o.Logger, pools: make(map[string]*poolState),
		kick: make(chan struct{}, 1),
	}
	stored := make(map[string]*fleetv1.Pool, len(o.Stored))
	for _, p := range o.Stored {
		stored[p.GetName()] = p
	}
	var w store.Write
	for _, c := range o.Config {
		p := proto.CloneOf(c)
		p.FromConfig = true
		p.Wanted, p.WantedBy = clamp(p.GetSpec().GetMin(), p.GetSpec()), ByReconciler
		if old := stored[p.GetName()]; old != nil {
			p.Wanted, p.WantedBy, p.WantedChangedAt = old.GetWanted(), old.GetWantedBy(), old.GetWantedChangedAt()
			p.Decisions = old.GetDecisions()
			if w := clamp(old.GetWanted(), p.GetSpec()); w != p.Wanted {
				// The file's min or max moved it.
				p.Wanted, p.WantedBy, p.WantedChangedAt = w, ByReconciler, timestamppb.New(o.Clock.Now())
			}
		}
		if !proto.Equal(p, stored[p.GetName()]) {
			w.Pools = append(w.Pools, p)
		}
		delete(stored, p.GetName())
		ps.pools[p.GetName()] = newState(p)
	}
	for name, p := range stored {
		if p.GetFromConfig() {
			w.DeletePools = append(w.DeletePools, name)
			ps.log.Info("pool no longer in the configuration file; its nodes stay", "pool", name)
			continue
		}
		ps.pools[name] = newState(p)
	}
	if err := o.Store.Apply(ctx, w); err != nil {
		return nil, fmt.Errorf("save pools: %w", err)
	}
	nodes := o.Fleet.PoolNodes()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, st := range ps.pools {
		if err := ps.check(st.p.GetName(), st.p.GetSpec()); err != nil {
			ps.log.Warn("pool refers to what this control plane lacks; it starts nothing until fixed", "pool", st.p.GetName(), "err", err)
		}
		// Watchers see the pools before the first pass, which waits for
		// the providers' lists.
		ps.publish(st, nodes[st.p.GetName()])
	}
	return ps, nil
}

func newState(p *fleetv1.Pool) *poolState {
	return &poolState{p: p, bad: make(map[string]time.Time)}
}

// clamp bounds a size by a spec's min and max.
func clamp(n uint32, s *fleetv1.PoolSpec) uint32 {
	return min(max(n, s.GetMin()), max(s.GetMax(), s.GetMin()))
}

// Run reconciles every pool each interval until ctx ends, then waits for
// the launches under way.
func (ps *Pools) Run(ctx context.Context) {
	defer ps.wg.Wait()
	t := ps.clock.NewTicker(ps.interval)
	defer t.Stop()
	for {
		ps.Pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		case <-ps.kick:
		}
	}
}

// Wait waits for the launches under way.
func (ps *Pools) Wait() { ps.wg.Wait() }

// List returns every pool, by name, with its status.
func (ps *Pools) List() []*fleetv1.Pool {
	nodes := ps.fleet.PoolNodes()
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]*fleetv1.Pool, 0, len(ps.pools))
	for _, st := range ps.pools {
		out = append(out, ps.view(st, nodes[st.p.GetName()]))
	}
	slices.SortFunc(out, func(a, b *fleetv1.Pool) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// view is a pool with the status of its nodes. ps.mu is held.
func (ps *Pools) view(st *poolState, nodes []*fleetv1.Node) *fleetv1.Pool {
	v := proto.CloneOf(st.p)
	v.Status = Status(nodes)
	return v
}

// Scale sets a pool's wanted size.
func (ps *Pools) Scale(ctx context.Context, name string, wanted uint32, reason, by string) (*fleetv1.Pool, error) {
	nodes := ps.fleet.PoolNodes()[name]
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st := ps.pools[name]
	if st == nil {
		return nil, status.Errorf(codes.NotFound, "name: no pool %q", name)
	}
	spec := st.p.GetSpec()
	if wanted < spec.GetMin() || wanted > spec.GetMax() {
		return nil, apierr.Invalid("wanted", "%d is outside the pool's min %d and max %d", wanted, spec.GetMin(), spec.GetMax())
	}
	from := st.p.GetWanted()
	if from == wanted {
		return ps.view(st, nodes), nil
	}
	why := fmt.Sprintf("scaled from %d to %d", from, wanted)
	if reason != "" {
		why += ": " + reason
	}
	if err := ps.setWanted(ctx, st, wanted, decision(ps.clock.Now(), fleetv1.PoolAction_POOL_ACTION_SCALE, why, by)); err != nil {
		return nil, err
	}
	ps.publish(st, nodes)
	ps.poke()
	return ps.view(st, nodes), nil
}

// poke asks Run for a pass now.
func (ps *Pools) poke() {
	select {
	case ps.kick <- struct{}{}:
	default:
	}
}

// Put creates a pool, or replaces the spec of one the API made. A
// replaced spec changes the wanted size only where its min or max moves
// it.
func (ps *Pools) Put(ctx context.Context, name string, spec *fleetv1.PoolSpec, by string) (*fleetv1.Pool, bool, error) {
	if err := ps.check(name, spec); err != nil {
		return nil, false, err
	}
	nodes := ps.fleet.PoolNodes()[name]
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st := ps.pools[name]
	if st != nil && st.p.GetFromConfig() {
		return nil, false, status.Errorf(codes.FailedPrecondition, "name: pool %q is defined in the configuration file; change it there", name)
	}
	now := ps.clock.Now()
	p := &fleetv1.Pool{Name: name, Spec: proto.CloneOf(spec), Wanted: spec.GetMin(), WantedBy: by, WantedChangedAt: timestamppb.New(now)}
	what := fmt.Sprintf("pool created with min %d, max %d", spec.GetMin(), spec.GetMax())
	if st != nil {
		p.Wanted, p.WantedBy, p.WantedChangedAt = st.p.GetWanted(), st.p.GetWantedBy(), st.p.GetWantedChangedAt()
		p.Decisions = st.p.GetDecisions()
		what = fmt.Sprintf("pool spec replaced: min %d, max %d", spec.GetMin(), spec.GetMax())
		if w := clamp(p.GetWanted(), spec); w != p.GetWanted() {
			what += fmt.Sprintf("; wanted %d → %d", p.GetWanted(), w)
			p.Wanted, p.WantedBy, p.WantedChangedAt = w, by, timestamppb.New(now)
		}
	}
	addDecision(p, decision(now, fleetv1.PoolAction_POOL_ACTION_SPEC, what, by))
	if err := ps.store.Apply(ctx, store.Write{Pools: []*fleetv1.Pool{p}}); err != nil {
		ps.log.Error("store write failed", "pool", name, "err", err)
		return nil, false, apierr.NotSaved()
	}
	created := st == nil
	if created {
		st = newState(p)
		ps.pools[name] = st
	}
	st.p = p
	ps.publish(st, nodes)
	ps.poke()
	return ps.view(st, nodes), created, nil
}

// Delete forgets a pool the API made; its nodes stay.
func (ps *Pools) Delete(ctx context.Context, name string) error {
	ps.mu.Lock()
	st := ps.pools[name]
	switch {
	case st == nil:
		ps.mu.Unlock()
		return status.Errorf(codes.NotFound, "name: no pool %q", name)
	case st.p.GetFromConfig():
		ps.mu.Unlock()
		return status.Errorf(codes.FailedPrecondition, "name: pool %q is defined in the configuration file; remove it there", name)
	}
	if err := ps.store.Apply(ctx, store.Write{DeletePools: []string{name}}); err != nil {
		ps.mu.Unlock()
		ps.log.Error("store write failed", "pool", name, "err", err)
		return apierr.NotSaved()
	}
	delete(ps.pools, name)
	ps.fleet.RemovePool(name)
	ps.mu.Unlock()
	return nil
}

// publish sends a pool, with the status of nodes, to watchers when it
// changed since last sent. ps.mu is held: the hub never calls into the
// pools, and a view sent under the lock is never overtaken by an older
// one, nor sent after the pool's removal.
func (ps *Pools) publish(st *poolState, nodes []*fleetv1.Node) {
	v := ps.view(st, nodes)
	if proto.Equal(v, st.shown) {
		return
	}
	st.shown = v
	ps.fleet.PublishPool(v)
}

// maxDecisions is how many decisions a pool keeps.
const maxDecisions = 20

func decision(now time.Time, a fleetv1.PoolAction, reason, by string, nodes ...string) *fleetv1.PoolDecision {
	return &fleetv1.PoolDecision{At: timestamppb.New(now), Action: a, Reason: reason, By: by, NodeIds: nodes}
}

func addDecision(p *fleetv1.Pool, d *fleetv1.PoolDecision) {
	p.Decisions = append([]*fleetv1.PoolDecision{d}, p.GetDecisions()...)
	if len(p.Decisions) > maxDecisions {
		p.Decisions = p.Decisions[:maxDecisions]
	}
}

// setWanted changes a pool's wanted size in the name of the decision's
// maker, saves it with the decision and audits it. ps.mu is held.
func (ps *Pools) setWanted(ctx context.Context, st *poolState, wanted uint32, d *fleetv1.PoolDecision) error {
	p := proto.CloneOf(st.p)
	p.Wanted, p.WantedBy, p.WantedChangedAt = wanted, d.GetBy(), d.GetAt()
	addDecision(p, d)
	if err := ps.store.Apply(ctx, store.Write{Pools: []*fleetv1.Pool{p}}); err != nil {
		ps.log.Error("store write failed", "pool", p.GetName(), "err", err)
		return apierr.NotSaved()
	}
	st.p = p
	ps.audit(ctx, p.GetName(), d)
	return nil
}

// record keeps a decision that changes no size: saved with the pool, and
// audited. ps.mu is held.
func (ps *Pools) record(ctx context.Context, st *poolState, d *fleetv1.PoolDecision) {
	p := proto.CloneOf(st.p)
	addDecision(p, d)
	if err := ps.store.Apply(ctx, store.Write{Pools: []*fleetv1.Pool{p}}); err != nil {
		ps.log.Warn("saving a pool decision", "pool", p.GetName(), "err", err)
	}
	st.p = p
	ps.audit(ctx, p.GetName(), d)
}

// audit writes a decision to the audit log.
func (ps *Pools) audit(ctx context.Context, pool string, d *fleetv1.PoolDecision) {
	name := strings.TrimPrefix(strings.ToLower(d.GetAction().String()), "pool_action_")
	e := &store.AuditEntry{
		Time: d.GetAt().AsTime(), Who: d.GetBy(), RPC: "Pool" + strings.ToUpper(name[:1]) + name[1:],
		Reason: d.GetReason(), Params: "pool=" + pool, Code: "OK",
	}
	if len(d.GetNodeIds()) > 0 {
		e.Params += " nodes=" + strings.Join(d.GetNodeIds(), ",")
	}
	if len(d.GetNodeIds()) == 1 {
		e.NodeID = d.GetNodeIds()[0]
	}
	if err := ps.fleet.RecordAudit(ctx, e); err != nil {
		ps.log.Warn("auditing a pool decision", "pool", pool, "err", err)
	}
	ps.log.Info("pool decision", "pool", pool, "action", name, "by", d.GetBy(), "reason", d.GetReason())
}
