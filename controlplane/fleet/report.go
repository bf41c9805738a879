package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/health"
	"github.com/navarch/navarch/internal/healthdelta"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// MaxEventClockSkew is how far ahead of the control plane's clock an
// event's time may be: agents' clocks drift, but an event from well in the
// future is a bad clock or a forgery, and would sort above every real one.
const MaxEventClockSkew = 5 * time.Minute

// ReportHealth records events and a metrics snapshot, full or a delta
// onto the one held, and re-judges health. A delta is judged as the full
// snapshot it makes would be. A delta whose base is not the snapshot held
// is set aside, its events recorded, and the answer asks for a full one.
func (f *Fleet) ReportHealth(ctx context.Context, req *nodev1.ReportHealthRequest) (*nodev1.ReportHealthResponse, error) {
	now := f.clock.Now()
	if err := checkEventTimes(req.GetEvents(), now); err != nil {
		return nil, err
	}
	var resp *nodev1.ReportHealthResponse
	err := f.nodeLocked(req.GetNodeId(), false, func(ns *nodeState, cur *fleetv1.Node) error {
		if cur == nil {
			return apierr.NotRegistered(req.GetNodeId())
		}
		if err := checkEventGPUs(cur, ns.knownGPUs(cur), req); err != nil {
			return err
		}
		held, newRun := ns.heldMetrics()
		if cur.GetLifecycle() == terminated {
			// Taken and set aside: a terminated node's GPUs are no longer
			// judged. Its agent registers again to come back.
			resp = &nodev1.ReportHealthResponse{Health: cur.GetHealth(), HeldSequence: held.Sequence()}
			return nil
		}
		metrics, next, refused, misfit := takeMetrics(held, newRun, req)
		if misfit != nil {
			f.logMisfit(req, misfit)
		}
		resp = &nodev1.ReportHealthResponse{Health: cur.GetHealth(), HeldSequence: next.Sequence(), FullSnapshotWanted: refused}
		sched := req.GetScheduler()
		schedChanged := sched != nil && !proto.Equal(sched, cur.GetScheduler())
		judge := len(req.GetEvents()) > 0 || f.reportChanges(cur, metrics)
		if !judge && !schedChanged {
			// The usual report: fresh metrics, nothing to judge again.
			ns.keep(next, req.GetDroppedEvents())
			return nil
		}
		h, err := f.judgeReport(ctx, ns, cur, req, metrics, next, judge, schedChanged, now)
		if err != nil {
			return err
		}
		resp.Health, resp.Accepted = h, uint32(len(req.GetEvents()))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// logMisfit says that a delta's base and the snapshot held disagree
// although their sequences match: the full snapshot asked for repairs it,
// and the report's events still count. It is a function of its own, as
// judgeReport is, so that the usual report's call keeps a small stack.
//
//go:noinline
func (f *Fleet) logMisfit(req *nodev1.ReportHealthRequest, misfit *healthdelta.FieldError) {
	f.log.Warn("health report delta does not fit the snapshot held; asking for a full one", "node", req.GetNodeId(),
		"sequence", req.GetSequence(), "field", misfit.Field, "reason", misfit.Reason)
}

// judgeReport judges a report that changes the node (judge: its events
// or metrics; schedChanged: its scheduler state), commits the node it
// makes and returns its health. next is the held state to keep.
//
// It is apart from ReportHealth, and not inlined there, so that the usual
// report, which judges nothing, does not carry this function's frame (its
// maps, log calls and messages take about 2 KiB): a call's goroutine
// starts with a small stack, and is copied to a stack twice the size each
// time it outgrows it: with this frame in it, the usual report outgrew
// 8 KiB, and the copies were about 5 % of the control plane's CPU at
// 100 000 nodes.
//
//go:noinline
func (f *Fleet) judgeReport(ctx context.Context, ns *nodeState, cur *fleetv1.Node, req *nodev1.ReportHealthRequest,
	metrics []*fleetv1.GpuMetrics, next *healthdelta.Held, judge, schedChanged bool, now time.Time) (fleetv1.HealthStatus, error) {
	sched := req.GetScheduler()
	var n *fleetv1.Node
	if judge {
		n = proto.CloneOf(cur)
	} else {
		// Only the scheduler's state moved, as it does with a busy
		// node's jobs: the GPUs are not judged again, and the new node
		// shares them with the stored one (see shallowCopy).
		n = shallowCopy(cur)
	}
	c := &change{}
	// Metrics go to the GPUs present; events may name a lost one too
	// (GPU_RECOVERED does), where no present GPU has taken its index.
	byIndex := make(map[uint32]*fleetv1.Gpu)
	eventGPU := make(map[uint32]*fleetv1.Gpu)
	for _, g := range n.GetGpus() {
		if !g.GetLost() {
			byIndex[g.GetIndex()] = g
			eventGPU[g.GetIndex()] = g
		} else if eventGPU[g.GetIndex()] == nil {
			eventGPU[g.GetIndex()] = g
		}
	}
	for _, e := range req.GetEvents() {
		if s := e.GetKernelSeq(); s > 0 {
			if s <= n.GetKernelSeq() {
				// A kernel-log line already recorded from this boot: the
				// agent read the log again after a restart.
				continue
			}
			n.KernelSeq = s
		}
		ev := proto.CloneOf(e)
		ev.Id = ""
		if ev.Time == nil {
			ev.Time = ts(now)
		}
		if g := eventGPU[uint32(max(ev.GetGpuIndex(), 0))]; g != nil && ev.GetGpuIndex() >= 0 {
			if ev.GetGpuUuid() == "" {
				ev.GpuUuid = g.GetUuid()
			}
			f.policy.Judge(g, ev, ns.book.repeats.count(g.GetIndex()), now)
		} else {
			f.policy.Judge(&fleetv1.Gpu{}, ev, nil, now)
		}
		c.events = append(c.events, ev)
	}
	if len(metrics) > 0 && judge {
		reported := make(map[uint32]bool)
		for _, m := range metrics {
			reported[m.GetGpuIndex()] = true
			if g := byIndex[m.GetGpuIndex()]; g != nil {
				if g.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN && len(g.GetFaults()) == 0 {
					g.Health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
				}
				c.events = append(c.events, f.policy.Observe(g, m, now)...)
			}
		}
		for idx, g := range byIndex {
			if !reported[idx] {
				ev := &fleetv1.HealthEvent{
					Kind:     fleetv1.EventKind_EVENT_KIND_GPU_LOST,
					GpuIndex: int32(idx),
					GpuUuid:  g.GetUuid(),
					Time:     ts(now),
					Message:  fmt.Sprintf("GPU missing from the health snapshot (agent sees %d GPUs)", req.GetGpuCount()),
				}
				if g.GetLost() || hasKind(g, fleetv1.EventKind_EVENT_KIND_GPU_LOST) {
					continue
				}
				f.policy.Judge(g, ev, nil, now)
				c.events = append(c.events, ev)
			}
		}
	}
	if schedChanged {
		prev := cur.GetScheduler()
		// A busy node's scheduler state moves with its jobs; what an
		// operator acts on is a drain coming or going, or an error.
		level := slog.LevelDebug
		if prev.GetDrain() != sched.GetDrain() || prev.GetByNavarch() != sched.GetByNavarch() || prev.GetError() != sched.GetError() {
			level = slog.LevelInfo
		}
		f.log.Log(ctx, level, "scheduler state", "node", n.GetNodeId(), "scheduler", sched.GetScheduler(), "scheduler_node", sched.GetNodeName(),
			"state", sched.GetState(), "reason", sched.GetReason(), "by_navarch", sched.GetByNavarch(), "jobs", sched.GetJobs(), "err", sched.GetError())
		n.Scheduler = proto.CloneOf(sched)
	}
	ns.keep(next, req.GetDroppedEvents())
	rollupNode(n)
	f.autoCordon(ctx, ns, cur.GetHealth(), n, c, now)
	if !proto.Equal(n, cur) {
		c.node = n
	}
	if err := f.commit(ctx, ns, c); err != nil {
		return 0, err
	}
	f.wakeAgent(ns, c)
	for _, ev := range c.events {
		if health.Rank(ev.GetHealth()) > health.Rank(fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY) {
			f.log.Info("health event", "node", ev.GetNodeId(), "gpu", ev.GetGpuIndex(), "kind", ev.GetKind(),
				"xid", ev.GetXid(), "health", ev.GetHealth(), "cause", ev.GetCause(), "remedy", ev.GetRemedy())
		}
	}
	return n.GetHealth(), nil
}

// takeMetrics is a report's metrics as whole readings, one per GPU, and
// the held state to keep: a full snapshot's own, or a delta applied onto
// held. A delta whose base is not held is refused: no readings, held kept.
// So is one that names a GPU or link the held snapshot lacks (misfit says
// where): the request is well formed, the two sides only disagree on the
// base, which a full snapshot repairs without losing the report's events.
// A numbered full snapshot older than held, from the same run of the agent
// (no registration since held was kept), arrived late: a retried report
// overtaken by its successors. It is passed over, held kept and nothing
// asked, so that it never stands in for newer readings. A report without
// metrics leaves held as it is.
func takeMetrics(held *healthdelta.Held, newRun bool, req *nodev1.ReportHealthRequest) (metrics []*fleetv1.GpuMetrics, next *healthdelta.Held, refused bool, misfit *healthdelta.FieldError) {
	switch {
	case len(req.GetMetrics()) > 0 && !newRun && req.GetSequence() != 0 && req.GetSequence() < held.Sequence():
		return nil, held, false, nil
	case len(req.GetMetrics()) > 0:
		return req.GetMetrics(), healthdelta.Full(req.GetSequence(), req.GetMetrics()), false, nil
	case len(req.GetMetricChanges()) == 0:
		return nil, held, false, nil
	case held.Sequence() != req.GetBaseSequence():
		return nil, held, true, nil
	}
	next, metrics, err := held.Apply(req.GetSequence(), req.GetMetricChanges())
	if err != nil {
		if !errors.As(err, &misfit) {
			misfit = &healthdelta.FieldError{Field: "metric_changes", Reason: err.Error()}
		}
		return nil, held, true, misfit
	}
	return metrics, next, false, nil
}

// reportChanges reports whether a report without events would change the
// node: a first snapshot, a GPU missing from it, or a level condition that
// started or cleared.
func (f *Fleet) reportChanges(n *fleetv1.Node, metrics []*fleetv1.GpuMetrics) bool {
	if len(metrics) == 0 {
		return false
	}
	byIndex := make(map[uint32]*fleetv1.GpuMetrics, len(metrics))
	for _, m := range metrics {
		byIndex[m.GetGpuIndex()] = m
	}
	for _, g := range n.GetGpus() {
		if g.GetLost() {
			continue
		}
		m, ok := byIndex[g.GetIndex()]
		switch {
		case !ok:
			return !hasKind(g, fleetv1.EventKind_EVENT_KIND_GPU_LOST)
		case g.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN:
			return true
		case f.policy.Changes(g, m):
			return true
		}
	}
	return false
}

// hasKind reports whether the GPU has an active fault of kind k.
func hasKind(g *fleetv1.Gpu, k fleetv1.EventKind) bool {
	for _, f := range g.GetFaults() {
		if f.GetKind() == k {
			return true
		}
	}
	return false
}

// checkEventGPUs rejects events and metrics for GPUs the node never
// registered.
func checkEventGPUs(n *fleetv1.Node, known gpuSet, req *nodev1.ReportHealthRequest) error {
	for i, e := range req.GetEvents() {
		if e.GetGpuIndex() >= 0 && !known.has(uint32(e.GetGpuIndex())) {
			return apierr.Invalid(fmt.Sprintf("events[%d].gpu_index", i), "node %q has no GPU %d", n.GetNodeId(), e.GetGpuIndex())
		}
	}
	for i, m := range req.GetMetrics() {
		if !known.has(m.GetGpuIndex()) {
			return apierr.Invalid(fmt.Sprintf("metrics[%d].gpu_index", i), "node %q has no GPU %d", n.GetNodeId(), m.GetGpuIndex())
		}
	}
	for i, c := range req.GetMetricChanges() {
		if idx := c.GetMetrics().GetGpuIndex(); !known.has(idx) {
			return apierr.Invalid(fmt.Sprintf("metric_changes[%d].metrics.gpu_index", i), "node %q has no GPU %d", n.GetNodeId(), idx)
		}
	}
	return nil
}

// checkEventTimes rejects events dated more than MaxEventClockSkew after
// now.
func checkEventTimes(events []*fleetv1.HealthEvent, now time.Time) error {
	latest := now.Add(MaxEventClockSkew)
	for i, e := range events {
		if e.GetTime() != nil && e.GetTime().AsTime().After(latest) {
			return apierr.Invalid(fmt.Sprintf("events[%d].time", i), "%s is more than %s ahead of the control plane's clock (%s)",
				e.GetTime().AsTime().UTC().Format(time.RFC3339), MaxEventClockSkew, now.UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// rollupNode sets the node's health from its worst GPU. A node no longer
// UNHEALTHY is no longer held back: there is nothing left to cordon it
// for.
func rollupNode(n *fleetv1.Node) {
	worstHealth := fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN
	if len(n.GetGpus()) > 0 {
		worstHealth = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
	}
	var worst *fleetv1.Gpu
	for _, g := range n.GetGpus() {
		if health.Worse(g.GetHealth(), worstHealth) {
			worstHealth = g.GetHealth()
			worst = g
		}
	}
	n.Health = worstHealth
	n.HealthCause = ""
	n.Remedy = fleetv1.Remedy_REMEDY_UNSPECIFIED
	if worst != nil && worst.GetHealthCause() != "" {
		n.HealthCause = fmt.Sprintf("gpu%d: %s", worst.GetIndex(), worst.GetHealthCause())
		n.Remedy = worst.GetRemedy()
	}
	if worstHealth != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		n.CordonHeldBackAt = nil
	}
}

// autoCordon cordons an ACTIVE node that just became UNHEALTHY, if the
// policy allows it and the circuit breaker is closed. A node the breaker
// holds back is marked (cordon_held_back_at) in the same write as the
// breaker's state, and stays in service until an operator cordons or
// releases it: the breaker never cordons it later on its own, since it
// held the node back for a human to judge. A node an operator uncordoned
// or released while it was UNHEALTHY stays as the operator left it.
func (f *Fleet) autoCordon(ctx context.Context, ns *nodeState, prev fleetv1.HealthStatus, n *fleetv1.Node, c *change, now time.Time) {
	if prev == fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY ||
		n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY || !allowed(n, actAutoCordon) {
		return
	}
	ok, tripped := f.breaker.allow(now, f.activeFleetSize())
	if tripped {
		f.log.Warn("auto-cordon circuit breaker tripped; automatic cordons suspended",
			"window", f.cfg.AutoCordonWindow, "max_fraction", f.cfg.AutoCordonMaxFraction)
		f.hub.TotalsChanged()
		f.observer.BreakerTripped(f.breaker.status(now))
	}
	if !ok {
		if f.cfg.AutoCordon {
			f.log.Warn("auto-cordon suppressed by circuit breaker", "node", n.GetNodeId(), "cause", n.GetHealthCause())
			f.hub.TotalsChanged()
			n.CordonHeldBackAt = ts(now)
			c.saveBreaker = true
		}
		return
	}
	_ = move(n, actAutoCordon, "auto-cordon: "+n.GetHealthCause(), auth.PolicyName, now)
	n.CordonedByPolicy = true
	c.autoCordonedAt = now
	c.saveBreaker = true
	cmd, err := f.newCommand(ctx, n.GetNodeId(), fleetv1.CommandType_COMMAND_TYPE_CORDON, n.GetLifecycleReason(), auth.PolicyName, now)
	if err == nil {
		ns.book.open = append(ns.book.open, cmd)
		c.commands = append(c.commands, cmd)
	}
	// Recorded in the cordon's own write: the audit log has the cordon
	// exactly when the store does.
	c.audit = append(c.audit, policyAudit(n, cmd, now))
	f.log.Warn("node cordoned automatically", "node", n.GetNodeId(), "cause", n.GetHealthCause())
}

// activeFleetSize counts the nodes that are not terminated or failed.
func (f *Fleet) activeFleetSize() int {
	s := f.summary()
	return int(s.GetNodes() - s.GetTerminated() - s.GetProvisionFailed())
}
