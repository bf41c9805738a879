package pool

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/controlplane/pool/autoscale"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Defaults for a spec's zero values.
const (
	DefaultGrace        = 10 * time.Minute
	DefaultDrainTimeout = 30 * time.Minute
	// maxLaunch caps the nodes one launch asks for; a larger deficit takes
	// more passes.
	maxLaunch = 100
	// maxBackoff caps the wait after failed launches.
	maxBackoff = 5 * time.Minute
)

// ByReconciler and ByAutoscaler are who a pool's own decisions name.
const (
	ByReconciler = "pool-reconciler"
	ByAutoscaler = "pool-autoscaler"
)

// Pass reconciles every pool once.
func (ps *Pools) Pass(ctx context.Context) {
	nodes := ps.fleet.PoolNodes()
	open := ps.fleet.BreakerOpen()
	ps.mu.Lock()
	names := make([]string, 0, len(ps.pools))
	for name := range ps.pools {
		names = append(names, name)
	}
	ps.mu.Unlock()
	slices.Sort(names)
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		ps.reconcile(ctx, name, nodes[name], open)
		ps.publish(name)
	}
}

// queueFor reads Slurm's queue for a pool that scales on it.
func (ps *Pools) queueFor(ctx context.Context, name string) (in autoscale.Inputs) {
	ps.mu.Lock()
	st := ps.pools[name]
	var partition string
	if st != nil {
		partition = st.p.GetSpec().GetAutoscaling().GetQueue().GetPartition()
	}
	ps.mu.Unlock()
	if partition == "" || ps.queue == nil {
		return in
	}
	nodes, jobs, err := ps.queue.Pending(ctx, partition)
	if err != nil {
		ps.log.Warn("reading the Slurm queue", "pool", name, "partition", partition, "err", err)
		return in
	}
	in.PendingNodes, in.PendingJobs, in.QueueKnown = nodes, jobs, true
	return in
}

// reconcile runs one pass over one pool.
func (ps *Pools) reconcile(ctx context.Context, name string, nodes []*fleetv1.Node, breakerOpen bool) {
	in := ps.queueFor(ctx, name)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st := ps.pools[name]
	if st == nil {
		return
	}
	now := ps.clock.Now()
	spec := st.p.GetSpec()
	if err := ps.check(name, spec); err != nil {
		ps.hold(ctx, st, now, "the pool starts and stops nothing: "+status.Convert(err).Message())
		return
	}
	c := classify(nodes)
	ps.autoscale(ctx, st, c, in, now)
	ps.trackBad(st, c, now)
	wanted := int(st.p.GetWanted())
	due := ps.due(st, c.live, now)
	if breakerOpen {
		if len(c.live) != wanted || len(due) > 0 {
			ps.hold(ctx, st, now, fmt.Sprintf("the auto-cordon breaker is open: the pool holds at %d nodes (wanted %d) and replaces none of %d due", len(c.live), wanted, len(due)))
		}
		return
	}
	st.held = ""
	live := len(c.live)
	inflight := c.provisioning + c.removing
	surge := int(max(spec.GetMaxSurge(), 1))
	for _, n := range due {
		if inflight >= surge {
			break
		}
		why := fmt.Sprintf("replaced: %s for %s", badness(n), now.Sub(st.bad[n.GetNodeId()]).Round(time.Second))
		if ps.remove(ctx, st, n, fleetv1.PoolAction_POOL_ACTION_REPLACE, why, now) {
			inflight++
			live--
		}
	}
	switch {
	case live < wanted && !st.launching && !now.Before(st.retryAt):
		st.launching = true
		ps.wg.Add(1)
		go ps.launch(ctx, name, proto.CloneOf(spec), min(wanted-live, maxLaunch), wanted)
	case live > wanted:
		idleOnly := lastScaleBy(st.p) == ByAutoscaler
		for _, n := range removable(c.live, idleOnly) {
			if live <= wanted {
				break
			}
			why := fmt.Sprintf("removed: the pool is %d nodes and wants %d", live, wanted)
			if ps.remove(ctx, st, n, fleetv1.PoolAction_POOL_ACTION_REMOVE, why, now) {
				live--
			}
		}
	}
}

// autoscale lets the pool's autoscaling move its wanted size. ps.mu is
// held.
func (ps *Pools) autoscale(ctx context.Context, st *poolState, c classified, in autoscale.Inputs, now time.Time) {
	as := st.p.GetSpec().GetAutoscaling()
	if as == nil {
		return
	}
	if u, ok := c.utilization(); ok {
		st.util.Add(now, u)
	}
	cfg := autoscaleConfig(as)
	in.Now = now
	in.Min, in.Max = int(st.p.GetSpec().GetMin()), int(st.p.GetSpec().GetMax())
	in.Wanted, in.Live = int(st.p.GetWanted()), len(c.live)
	if cfg.Utilization != nil {
		in.Utilization = st.util.Samples(now, cfg.Utilization.Window)
	}
	if t := st.p.GetWantedChangedAt(); t != nil {
		in.LastChange = t.AsTime()
	}
	d := autoscale.Decide(cfg, in)
	if d.Wanted == in.Wanted || d.Wanted < 0 {
		return
	}
	if err := ps.setWanted(ctx, st, uint32(d.Wanted), decision(now, fleetv1.PoolAction_POOL_ACTION_SCALE, d.Reason, ByAutoscaler)); err != nil {
		ps.log.Warn("saving an autoscaling decision", "pool", st.p.GetName(), "err", err)
	}
}

// trackBad notes since when each live node has been UNHEALTHY or OFFLINE.
// ps.mu is held.
func (ps *Pools) trackBad(st *poolState, c classified, now time.Time) {
	seen := make(map[string]bool, len(c.live))
	for _, n := range c.live {
		if badness(n) == "" {
			continue
		}
		seen[n.GetNodeId()] = true
		if _, ok := st.bad[n.GetNodeId()]; !ok {
			st.bad[n.GetNodeId()] = now
		}
	}
	for id := range st.bad {
		if !seen[id] {
			delete(st.bad, id)
		}
	}
}

// due lists the live nodes past the pool's grace, longest bad first, when
// the pool replaces them. ps.mu is held.
func (ps *Pools) due(st *poolState, live []*fleetv1.Node, now time.Time) []*fleetv1.Node {
	spec := st.p.GetSpec()
	if !spec.GetReplaceUnhealthy() {
		return nil
	}
	grace := DefaultGrace
	if g := spec.GetUnhealthyGrace(); g != nil && g.AsDuration() > 0 {
		grace = g.AsDuration()
	}
	var out []*fleetv1.Node
	for _, n := range live {
		if since, ok := st.bad[n.GetNodeId()]; ok && now.Sub(since) >= grace {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *fleetv1.Node) int {
		return cmp.Or(st.bad[a.GetNodeId()].Compare(st.bad[b.GetNodeId()]), strings.Compare(a.GetNodeId(), b.GetNodeId()))
	})
	return out
}

// badness says why a node is due for replacement: UNHEALTHY, OFFLINE, or
// "" for neither.
func badness(n *fleetv1.Node) string {
	switch {
	case n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING:
		return ""
	case n.GetReachability() == fleetv1.Reachability_REACHABILITY_OFFLINE:
		return "OFFLINE"
	case n.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
		return "UNHEALTHY"
	}
	return ""
}

// hold records, once, that the pool wants a change it does not make.
// ps.mu is held.
func (ps *Pools) hold(ctx context.Context, st *poolState, now time.Time, why string) {
	if st.held == why {
		return
	}
	st.held = why
	ps.record(ctx, st, decision(now, fleetv1.PoolAction_POOL_ACTION_HOLD, why, ByReconciler))
}

// remove terminates a node of the pool, drained first. ps.mu is held.
func (ps *Pools) remove(ctx context.Context, st *poolState, n *fleetv1.Node, a fleetv1.PoolAction, why string, now time.Time) bool {
	drain := DefaultDrainTimeout
	if d := st.p.GetSpec().GetDrainTimeout(); d != nil && d.AsDuration() > 0 {
		drain = d.AsDuration()
	}
	reason := "pool " + st.p.GetName() + " " + why
	if _, err := ps.fleet.Terminate(asPool(ctx, st.p.GetName()), n.GetNodeId(), reason, false, drain); err != nil {
		ps.log.Warn("pool could not terminate a node", "pool", st.p.GetName(), "node", n.GetNodeId(), "err", err)
		return false
	}
	delete(st.bad, n.GetNodeId())
	ps.record(ctx, st, decision(now, a, why, ByReconciler, n.GetNodeId()))
	return true
}

// launch starts count nodes for a pool through its providers in order: a
// provider that starts fewer than asked leaves the rest to the next.
func (ps *Pools) launch(ctx context.Context, name string, spec *fleetv1.PoolSpec, count, wanted int) {
	defer ps.wg.Done()
	var started []string
	var failures []string
	var used []string
	left := count
	for _, prov := range spec.GetProviders() {
		if left == 0 || ctx.Err() != nil {
			break
		}
		req := &controlplanev1.ProvisionNodesRequest{
			Provider: prov, Count: uint32(left), GpusPerNode: spec.GetGpusPerNode(),
			InstanceType: spec.GetInstanceType(), Labels: spec.GetLabels(),
		}
		nodes, err := ps.fleet.Launch(asPool(ctx, name), fleet.Launch{Request: req, Pool: name, Region: spec.GetRegion(), Zones: spec.GetZones()})
		for _, n := range nodes {
			started = append(started, n.GetNodeId())
		}
		if len(nodes) > 0 {
			used = append(used, prov)
		}
		left -= len(nodes)
		switch {
		case err != nil:
			failures = append(failures, prov+": "+status.Convert(err).Message())
		case left > 0:
			failures = append(failures, fmt.Sprintf("%s started %d of %d", prov, len(nodes), len(nodes)+left))
		}
	}
	now := ps.clock.Now()
	ps.mu.Lock()
	st := ps.pools[name]
	if st != nil {
		st.launching = false
		if len(started) > 0 {
			ps.record(ctx, st, decision(now, fleetv1.PoolAction_POOL_ACTION_PROVISION,
				fmt.Sprintf("started %d of %d nodes through %s to reach %d", len(started), count, strings.Join(used, ", "), wanted), ByReconciler, started...))
		}
		if left > 0 {
			st.backoff = min(max(2*st.backoff, ps.interval), maxBackoff)
			st.retryAt = now.Add(st.backoff)
			ps.record(ctx, st, decision(now, fleetv1.PoolAction_POOL_ACTION_HOLD,
				fmt.Sprintf("could not start %d nodes (%s); trying again in %s", left, strings.Join(failures, "; "), st.backoff), ByReconciler))
		} else {
			st.backoff, st.retryAt = 0, time.Time{}
		}
	}
	ps.mu.Unlock()
	ps.publish(name)
}

// lastScaleBy is who made the pool's latest change of size.
func lastScaleBy(p *fleetv1.Pool) string {
	for _, d := range p.GetDecisions() {
		if d.GetAction() == fleetv1.PoolAction_POOL_ACTION_SCALE {
			return d.GetBy()
		}
	}
	return ""
}

// classified is a pool's nodes, sorted by what they count for.
type classified struct {
	// live are the nodes that count towards the wanted size.
	live         []*fleetv1.Node
	provisioning int
	removing     int
}

func classify(nodes []*fleetv1.Node) classified {
	var c classified
	for _, n := range nodes {
		switch n.GetLifecycle() {
		case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING:
			c.removing++
		case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING:
			c.provisioning++
			c.live = append(c.live, n)
		case fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED,
			fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING, fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED:
			c.live = append(c.live, n)
		}
	}
	slices.SortFunc(c.live, func(a, b *fleetv1.Node) int { return strings.Compare(a.GetNodeId(), b.GetNodeId()) })
	return c
}

// utilization is the mean GPU utilisation of the ACTIVE, reachable nodes,
// in percent, and false when there are none.
func (c classified) utilization() (float64, bool) {
	sum, n := 0.0, 0
	for _, node := range c.live {
		if node.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE ||
			node.GetReachability() == fleetv1.Reachability_REACHABILITY_OFFLINE {
			continue
		}
		for _, s := range node.GetSamples() {
			sum += float64(s.GetUtilizationGpuPercent())
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return sum / float64(n), true
}

// idleBelow is the utilisation, in percent, under which a GPU without
// processes counts as idle.
const idleBelow = 10

// idle reports whether a node runs nothing: no GPU process, and every GPU
// under idleBelow.
func idle(n *fleetv1.Node) bool {
	if len(n.GetSamples()) == 0 {
		return false
	}
	for _, s := range n.GetSamples() {
		if s.GetProcessCount() > 0 || s.GetUtilizationGpuPercent() >= idleBelow {
			return false
		}
	}
	return true
}

// removable orders the nodes a pool may remove: failed ones first, then
// those not yet started, then those already out of work (drained,
// cordoned, draining), then idle ones, then, unless idleOnly, busy ones.
func removable(live []*fleetv1.Node, idleOnly bool) []*fleetv1.Node {
	rank := func(n *fleetv1.Node) int {
		switch {
		case badness(n) != "":
			return 0
		case n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING:
			return 1
		case n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED:
			return 2
		case n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE:
			return 3
		case idle(n):
			return 4
		}
		return 5
	}
	var out []*fleetv1.Node
	for _, n := range live {
		if !idleOnly || rank(n) < 5 {
			out = append(out, n)
		}
	}
	slices.SortStableFunc(out, func(a, b *fleetv1.Node) int { return rank(a) - rank(b) })
	return out
}

// Status counts a pool's nodes.
func Status(nodes []*fleetv1.Node) *fleetv1.PoolStatus {
	c := classify(nodes)
	s := &fleetv1.PoolStatus{Nodes: uint32(len(c.live)), Provisioning: uint32(c.provisioning), Removing: uint32(c.removing)}
	for _, n := range c.live {
		if n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING {
			continue
		}
		if n.GetReachability() == fleetv1.Reachability_REACHABILITY_OFFLINE {
			s.Offline++
		}
		switch n.GetHealth() {
		case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
			s.Healthy++
		case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
			s.Degraded++
		case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
			s.Unhealthy++
		}
	}
	if u, ok := c.utilization(); ok {
		s.Utilization = math.Round(u)
	}
	return s
}
