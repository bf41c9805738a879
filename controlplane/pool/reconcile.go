package pool

import (
	"context"
	"fmt"
	"maps"
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

// Pass reconciles every pool once. It reads the Slurm queues first, as
// they may take long, then the nodes, once, so that every pool acts on
// its nodes as they are after the reads.
func (ps *Pools) Pass(ctx context.Context) {
	ps.passMu.Lock()
	defer ps.passMu.Unlock()
	queues := ps.readQueues(ctx)
	if ctx.Err() != nil {
		return
	}
	ps.mu.Lock()
	launches := make(map[string]uint64, len(ps.pools))
	for name, st := range ps.pools {
		launches[name] = st.launches
	}
	ps.mu.Unlock()
	nodes := ps.fleet.PoolNodes()
	open := ps.fleet.BreakerOpen()
	for _, name := range slices.Sorted(maps.Keys(launches)) {
		if ctx.Err() != nil {
			return
		}
		ps.reconcile(ctx, name, nodes[name], queues[name], open, launches[name])
	}
}

// readQueues reads Slurm's queue for every pool that scales on one, each
// partition once, by pool name.
func (ps *Pools) readQueues(ctx context.Context) map[string]autoscale.Inputs {
	out := make(map[string]autoscale.Inputs)
	if ps.queue == nil {
		return out
	}
	partitions := make(map[string]string)
	ps.mu.Lock()
	for name, st := range ps.pools {
		if p := st.p.GetSpec().GetAutoscaling().GetQueue().GetPartition(); p != "" {
			partitions[name] = p
		}
	}
	ps.mu.Unlock()
	read := make(map[string]autoscale.Inputs)
	for _, name := range slices.Sorted(maps.Keys(partitions)) {
		partition := partitions[name]
		in, ok := read[partition]
		if !ok && ctx.Err() == nil {
			in = ps.readQueue(ctx, name, partition)
			read[partition] = in
		}
		out[name] = in
	}
	return out
}

// readQueue reads the jobs pending for one partition.
func (ps *Pools) readQueue(ctx context.Context, pool, partition string) (in autoscale.Inputs) {
	nodes, jobs, err := ps.queue.Pending(ctx, partition)
	if err != nil {
		ps.log.Warn("reading the Slurm queue", "pool", pool, "partition", partition, "err", err)
		return in
	}
	in.PendingNodes, in.PendingJobs, in.QueueKnown = nodes, jobs, true
	return in
}

// reconcile runs one pass over one pool, and sends it to watchers.
func (ps *Pools) reconcile(ctx context.Context, name string, nodes []*fleetv1.Node, in autoscale.Inputs, breakerOpen bool, launches uint64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st := ps.pools[name]
	if st == nil {
		return
	}
	defer ps.publish(st, nodes)
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
	// removed are the nodes this pass removed, so that none is removed
	// twice.
	removed := make(map[string]bool)
	waits := ps.replace(ctx, st, c, due, now, removed)
	live := len(c.live) - len(removed)
	switch {
	case live < wanted && !st.launching && st.launches == launches && !now.Before(st.retryAt):
		st.launching = true
		ps.wg.Add(1)
		go ps.launch(ctx, st, name, proto.CloneOf(spec), min(wanted-live, maxLaunch), wanted)
	case live > wanted:
		ps.shrink(ctx, st, c, live, wanted, now, removed)
	}
	if waits == "" {
		st.held = ""
		return
	}
	ps.hold(ctx, st, now, waits)
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

// hold records, once, that the pool wants a change it does not make.
// ps.mu is held.
func (ps *Pools) hold(ctx context.Context, st *poolState, now time.Time, why string) {
	if st.held == why {
		return
	}
	st.held = why
	ps.record(ctx, st, decision(now, fleetv1.PoolAction_POOL_ACTION_HOLD, why, ByReconciler))
}

// launch starts count nodes for the pool st through its providers in
// order: a provider that starts fewer than asked leaves the rest to the
// next. A node counts as started only while it is PROVISIONING or ACTIVE:
// one its provider failed goes to the next provider, and counts for the
// backoff. A launch for a pool deleted meanwhile just ends.
func (ps *Pools) launch(ctx context.Context, st *poolState, name string, spec *fleetv1.PoolSpec, count, wanted int) {
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
		ok := 0
		for _, n := range nodes {
			if l := n.GetLifecycle(); l == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING || l == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE {
				started = append(started, n.GetNodeId())
				ok++
			}
		}
		if ok > 0 {
			used = append(used, prov)
		}
		left -= ok
		switch {
		case err != nil:
			failures = append(failures, prov+": "+status.Convert(err).Message())
		case left > 0:
			failures = append(failures, fmt.Sprintf("%s started %d of %d", prov, ok, ok+left))
		}
	}
	now := ps.clock.Now()
	nodes := ps.fleet.PoolNodes()[name]
	ps.mu.Lock()
	defer ps.mu.Unlock()
	st.launching = false
	st.launches++
	if ps.pools[name] != st {
		return
	}
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
	ps.publish(st, nodes)
}

// classified is a pool's nodes, sorted by what they count for.
type classified struct {
	// live are the nodes that count towards the wanted size.
	live         []*fleetv1.Node
	provisioning int
	// removing are the nodes being terminated.
	removing []*fleetv1.Node
}

func classify(nodes []*fleetv1.Node) classified {
	var c classified
	for _, n := range nodes {
		switch n.GetLifecycle() {
		case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING:
			c.removing = append(c.removing, n)
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

// Status counts a pool's nodes.
func Status(nodes []*fleetv1.Node) *fleetv1.PoolStatus {
	c := classify(nodes)
	s := &fleetv1.PoolStatus{Nodes: uint32(len(c.live)), Provisioning: uint32(c.provisioning), Removing: uint32(len(c.removing))}
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
