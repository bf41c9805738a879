package pool

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// stuckAfter is how long past its drain timeout a node may stay
// TERMINATING and still count against the pool's max_surge: one whose
// provider keeps failing to stop it must not hold every replacement back.
const stuckAfter = 5 * time.Minute

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

// replace removes the due nodes while fewer than max_surge of the pool's
// nodes are being provisioned or replaced, adding each to removed, and
// says why the rest wait, if any do. A node stuck TERMINATING past its
// drain timeout and stuckAfter no longer counts. ps.mu is held.
func (ps *Pools) replace(ctx context.Context, st *poolState, c classified, due []*fleetv1.Node, now time.Time, removed map[string]bool) string {
	surge := int(max(st.p.GetSpec().GetMaxSurge(), 1))
	inflight := c.provisioning
	limit := drainTimeout(st.p.GetSpec()) + stuckAfter
	for _, n := range c.removing {
		if at := n.GetLifecycleChangedAt(); at == nil || now.Sub(at.AsTime()) < limit {
			inflight++
		}
	}
	for _, n := range due {
		if inflight >= surge {
			return fmt.Sprintf("replacement waits: %s being replaced, max_surge %d", nodeCount(inflight), surge)
		}
		why := fmt.Sprintf("replaced: %s for %s", badness(n), now.Sub(st.bad[n.GetNodeId()]).Round(time.Second))
		if ps.remove(ctx, st, n, fleetv1.PoolAction_POOL_ACTION_REPLACE, why, now) {
			removed[n.GetNodeId()] = true
			inflight++
		}
	}
	return ""
}

// nodeCount writes n nodes: "1 node", "2 nodes".
func nodeCount(n int) string {
	if n == 1 {
		return "1 node"
	}
	return fmt.Sprintf("%d nodes", n)
}

// shrink removes live nodes, in removable's order and none that this pass
// removed already, until live, the pool's live nodes less those removed,
// is wanted. Beyond a size the autoscaler set it removes idle nodes alone.
// A node whose launch is under way counts as removed, and is on a later
// pass, once it has its instance: stopped now, the instance its launch
// brings would be lost. ps.mu is held.
func (ps *Pools) shrink(ctx context.Context, st *poolState, c classified, live, wanted int, now time.Time, removed map[string]bool) {
	idleOnly := st.p.GetWantedBy() == ByAutoscaler
	for _, n := range removable(c.live, idleOnly) {
		if live <= wanted {
			return
		}
		switch {
		case removed[n.GetNodeId()]:
		case launching(n):
			live--
		default:
			why := fmt.Sprintf("removed: the pool is %d nodes and wants %d", live, wanted)
			if ps.remove(ctx, st, n, fleetv1.PoolAction_POOL_ACTION_REMOVE, why, now) {
				removed[n.GetNodeId()] = true
				live--
			}
		}
	}
}

// launching reports whether a node's launch is under way: it is
// PROVISIONING with no instance yet.
func launching(n *fleetv1.Node) bool {
	return n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING && n.GetInstanceId() == ""
}

// drainTimeout is how long a node the pool removes is drained.
func drainTimeout(s *fleetv1.PoolSpec) time.Duration {
	if d := s.GetDrainTimeout(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	return DefaultDrainTimeout
}

// remove terminates a node of the pool, drained first. ps.mu is held.
func (ps *Pools) remove(ctx context.Context, st *poolState, n *fleetv1.Node, a fleetv1.PoolAction, why string, now time.Time) bool {
	reason := "pool " + st.p.GetName() + " " + why
	if _, err := ps.fleet.Terminate(asPool(ctx, st.p.GetName()), n.GetNodeId(), reason, false, drainTimeout(st.p.GetSpec())); err != nil {
		ps.log.Warn("pool could not terminate a node", "pool", st.p.GetName(), "node", n.GetNodeId(), "err", err)
		return false
	}
	delete(st.bad, n.GetNodeId())
	ps.record(ctx, st, decision(now, a, why, ByReconciler, n.GetNodeId()))
	return true
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
// those not yet started (a launch under way among them, which shrink
// leaves for later), then those already out of work (drained, cordoned,
// draining), then idle ones, then, unless idleOnly, busy ones.
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
