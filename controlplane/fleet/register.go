package fleet

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/policy"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Register records a node's registration and answers with its intervals.
func (f *Fleet) Register(ctx context.Context, req *nodev1.RegisterNodeRequest) (*nodev1.RegisterNodeResponse, error) {
	now := f.clock.Now()
	var lifecycle fleetv1.LifecycleState
	err := f.nodeLocked(req.GetNodeId(), true, func(ns *nodeState, cur *fleetv1.Node) error {
		c := &change{}
		if ns.book.unprovision && cur.GetLifecycle() == provisionFailed {
			return status.Errorf(codes.FailedPrecondition, "node_id: node %q did not register in time and its instance is being stopped", req.GetNodeId())
		}
		if cur.GetLifecycle() == terminated {
			// A terminated node starts afresh; what it was asked before
			// does not apply to the new one.
			cancelOpen(ns, c, anyCommand, "node registered again after it was terminated", now)
		}
		reg, err := registration(f.policy, cur, req, now)
		if err != nil {
			return err
		}
		if reg.claimed != "" {
			f.log.Warn("agent claims an instance other than the one its provider started; ignored",
				"node", req.GetNodeId(), "provider", cur.GetProvider(), "instance", cur.GetInstanceId(), "claimed", reg.claimed)
		}
		if reg.fresh {
			ns.book.repeats = repeatCounts{}
		}
		for _, idx := range reg.replaced {
			ns.book.repeats.forget(idx)
		}
		if reg.rebooted {
			ns.book.repeats.remedied()
		}
		c.events = append(c.events, reg.events...)
		n := reg.node
		f.autoCordon(ctx, ns, cur.GetHealth(), n, c, now)
		c.node = n
		// A reboot asked of another boot is done.
		closeOpen(ns, c, rebootedFrom(req.GetBootId()), fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
			"rebooted: the node registered again with boot id "+req.GetBootId(), now)
		// An agent that registers again lost whatever it was doing: hand its
		// unfinished commands out again. A reboot it acknowledged stays as
		// it is: back on the same boot, the node did not go down, and an
		// operator asks again rather than the agent rebooting unbidden.
		requeue(ns, c, func(cmd *fleetv1.Command) bool {
			acknowledgedReboot := cmd.GetType() == fleetv1.CommandType_COMMAND_TYPE_REBOOT &&
				cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED
			return cmd.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_PENDING && !acknowledgedReboot
		}, now)
		c.insert = cur == nil
		// Registering is hearing from the node.
		ns.live.mu.Lock()
		ns.live.lastHeartbeat = now
		ns.live.newRun = true
		ns.live.mu.Unlock()
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
		HeartbeatInterval:    durationpb.New(f.cfg.HeartbeatInterval),
		HealthReportInterval: durationpb.New(f.cfg.HealthReportInterval),
		CommandPollTimeout:   durationpb.New(f.cfg.CommandPollTimeout),
		Lifecycle:            lifecycle,
		CommandDelivery:      f.cfg.CommandDelivery,
	}, nil
}

// registered is what a registration makes of a node.
type registered struct {
	// node is the node's new state.
	node *fleetv1.Node
	// events tell what the registration found: GPUs lost, found again,
	// replaced, faults a reboot cleared.
	events []*fleetv1.HealthEvent
	// fresh is set when the node starts afresh (new, or back after it was
	// terminated): its repeat counts start again.
	fresh bool
	// rebooted is set when the node registers from a new boot: the reboot
	// was every GPU's remedy.
	rebooted bool
	// replaced are the indexes of new GPUs that replaced missing ones:
	// their slots' repeat counts are the old GPUs' and go.
	replaced []uint32
	// claimed is an instance id the agent gave that is not the one its
	// provider named, and was ignored.
	claimed string
}

// registration works out a node's state after a registration, from its
// state before (nil for a new node) and the request. It changes neither:
// what it decides is in the result.
func registration(pol *policy.Policy, prev *fleetv1.Node, req *nodev1.RegisterNodeRequest, now time.Time) (registered, error) {
	var cur *fleetv1.Node
	if prev != nil {
		cur = proto.CloneOf(prev)
	}
	fresh := cur == nil || cur.GetLifecycle() == terminated
	out := registered{fresh: fresh}
	var n *fleetv1.Node
	if fresh {
		n = &fleetv1.Node{
			NodeId:    req.GetNodeId(),
			Lifecycle: unset,
			Health:    fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN,
		}
		if cur != nil && cur.GetProvider() != "" {
			// A node taken for gone whose agent still runs is the same
			// machine: it stays its provider's and its pool's, so it is
			// stopped through them when it ends.
			n.Provider, n.Pool, n.InstanceId = cur.GetProvider(), cur.GetPool(), cur.GetInstanceId()
		}
	} else {
		n = cur
	}
	to, err := next(n, actRegister)
	if err != nil {
		return out, err
	}
	if to != n.GetLifecycle() {
		setLifecycle(n, to, "registered", byControlPlane, now)
	}
	n.Hostname = req.GetHostname()
	// The agent's labels are the node's: a label it no longer sends is
	// gone. Providers pass the provisioning labels to the agents they start.
	n.Labels = maps.Clone(req.GetLabels())
	n.DriverVersion = req.GetDriverVersion()
	n.CudaVersion = req.GetCudaVersion()
	n.AgentVersion = req.GetAgentVersion()
	n.Simulated = req.GetSimulated()
	n.RemediesDisabled = req.GetRemediesDisabled()
	n.Scheduler = proto.CloneOf(req.GetScheduler())
	// A node a provider started has the instance the provider named: an
	// agent does not choose what the control plane stops when it ends
	// the node. Only a node that joined on its own takes its agent's.
	switch {
	case n.GetProvider() == "" && req.GetInstanceId() != "":
		n.InstanceId = req.GetInstanceId()
	case n.GetProvider() != "" && n.GetInstanceId() != "" && req.GetInstanceId() != "" && req.GetInstanceId() != n.GetInstanceId():
		out.claimed = req.GetInstanceId()
	}
	n.RegisteredAt = ts(now)
	rebooted := !fresh && req.GetBootId() != "" && req.GetBootId() != cur.GetBootId()
	out.rebooted = rebooted
	n.BootId = req.GetBootId()
	if rebooted {
		// A new boot numbers its kernel log anew.
		n.KernelSeq = 0
	}

	// Match the inventory by UUID: a GPU that was there before and is
	// missing now is lost; its faults and remedy history stay with it.
	old := make(map[string]*fleetv1.Gpu)
	for _, g := range n.GetGpus() {
		old[g.GetUuid()] = g
	}
	var gpus, added []*fleetv1.Gpu
	seen := make(map[string]bool)
	for _, in := range req.GetGpus() {
		g := old[in.GetUuid()]
		if g == nil {
			g = &fleetv1.Gpu{Health: fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN}
			added = append(added, g)
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
			ev = pol.ClearAfterReboot(g, now)
		} else {
			// Back without a reboot: only the loss is over.
			ev = pol.Found(g, now)
		}
		if ev != nil {
			out.events = append(out.events, ev)
		}
		seen[g.GetUuid()] = true
		gpus = append(gpus, g)
	}
	var missing []*fleetv1.Gpu
	for _, g := range n.GetGpus() {
		if !seen[g.GetUuid()] {
			missing = append(missing, g)
		}
	}
	gpus = append(gpus, missingGPUs(pol, &out, missing, added, gpus, req, rebooted, now)...)
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
	out.node = n
	return out, nil
}

// missingGPUs judges the GPUs the node had that are not in this
// registration, and the GPUs the agent says do not answer, as
// matchInventory matched them; it returns the lost GPUs the node keeps.
//
// A missing GPU that a new one replaced is retired with its faults, or the
// node would read UNHEALTHY for ever. The others are lost: once, and again
// after each reboot that did not bring them back, so a GPU a reboot does
// not mend escalates like any other. A GPU NVML counts that does not
// answer and that no placeholder stands for yet is lost too; on a first
// registration nothing else would tell of it.
func missingGPUs(pol *policy.Policy, out *registered, missing, added, present []*fleetv1.Gpu, req *nodev1.RegisterNodeRequest, rebooted bool, now time.Time) []*fleetv1.Gpu {
	inv := matchInventory(missing, added, req.GetUnansweredGpus())
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
			pol.LostAgain(g, ev, now)
		} else {
			pol.Judge(g, ev, nil, now)
		}
		out.events = append(out.events, ev)
	}
	var kept []*fleetv1.Gpu
	for _, g := range missing {
		if nw := inv.replaced[g]; nw != nil {
			out.replaced = append(out.replaced, nw.GetIndex())
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
			out.events = append(out.events, ev)
			continue
		}
		if u := inv.stands[g]; u != nil {
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

	names := map[string]bool{}
	for _, g := range slices.Concat(present, kept) {
		names[g.GetUuid()] = true
	}
	for _, u := range inv.unplaced {
		g := &fleetv1.Gpu{Index: u.GetIndex(), Uuid: placeholderName(u, names), Health: fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN}
		lost(g, fmt.Sprintf("GPU %d did not answer when the agent started (%s)", u.GetIndex(), u.GetReason()))
		kept = append(kept, g)
	}
	return kept
}
