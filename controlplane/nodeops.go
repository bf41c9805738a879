package controlplane

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// nodeLocked runs fn with the node's lock held, creating the node first
// when create is set and it does not exist. fn sees nil for a node being
// created. When fn fails, the node's open commands are as they were: fn
// may queue or cancel commands before its change is committed.
func (f *Fleet) nodeLocked(id string, create bool, fn func(ns *nodeState, cur *fleetv1.Node) error) error {
	for {
		ns := f.lookup(id, create)
		if ns == nil {
			return apierr.NodeNotFound(id)
		}
		retry, err := f.withNode(ns, id, create, fn)
		if !retry {
			return err
		}
		// The node left the fleet while this call waited for its lock: a
		// registration starts a new one, anything else finds none.
	}
}

// lookup finds the node, or the one whose first registration is under way,
// or, with create, starts creating it.
func (f *Fleet) lookup(id string, create bool) *nodeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ns := f.nodes[id]; ns != nil {
		return ns
	}
	// A node whose first registration is under way exists once it is
	// done: wait for it rather than miss it.
	if ns := f.creating[id]; ns != nil || !create {
		return ns
	}
	if f.creating == nil {
		f.creating = make(map[string]*nodeState)
	}
	ns := newNodeState(nil)
	f.creating[id] = ns
	return ns
}

func (f *Fleet) withNode(ns *nodeState, id string, create bool, fn func(ns *nodeState, cur *fleetv1.Node) error) (retry bool, err error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if create {
		// Created or failed: either way the node is no longer being created.
		defer func() {
			f.mu.Lock()
			if f.creating[id] == ns {
				delete(f.creating, id)
			}
			f.mu.Unlock()
		}()
	}
	if ns.removed.Load() {
		if create {
			return true, nil
		}
		return false, apierr.NodeNotFound(id)
	}
	cur := ns.node.Load()
	if cur == nil && !create {
		return false, apierr.NodeNotFound(id)
	}
	open, stopping, queued, unprovision := slices.Clone(ns.open), ns.stopping, ns.terminateQueued, ns.unprovision
	defer ns.recount()
	if err := fn(ns, cur); err != nil {
		ns.open, ns.stopping, ns.terminateQueued, ns.unprovision = open, stopping, queued, unprovision
		return false, err
	}
	return false, nil
}

// Register records a node's registration and answers with its intervals.
func (f *Fleet) Register(ctx context.Context, req *nodev1.RegisterNodeRequest) (*nodev1.RegisterNodeResponse, error) {
	now := f.clock.Now()
	var lifecycle fleetv1.LifecycleState
	err := f.nodeLocked(req.GetNodeId(), true, func(ns *nodeState, cur *fleetv1.Node) error {
		c := &change{}
		if ns.unprovision && cur.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED {
			return status.Errorf(codes.FailedPrecondition, "node_id: node %q did not register in time and its instance is being stopped", req.GetNodeId())
		}
		if cur.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED {
			// A terminated node starts afresh; what it was asked before
			// does not apply to the new one.
			cancelOpen(ns, c, anyCommand, "node registered again after it was terminated", now)
		}
		n := f.registered(ns, cur, req, now, c)
		f.autoCordon(ctx, ns, cur.GetHealth(), n, c, now)
		c.node = n
		// An agent that registers again lost whatever it was doing: hand its
		// unfinished commands out again.
		requeue(ns, c, func(cmd *fleetv1.Command) bool {
			return cmd.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_PENDING
		}, now)
		if cur == nil {
			c.insert = true
		}
		// Registering is hearing from the node.
		ns.rt.Lock()
		ns.lastHeartbeat = now
		ns.rt.Unlock()
		c.reach = fleetv1.Reachability_REACHABILITY_ONLINE
		if err := f.commit(ctx, ns, c); err != nil {
			return err
		}
		f.wakeAgent(ns, c)
		lifecycle = n.GetLifecycle()
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.log.Info("node registered", "node", req.GetNodeId(), "gpus", len(req.GetGpus()), "lifecycle", lifecycle)
	return &nodev1.RegisterNodeResponse{
		NodeId:               req.GetNodeId(),
		HeartbeatInterval:    durationpb.New(f.cfg.HeartbeatInterval.Duration),
		HealthReportInterval: durationpb.New(f.cfg.HealthReportInterval.Duration),
		CommandPollTimeout:   durationpb.New(f.cfg.CommandPollTimeout.Duration),
		Lifecycle:            lifecycle,
		CommandDelivery:      f.delivery(),
	}, nil
}

// registered builds the node's state after a registration.
func (f *Fleet) registered(ns *nodeState, cur *fleetv1.Node, req *nodev1.RegisterNodeRequest, now time.Time, c *change) *fleetv1.Node {
	fresh := cur == nil || cur.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED
	var n *fleetv1.Node
	if fresh {
		n = &fleetv1.Node{
			NodeId:             req.GetNodeId(),
			Lifecycle:          fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE,
			LifecycleReason:    "registered",
			LifecycleChangedAt: ts(now),
			Health:             fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN,
		}
		ns.repeats = make(map[uint32]*policy.Repeats)
	} else {
		n = proto.CloneOf(cur)
	}
	switch n.GetLifecycle() {
	case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING, fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED:
		n.Lifecycle = fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE
		n.LifecycleReason = "registered"
		n.LifecycleChangedAt = ts(now)
	}
	n.Hostname = req.GetHostname()
	// The agent's labels are the node's: a label it no longer sends is
	// gone. Providers pass the provisioning labels to the agents they start.
	n.Labels = maps.Clone(req.GetLabels())
	n.DriverVersion = req.GetDriverVersion()
	n.CudaVersion = req.GetCudaVersion()
	n.AgentVersion = req.GetAgentVersion()
	n.Simulated = req.GetSimulated()
	if req.GetInstanceId() != "" {
		n.InstanceId = req.GetInstanceId()
	}
	n.RegisteredAt = ts(now)
	rebooted := !fresh && req.GetBootId() != "" && req.GetBootId() != cur.GetBootId()
	n.BootId = req.GetBootId()

	// Match the inventory by UUID: a GPU that was there before and is
	// missing now is lost; its faults and remedy history stay with it.
	old := make(map[string]*fleetv1.Gpu)
	for _, g := range n.GetGpus() {
		old[g.GetUuid()] = g
	}
	var gpus []*fleetv1.Gpu
	seen := make(map[string]bool)
	for _, in := range req.GetGpus() {
		g := old[in.GetUuid()]
		if g == nil {
			g = &fleetv1.Gpu{Health: fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN}
		}
		g.Index = in.GetIndex()
		g.Uuid = in.GetUuid()
		g.Name = in.GetName()
		g.Serial = in.GetSerial()
		g.PciBusId = in.GetPciBusId()
		g.MemoryTotalBytes = in.GetMemoryTotalBytes()
		g.SlowdownTemperatureCelsius = in.GetSlowdownTemperatureCelsius()
		g.PowerLimitMilliwatts = in.GetPowerLimitMilliwatts()
		g.NvlinkCount = in.GetNvlinkCount()
		var ev *fleetv1.HealthEvent
		if rebooted {
			ev = f.policy.ClearAfterReboot(g, now)
		} else {
			// Back without a reboot: only the loss is over.
			ev = f.policy.Found(g, now)
		}
		if ev != nil {
			c.events = append(c.events, ev)
		}
		seen[g.GetUuid()] = true
		gpus = append(gpus, g)
	}
	gpus = append(gpus, f.missingGPUs(ns, n.GetGpus(), gpus, old, seen, req, rebooted, now, c)...)
	slices.SortFunc(gpus, func(a, b *fleetv1.Gpu) int {
		if a.GetLost() != b.GetLost() {
			if a.GetLost() {
				return 1
			}
			return -1
		}
		return int(a.GetIndex()) - int(b.GetIndex())
	})
	n.Gpus = gpus
	rollupNode(n)
	return n
}

// missingGPUs handles the GPUs the node had that are not in this
// registration, and the GPUs the agent says do not answer; it returns the
// lost GPUs the node keeps.
//
// A GPU that did not answer before is kept as a placeholder (unanswered-…,
// its UUID unknown). While the agent still reports GPUs that do not answer,
// the placeholders stand for them, matched by index and then in order, as
// GPUs renumber when one vanishes; a placeholder left over has answered,
// and takes a new GPU.
//
// A new GPU in a missing GPU's slot replaced it: the old one is retired
// with its faults, or the node would read UNHEALTHY for ever. Slots match
// by PCI bus id first, then by index for GPUs whose bus id is unknown.
//
// The others are lost: once, and again after each reboot that did not
// bring them back, so a GPU a reboot does not mend escalates like any
// other.
func (f *Fleet) missingGPUs(ns *nodeState, had, gpus []*fleetv1.Gpu, old map[string]*fleetv1.Gpu, seen map[string]bool,
	req *nodev1.RegisterNodeRequest, rebooted bool, now time.Time, c *change) []*fleetv1.Gpu {
	var missing, fresh []*fleetv1.Gpu
	missingBus := map[string]bool{}
	for _, g := range had {
		if !seen[g.GetUuid()] {
			missing = append(missing, g)
			if bus := strings.ToLower(g.GetPciBusId()); bus != "" {
				missingBus[bus] = true
			}
		}
	}
	for _, g := range gpus {
		if old[g.GetUuid()] == nil {
			fresh = append(fresh, g)
		}
	}

	// Placeholders that still stand for a GPU that does not answer.
	unanswered := slices.Clone(req.GetUnansweredGpus())
	slices.SortFunc(unanswered, func(a, b *nodev1.UnansweredGpu) int { return int(a.GetIndex()) - int(b.GetIndex()) })
	stands := map[*fleetv1.Gpu]*nodev1.UnansweredGpu{}
	used := map[*nodev1.UnansweredGpu]bool{}
	match := func(ok func(g *fleetv1.Gpu, u *nodev1.UnansweredGpu) bool) {
		for _, g := range missing {
			if !isUnanswered(g) || stands[g] != nil {
				continue
			}
			for _, u := range unanswered {
				if !used[u] && ok(g, u) {
					stands[g], used[u] = u, true
					break
				}
			}
		}
	}
	placeholders := 0
	for _, g := range missing {
		if isUnanswered(g) {
			placeholders++
		}
	}
	if placeholders != len(unanswered) || len(fresh) > 0 {
		// Some answer now, or more do not: those still at their index
		// first. (As many as before, with no new GPU, are the same GPUs:
		// they keep their order, renumbered or not.)
		match(func(g *fleetv1.Gpu, u *nodev1.UnansweredGpu) bool { return g.GetIndex() == u.GetIndex() })
		// A known GPU that stops answering is lost under its own UUID: the
		// entry at its index needs no placeholder.
		for _, g := range missing {
			for _, u := range unanswered {
				if !isUnanswered(g) && !used[u] && g.GetIndex() == u.GetIndex() {
					used[u] = true
				}
			}
		}
	}
	match(func(*fleetv1.Gpu, *nodev1.UnansweredGpu) bool { return true })

	by := map[*fleetv1.Gpu]*fleetv1.Gpu{}
	taken := map[*fleetv1.Gpu]bool{}
	pair := func(m *fleetv1.Gpu, ok func(nw *fleetv1.Gpu) bool) {
		if by[m] != nil || stands[m] != nil {
			return
		}
		for _, nw := range fresh {
			if !taken[nw] && ok(nw) {
				by[m], taken[nw] = nw, true
				return
			}
		}
	}
	bus := func(g *fleetv1.Gpu) string { return strings.ToLower(g.GetPciBusId()) }
	for _, m := range missing {
		if bus(m) != "" {
			pair(m, func(nw *fleetv1.Gpu) bool { return bus(nw) == bus(m) })
		}
	}
	for _, m := range missing {
		if bus(m) == "" {
			pair(m, func(nw *fleetv1.Gpu) bool { return nw.GetIndex() == m.GetIndex() && !missingBus[bus(nw)] })
		}
	}
	for _, m := range missing {
		if isUnanswered(m) {
			pair(m, func(nw *fleetv1.Gpu) bool { return !missingBus[bus(nw)] })
		}
	}

	lost := func(g *fleetv1.Gpu, msg string) {
		ev := &fleetv1.HealthEvent{
			Kind:     fleetv1.EventKind_EVENT_KIND_GPU_LOST,
			GpuIndex: int32(g.GetIndex()),
			GpuUuid:  g.GetUuid(),
			Time:     ts(now),
			Message:  msg,
		}
		if g.GetLost() {
			// Still lost after a reboot: a remedy that failed.
			f.policy.LostAgain(g, ev, now)
		} else {
			f.policy.Judge(g, ev, nil, now)
		}
		c.events = append(c.events, ev)
	}
	var kept []*fleetv1.Gpu
	for _, g := range missing {
		if nw := by[g]; nw != nil {
			delete(ns.repeats, nw.GetIndex())
			ev := &fleetv1.HealthEvent{
				Kind:     fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED,
				GpuIndex: int32(nw.GetIndex()),
				GpuUuid:  g.GetUuid(),
				Time:     ts(now),
				Health:   fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY,
				Remedy:   fleetv1.Remedy_REMEDY_NONE,
				Cause:    "GPU replaced",
				Message:  fmt.Sprintf("GPU %s replaced by %s; its faults are retired", g.GetUuid(), nw.GetUuid()),
			}
			if isUnanswered(g) {
				ev.Cause = "GPU answers again"
				ev.Message = fmt.Sprintf("GPU %d answers again, as GPU %d %s", g.GetIndex(), nw.GetIndex(), nw.GetUuid())
			}
			c.events = append(c.events, ev)
			continue
		}
		if u := stands[g]; u != nil {
			g.Index = u.GetIndex() // renumbered with the others
			if rebooted {
				lost(g, fmt.Sprintf("GPU %d still does not answer after a reboot (%s)", g.GetIndex(), u.GetReason()))
			}
			kept = append(kept, g)
			continue
		}
		switch {
		case !g.GetLost():
			lost(g, fmt.Sprintf("GPU %s missing from the inventory at registration", g.GetUuid()))
		case rebooted && isUnanswered(g):
			lost(g, fmt.Sprintf("GPU %d still missing after a reboot", g.GetIndex()))
		case rebooted:
			lost(g, fmt.Sprintf("GPU %s still missing after a reboot", g.GetUuid()))
		}
		kept = append(kept, g)
	}

	// A GPU NVML counts that does not answer and that no placeholder
	// stands for yet is lost; on a first registration nothing else would
	// tell of it.
	names := map[string]bool{}
	for _, g := range slices.Concat(gpus, kept) {
		names[g.GetUuid()] = true
	}
	for _, u := range unanswered {
		if used[u] {
			continue
		}
		name := unansweredPrefix + fmt.Sprint(u.GetIndex())
		for n := 2; names[name]; n++ {
			name = fmt.Sprintf("%s%d-%d", unansweredPrefix, u.GetIndex(), n)
		}
		names[name] = true
		g := &fleetv1.Gpu{Index: u.GetIndex(), Uuid: name, Health: fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN}
		lost(g, fmt.Sprintf("GPU %d did not answer when the agent started (%s)", u.GetIndex(), u.GetReason()))
		kept = append(kept, g)
	}
	return kept
}

// unansweredPrefix starts the UUID the control plane gives a GPU that did
// not answer the agent, whose own UUID is unknown.
const unansweredPrefix = "unanswered-gpu"

func isUnanswered(g *fleetv1.Gpu) bool { return strings.HasPrefix(g.GetUuid(), unansweredPrefix) }

// delivery is how agents must fetch their commands.
func (f *Fleet) delivery() nodev1.CommandDelivery {
	if f.cfg.CommandDelivery == "heartbeat" {
		return nodev1.CommandDelivery_COMMAND_DELIVERY_HEARTBEAT
	}
	return nodev1.CommandDelivery_COMMAND_DELIVERY_LONG_POLL
}

// rollupNode sets the node's health from its worst GPU.
func rollupNode(n *fleetv1.Node) {
	health := fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN
	if len(n.GetGpus()) > 0 {
		health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
	}
	var worst *fleetv1.Gpu
	for _, g := range n.GetGpus() {
		if policy.Rank(g.GetHealth()) > policy.Rank(health) {
			health = g.GetHealth()
			worst = g
		}
	}
	n.Health = health
	n.HealthCause = ""
	n.Remedy = fleetv1.Remedy_REMEDY_UNSPECIFIED
	if worst != nil && worst.GetHealthCause() != "" {
		n.HealthCause = fmt.Sprintf("gpu%d: %s", worst.GetIndex(), worst.GetHealthCause())
		n.Remedy = worst.GetRemedy()
	}
}

// autoCordon cordons an ACTIVE node that just became UNHEALTHY, if the
// policy allows it and the circuit breaker is closed. A node an operator
// uncordoned while it was UNHEALTHY stays as the operator left it.
func (f *Fleet) autoCordon(ctx context.Context, ns *nodeState, prev fleetv1.HealthStatus, n *fleetv1.Node, c *change, now time.Time) {
	if prev == fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY ||
		n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY ||
		n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE {
		return
	}
	ok, tripped := f.breaker.allow(now, f.activeFleetSize())
	if tripped {
		f.log.Warn("auto-cordon circuit breaker tripped; automatic cordons suspended",
			"window", f.cfg.AutoCordon.Window.Duration, "max_fraction", f.cfg.AutoCordon.MaxFraction)
		f.hub.markTotalsDirty()
	}
	if !ok {
		if f.cfg.AutoCordonEnabled() {
			f.log.Warn("auto-cordon suppressed by circuit breaker", "node", n.GetNodeId(), "cause", n.GetHealthCause())
			f.hub.markTotalsDirty()
		}
		return
	}
	n.Lifecycle = fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED
	n.LifecycleReason = "auto-cordon: " + n.GetHealthCause()
	n.LifecycleChangedAt = ts(now)
	n.CordonedByPolicy = true
	if cmd, err := f.newCommand(ctx, n.GetNodeId(), fleetv1.CommandType_COMMAND_TYPE_CORDON, n.GetLifecycleReason(), "policy", now); err == nil {
		ns.open = append(ns.open, cmd)
		c.commands = append(c.commands, cmd)
	}
	f.log.Warn("node cordoned automatically", "node", n.GetNodeId(), "cause", n.GetHealthCause())
}

// activeFleetSize counts the nodes that are not terminated or failed.
func (f *Fleet) activeFleetSize() int {
	s := f.summary()
	return int(s.GetNodes() - s.GetTerminated() - s.GetProvisionFailed())
}

// Heartbeat records a sign of life. It never writes to disk.
func (f *Fleet) Heartbeat(ctx context.Context, req *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error) {
	ns := f.get(req.GetNodeId())
	if ns == nil {
		return nil, apierr.NotRegistered(req.GetNodeId())
	}
	now := f.clock.Now()
	lifecycle := ns.node.Load().GetLifecycle()
	terminated := lifecycle == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED
	var samples []sample
	if !terminated {
		samples = packSamples(req.GetSamples())
	}
	ns.rt.Lock()
	ns.lastHeartbeat = now
	ns.samples = samples
	for _, smp := range samples {
		historyOf(&ns.history, smp.idx).add(smp)
	}
	ns.rt.Unlock()
	switch {
	case terminated:
		// A terminated node stays OFFLINE until its agent registers again,
		// which starts it afresh.
	case ns.reachability() != fleetv1.Reachability_REACHABILITY_ONLINE:
		f.setReachability(ns, fleetv1.Reachability_REACHABILITY_ONLINE)
	default:
		f.hub.heartbeat(ns)
	}
	return &nodev1.HeartbeatResponse{Lifecycle: lifecycle, PendingCommands: uint32(max(ns.pending.Load(), 0))}, nil
}

// setReachability publishes a reachability change as a node upsert.
func (f *Fleet) setReachability(ns *nodeState, r fleetv1.Reachability) {
	f.hub.publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
		if ns.reachability() == r || ns.removed.Load() {
			return
		}
		if r == fleetv1.Reachability_REACHABILITY_ONLINE && ns.node.Load().GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED {
			// A heartbeat that raced the termination.
			return
		}
		f.swap(ns, ns.node.Load(), r, true)
		emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: f.view(ns)}})
	})
}

// ReportHealth records events and a metrics snapshot and re-judges health.
func (f *Fleet) ReportHealth(ctx context.Context, req *nodev1.ReportHealthRequest) (*nodev1.ReportHealthResponse, error) {
	now := f.clock.Now()
	var resp *nodev1.ReportHealthResponse
	err := f.nodeLocked(req.GetNodeId(), false, func(ns *nodeState, cur *fleetv1.Node) error {
		if cur == nil {
			return apierr.NotRegistered(req.GetNodeId())
		}
		if err := checkEventGPUs(cur, req); err != nil {
			return err
		}
		if cur.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED {
			// Taken and set aside: a terminated node's GPUs are no longer
			// judged. Its agent registers again to come back.
			resp = &nodev1.ReportHealthResponse{Health: cur.GetHealth()}
			return nil
		}
		if len(req.GetEvents()) == 0 && !f.reportChanges(cur, req) {
			// The usual report: fresh metrics, nothing to judge again.
			ns.keep(req)
			resp = &nodev1.ReportHealthResponse{Health: cur.GetHealth()}
			return nil
		}
		n := proto.CloneOf(cur)
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
			ev := proto.CloneOf(e)
			ev.Id = ""
			if ev.Time == nil {
				ev.Time = ts(now)
			}
			if g := eventGPU[uint32(max(ev.GetGpuIndex(), 0))]; g != nil && ev.GetGpuIndex() >= 0 {
				if ev.GetGpuUuid() == "" {
					ev.GpuUuid = g.GetUuid()
				}
				rep := ns.repeats[g.GetIndex()]
				if rep == nil {
					rep = &policy.Repeats{}
					ns.repeats[g.GetIndex()] = rep
				}
				f.policy.Judge(g, ev, rep, now)
			} else {
				f.policy.Judge(&fleetv1.Gpu{}, ev, nil, now)
			}
			c.events = append(c.events, ev)
		}
		if len(req.GetMetrics()) > 0 {
			reported := make(map[uint32]bool)
			for _, m := range req.GetMetrics() {
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
		ns.keep(req)
		rollupNode(n)
		f.autoCordon(ctx, ns, cur.GetHealth(), n, c, now)
		if !proto.Equal(n, cur) {
			c.node = n
		}
		if err := f.commit(ctx, ns, c); err != nil {
			return err
		}
		f.wakeAgent(ns, c)
		for _, ev := range c.events {
			if policy.Rank(ev.GetHealth()) > policy.Rank(fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY) {
				f.log.Info("health event", "node", ev.GetNodeId(), "gpu", ev.GetGpuIndex(), "kind", ev.GetKind(),
					"xid", ev.GetXid(), "health", ev.GetHealth(), "cause", ev.GetCause(), "remedy", ev.GetRemedy())
			}
		}
		resp = &nodev1.ReportHealthResponse{Accepted: uint32(len(req.GetEvents())), Health: n.GetHealth()}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// reportChanges reports whether a report without events would change the
// node: a first snapshot, a GPU missing from it, or a level condition that
// started or cleared.
func (f *Fleet) reportChanges(n *fleetv1.Node, req *nodev1.ReportHealthRequest) bool {
	if len(req.GetMetrics()) == 0 {
		return false
	}
	byIndex := make(map[uint32]*fleetv1.GpuMetrics, len(req.GetMetrics()))
	for _, m := range req.GetMetrics() {
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

// keep stores a report's metrics, encoded in one block (a fraction of the
// memory and of the garbage collector's work of the messages), and the
// agent's drop counter.
func (ns *nodeState) keep(req *nodev1.ReportHealthRequest) {
	var encoded []byte
	if len(req.GetMetrics()) > 0 {
		encoded, _ = proto.Marshal(&nodev1.ReportHealthRequest{Metrics: req.GetMetrics()})
	}
	ns.rt.Lock()
	defer ns.rt.Unlock()
	if encoded != nil {
		ns.metrics = encoded
	}
	ns.dropped = req.GetDroppedEvents()
}

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
func checkEventGPUs(n *fleetv1.Node, req *nodev1.ReportHealthRequest) error {
	known := make(map[uint32]bool)
	for _, g := range n.GetGpus() {
		known[g.GetIndex()] = true
	}
	for i, e := range req.GetEvents() {
		if e.GetGpuIndex() >= 0 && !known[uint32(e.GetGpuIndex())] {
			return status.Errorf(codes.InvalidArgument, "events[%d].gpu_index: node %q has no GPU %d", i, n.GetNodeId(), e.GetGpuIndex())
		}
	}
	for i, m := range req.GetMetrics() {
		if !known[m.GetGpuIndex()] {
			return status.Errorf(codes.InvalidArgument, "metrics[%d].gpu_index: node %q has no GPU %d", i, n.GetNodeId(), m.GetGpuIndex())
		}
	}
	return nil
}

// newCommand builds a pending command with a fresh id.
func (f *Fleet) newCommand(ctx context.Context, nodeID string, typ fleetv1.CommandType, reason, by string, now time.Time) (*fleetv1.Command, error) {
	id, err := f.newID(ctx, "cmd")
	if err != nil {
		return nil, err
	}
	return &fleetv1.Command{
		Id:        id,
		NodeId:    nodeID,
		Type:      typ,
		Status:    fleetv1.CommandStatus_COMMAND_STATUS_PENDING,
		Reason:    reason,
		IssuedBy:  by,
		CreatedAt: ts(now),
		UpdatedAt: ts(now),
	}, nil
}

// wakeAgent ends the node's command long poll if c queued a command. The
// caller holds ns.mu.
func (f *Fleet) wakeAgent(ns *nodeState, c *change) {
	for _, cmd := range c.commands {
		if cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_PENDING {
			close(ns.wake)
			ns.wake = make(chan struct{})
			return
		}
	}
}

// NodeCommands is the agent's long poll: it returns the node's pending
// commands, marked delivered, as soon as there are any, or none after wait.
func (f *Fleet) NodeCommands(ctx context.Context, nodeID string, wait time.Duration) ([]*fleetv1.Command, error) {
	wait = min(wait, f.cfg.CommandPollTimeout.Duration)
	ns := f.get(nodeID)
	if ns == nil {
		return nil, apierr.NotRegistered(nodeID)
	}
	timer := f.clock.NewTimer(wait)
	defer timer.Stop()
	for {
		ns.mu.Lock()
		var out []*fleetv1.Command
		now := f.clock.Now()
		for i, cmd := range ns.open {
			if cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_PENDING {
				d := proto.CloneOf(cmd)
				d.Status = fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED
				d.UpdatedAt = ts(now)
				ns.open[i] = d
				out = append(out, d)
			}
		}
		if len(out) > 0 {
			err := f.commit(ctx, ns, &change{commands: out})
			if err != nil {
				// Not delivered after all: keep them pending for the next poll.
				for i, cmd := range ns.open {
					if slices.Contains(out, cmd) {
						p := proto.CloneOf(cmd)
						p.Status = fleetv1.CommandStatus_COMMAND_STATUS_PENDING
						ns.open[i] = p
					}
				}
			}
			ns.recount()
			ns.mu.Unlock()
			return out, err
		}
		wake := ns.wake
		ns.mu.Unlock()
		select {
		case <-wake:
		case <-timer.Chan():
			return nil, nil
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-f.closing:
			return nil, status.Error(codes.Unavailable, "control plane is shutting down")
		}
	}
}

// CommandResult records how a command went and applies its consequences.
func (f *Fleet) CommandResult(ctx context.Context, req *nodev1.ReportCommandResultRequest) (*fleetv1.Command, error) {
	now := f.clock.Now()
	var out *fleetv1.Command
	err := f.nodeLocked(req.GetNodeId(), false, func(ns *nodeState, cur *fleetv1.Node) error {
		if cur == nil {
			return apierr.NotRegistered(req.GetNodeId())
		}
		i := slices.IndexFunc(ns.open, func(c *fleetv1.Command) bool { return c.GetId() == req.GetCommandId() })
		if i < 0 {
			hist, err := f.store.Commands(ctx, req.GetNodeId(), 0)
			if err != nil {
				return status.Error(codes.Unavailable, "command history could not be read")
			}
			for _, c := range hist {
				if c.GetId() == req.GetCommandId() {
					return status.Errorf(codes.FailedPrecondition, "command_id: command %s already finished as %s", c.GetId(), c.GetStatus())
				}
			}
			return status.Errorf(codes.NotFound, "command_id: node %q has no command %q", req.GetNodeId(), req.GetCommandId())
		}
		cmd := proto.CloneOf(ns.open[i])
		cmd.Status = req.GetStatus()
		cmd.Message = req.GetMessage()
		cmd.SignalledPids = req.GetSignalledPids()
		cmd.RemainingPids = req.GetRemainingPids()
		cmd.UpdatedAt = ts(now)
		c := &change{commands: []*fleetv1.Command{cmd}}
		if cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED {
			ns.open[i] = cmd
		} else {
			// Finished: it leaves the open commands (nodeLocked puts it back
			// if the change cannot be saved).
			ns.open = slices.Delete(ns.open, i, i+1)
			delete(ns.redelivered, cmd.GetId())
			n := proto.CloneOf(cur)
			f.commandFinished(ns, n, c, cmd, now)
			if !proto.Equal(n, cur) {
				c.node = n
			}
		}
		if err := f.commit(ctx, ns, c); err != nil {
			return err
		}
		out = cmd
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.log.Info("command result", "node", req.GetNodeId(), "command", out.GetId(), "type", out.GetType(),
		"status", out.GetStatus(), "message", firstLine(out.GetMessage()))
	return out, nil
}

// commandFinished moves the node on when a command it waited for ends. The
// caller holds ns.mu.
func (f *Fleet) commandFinished(ns *nodeState, n *fleetv1.Node, c *change, cmd *fleetv1.Command, now time.Time) {
	ok := cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
	switch cmd.GetType() {
	case fleetv1.CommandType_COMMAND_TYPE_DRAIN:
		if ok && n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING {
			setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED, "drained: "+firstLine(cmd.GetMessage()), now)
		}
	case fleetv1.CommandType_COMMAND_TYPE_TERMINATE:
		if ok && n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING && n.GetProvider() == "" {
			markTerminated(ns, n, c, "terminated: agent stopped", now)
		}
	}
}

// markTerminated makes n TERMINATED: its unfinished commands are cancelled,
// since no agent is left to carry them out, and its live metrics dropped.
// The caller holds ns.mu.
func markTerminated(ns *nodeState, n *fleetv1.Node, c *change, reason string, now time.Time) {
	setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED, reason, now)
	n.Drain = nil
	cancelOpen(ns, c, anyCommand, reason, now)
	ns.terminateQueued = time.Time{}
	ns.rt.Lock()
	ns.samples = nil
	ns.metrics = nil
	ns.rt.Unlock()
}

func setLifecycle(n *fleetv1.Node, l fleetv1.LifecycleState, reason string, now time.Time) {
	n.Lifecycle = l
	n.LifecycleReason = reason
	n.LifecycleChangedAt = ts(now)
	if l != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED {
		n.CordonedByPolicy = false
	}
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
