package tui

import (
	"fmt"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// wire is msgs as the watcher hands them to the console: encoded, and
// decoded as they come off the stream.
func wire(msgs ...*controlplanev1.WatchFleetResponse) streamMsg {
	out := make([]Message, len(msgs))
	for i, msg := range msgs {
		b, err := proto.Marshal(msg)
		if err != nil {
			panic(err)
		}
		if out[i], err = DecodeMessage(b); err != nil {
			panic(err)
		}
	}
	return streamMsg{msgs: out}
}

// Apply feeds stream messages in as the watcher would.
func (m *Model) Apply(msgs ...*controlplanev1.WatchFleetResponse) { m.Update(wire(msgs...)) }

// now is the fixed clock of the console tests.
var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return now }

// fixtureNode builds a node with n GPUs; bad lists GPU glyphs to apply.
func fixtureNode(id string, n int, lifecycle fleetv1.LifecycleState, health fleetv1.HealthStatus, reach fleetv1.Reachability, seenAgo time.Duration) *fleetv1.Node {
	node := &fleetv1.Node{
		NodeId: id, Hostname: id, Lifecycle: lifecycle, Health: health, Reachability: reach,
		Labels:          map[string]string{"zone": "us-east-1a", "pool": "train"},
		LastHeartbeatAt: timestamppb.New(now.Add(-seenAgo)),
		DriverVersion:   "550.54.15", CudaVersion: "12.4", AgentVersion: "v0.1.0",
	}
	for i := range n {
		node.Gpus = append(node.Gpus, &fleetv1.Gpu{
			Index: uint32(i), Uuid: fmt.Sprintf("GPU-%s-%d", id, i), Name: "NVIDIA H100 80GB HBM3",
			MemoryTotalBytes: 80 << 30, Health: fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY,
		})
		node.Samples = append(node.Samples, &fleetv1.GpuSample{
			GpuIndex: uint32(i), UtilizationGpuPercent: uint32(50 + 5*i), TemperatureCelsius: uint32(60 + i),
			PowerUsageMilliwatts: 400000, MemoryUsedBytes: 40 << 30,
		})
	}
	return node
}

// fixtureFleet is a small fleet with one node in each interesting state.
func fixtureFleet() []*fleetv1.Node {
	healthy := fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
	online := fleetv1.Reachability_REACHABILITY_ONLINE
	a := fixtureNode("gpu-a01", 8, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, healthy, online, 2*time.Second)
	b := fixtureNode("gpu-a02", 8, fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, online, 3*time.Second)
	b.Gpus[2].Health = fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
	b.Gpus[2].HealthCause = "GPU has fallen off the bus"
	b.Gpus[2].Remedy = fleetv1.Remedy_REMEDY_REBOOT_NODE
	b.Gpus[2].Faults = []*fleetv1.Fault{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, Health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY,
		Cause: "GPU has fallen off the bus", Remedy: fleetv1.Remedy_REMEDY_REBOOT_NODE}}
	b.HealthCause = "gpu2: GPU has fallen off the bus"
	b.Remedy = fleetv1.Remedy_REMEDY_REBOOT_NODE
	b.LifecycleReason = "auto-cordon: gpu2: GPU has fallen off the bus"
	b.CordonedByPolicy = true
	c := fixtureNode("gpu-a03", 8, fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, healthy, online, time.Second)
	c.LifecycleReason = "rack maintenance"
	d := fixtureNode("gpu-b01", 4, fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING, fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED, fleetv1.Reachability_REACHABILITY_STALE, 45*time.Second)
	d.Gpus[1].Health = fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED
	d.Gpus[1].HealthCause = "temperature at or past the GPU's slowdown threshold"
	d.Gpus[1].Remedy = fleetv1.Remedy_REMEDY_CHECK_COOLING
	d.HealthCause = "gpu1: temperature at or past the GPU's slowdown threshold"
	d.Remedy = fleetv1.Remedy_REMEDY_CHECK_COOLING
	d.Labels = map[string]string{"zone": "us-east-1b", "pool": "infer"}
	e := fixtureNode("gpu-b02", 4, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, fleetv1.Reachability_REACHABILITY_OFFLINE, 5*time.Minute)
	e.Gpus[3].Lost = true
	e.Gpus[3].Health = fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
	e.Gpus[3].HealthCause = "GPU lost (missing from NVML or failing every call)"
	e.Gpus[3].Remedy = fleetv1.Remedy_REMEDY_REBOOT_NODE
	e.HealthCause = "gpu3: GPU lost (missing from NVML or failing every call)"
	e.Remedy = fleetv1.Remedy_REMEDY_REBOOT_NODE
	// gpu-b02 went OFFLINE holding the last samples it sent, as a control
	// plane that has not restarted since still has them.
	e.Labels = map[string]string{"zone": "us-east-1b", "pool": "infer"}
	return []*fleetv1.Node{a, b, c, d, e}
}

// heldBackFleet is the fixture fleet on a bad day: gpu-a04 turned
// UNHEALTHY 4 minutes ago, after gpu-a02 was cordoned automatically, and
// the breaker held back its cordon. gpu-b02 is OFFLINE, as before.
func heldBackFleet() []*fleetv1.Node {
	n := fixtureNode("gpu-a04", 8, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY,
		fleetv1.Reachability_REACHABILITY_ONLINE, 2*time.Second)
	g := n.Gpus[5]
	g.Health = fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
	g.HealthCause = "double-bit ECC error"
	g.Remedy = fleetv1.Remedy_REMEDY_RESET_GPU
	g.Faults = []*fleetv1.Fault{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 48, Health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY,
		Cause: "double-bit ECC error", Remedy: fleetv1.Remedy_REMEDY_RESET_GPU}}
	n.HealthCause = "gpu5: double-bit ECC error"
	n.Remedy = fleetv1.Remedy_REMEDY_RESET_GPU
	n.CordonHeldBackAt = timestamppb.New(now.Add(-4 * time.Minute))
	return append(fixtureFleet(), n)
}

// heldBack is a stream message that loads the held-back fleet with the
// breaker tripped, for tests that send it among keys.
func heldBack() streamMsg {
	s := snapshot(41, heldBackFleet(), fixtureEvents())
	s.GetSnapshot().Breaker = &fleetv1.BreakerStatus{AutoCordonEnabled: true, MaxFraction: 0.5, WindowSeconds: 300,
		Tripped: true, TrippedAt: timestamppb.New(now.Add(-4 * time.Minute)), RecentAutoCordons: 1, SuppressedCordons: 1}
	return wire(s)
}

func fixtureEvents() []*fleetv1.HealthEvent {
	return []*fleetv1.HealthEvent{
		{Id: "ev-3", NodeId: "gpu-a02", GpuIndex: 2, Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, Time: timestamppb.New(now.Add(-time.Minute)),
			Health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, Cause: "GPU has fallen off the bus", Remedy: fleetv1.Remedy_REMEDY_REBOOT_NODE},
		{Id: "ev-2", NodeId: "gpu-b01", GpuIndex: 1, Kind: fleetv1.EventKind_EVENT_KIND_THERMAL, Time: timestamppb.New(now.Add(-3 * time.Minute)),
			Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED, Cause: "temperature at or past the GPU's slowdown threshold", Remedy: fleetv1.Remedy_REMEDY_CHECK_COOLING},
		{Id: "ev-1", NodeId: "gpu-a01", GpuIndex: 0, Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13, Time: timestamppb.New(now.Add(-10 * time.Minute)),
			Health: fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, Cause: "graphics engine exception (application)", Remedy: fleetv1.Remedy_REMEDY_CHECK_APPLICATION},
	}
}

// snapshot is a complete one-chunk snapshot of nodes.
func snapshot(rev uint64, nodes []*fleetv1.Node, events []*fleetv1.HealthEvent) *controlplanev1.WatchFleetResponse {
	s := &fleetv1.FleetSummary{Nodes: uint32(len(nodes))}
	for _, n := range nodes {
		s.Gpus += uint32(len(n.GetGpus()))
		switch n.GetHealth() {
		case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
			s.Healthy++
		case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
			s.Degraded++
		case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
			s.Unhealthy++
		}
		switch n.GetLifecycle() {
		case fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED:
			s.Cordoned++
		case fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING:
			s.Draining++
		}
		switch n.GetReachability() {
		case fleetv1.Reachability_REACHABILITY_OFFLINE:
			s.Offline++
		case fleetv1.Reachability_REACHABILITY_STALE:
			s.Stale++
		}
		if n.GetCordonHeldBackAt() != nil {
			s.HeldBack++
		}
	}
	return &controlplanev1.WatchFleetResponse{Revision: rev, Change: &controlplanev1.WatchFleetResponse_Snapshot{Snapshot: &controlplanev1.Snapshot{
		Nodes: nodes, Complete: true, Summary: s, RecentEvents: events,
		Breaker: &fleetv1.BreakerStatus{AutoCordonEnabled: true, MaxFraction: 0.5, WindowSeconds: 300},
	}}}
}

// fixtureStatus is the control plane's answer to GetFleetStatus, as far as
// the console keeps it: its providers, and its limits as they are today.
func fixtureStatus() fleetStatusMsg {
	return fleetStatusMsg{providers: []string{"local"}, limits: &controlplanev1.OperatorLimits{
		MaxDrainDeadline:             durationpb.New(7 * 24 * time.Hour),
		DefaultDrainDeadline:         durationpb.New(time.Hour),
		MinTerminateDrainTimeout:     durationpb.New(time.Second),
		DefaultTerminateDrainTimeout: durationpb.New(10 * time.Minute),
		MaxProvisionCount:            1000,
		MaxReasonBytes:               1024,
		MaxGpusPerNode:               64,
	}}
}

// press builds the key message a terminal sends for a key name.
func press(k string) tea.KeyPressMsg {
	switch k {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case "up":
		return tea.KeyPressMsg{Code: tea.KeyUp}
	case "down":
		return tea.KeyPressMsg{Code: tea.KeyDown}
	case "backspace":
		return tea.KeyPressMsg{Code: tea.KeyBackspace}
	case "ctrl+c":
		return tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
	case "ctrl+a":
		return tea.KeyPressMsg{Code: 'a', Mod: tea.ModCtrl}
	}
	r := []rune(k)[0]
	return tea.KeyPressMsg{Code: r, Text: k}
}

// keys turns "jj/abc" style input into key presses: each rune is a key.
func typed(s string) []tea.Msg {
	var out []tea.Msg
	for _, r := range s {
		out = append(out, press(string(r)))
	}
	return out
}

// The views of a test console.
func fleetOf(m *Model) *fleetView   { return m.views[fleetViewName].(*fleetView) }
func eventsOf(m *Model) *eventsView { return m.views[eventsViewName].(*eventsView) }
func nodeOf(m *Model) *nodeView     { return m.views[nodeViewName].(*nodeView) }

// filterOpen reports whether the / prompt is open.
func filterOpen(m *Model) bool {
	_, ok := m.prompt.(*filterPrompt)
	return ok
}

// filterText is what the open / prompt holds.
func filterText(m *Model) string {
	if fp, ok := m.prompt.(*filterPrompt); ok {
		return fp.input.Value()
	}
	return ""
}

// The views of pools.
func poolsOf(m *Model) *poolsView { return m.views[poolsViewName].(*poolsView) }
func poolOf(m *Model) *poolView   { return m.views[poolViewName].(*poolView) }

// fixturePools are three pools: train, kept from the configuration file
// and autoscaled, one node short; infer, with a degraded and an
// unhealthy node; and spare, empty at its min of 0.
func fixturePools() []*fleetv1.Pool {
	train := &fleetv1.Pool{
		Name: "train", Wanted: 4, FromConfig: true, WantedChangedAt: timestamppb.New(now.Add(-5 * time.Minute)),
		Spec: &fleetv1.PoolSpec{
			Providers: []string{"aws", "gcp"}, InstanceType: "p5.48xlarge", GpusPerNode: 8, Region: "us-east-1",
			Zones: []string{"us-east-1a", "us-east-1b"}, Min: 2, Max: 8, Labels: map[string]string{"team": "ml"},
			ReplaceUnhealthy: true, UnhealthyGrace: durationpb.New(10 * time.Minute), MaxSurge: 2,
			Autoscaling: &fleetv1.Autoscaling{Utilization: &fleetv1.UtilizationScaling{ScaleUpAbove: 80, ScaleDownBelow: 20}},
		},
		Status: &fleetv1.PoolStatus{Nodes: 3, Provisioning: 1, Healthy: 2, Unhealthy: 1, Utilization: 67},
		Decisions: []*fleetv1.PoolDecision{
			{At: timestamppb.New(now.Add(-2 * time.Minute)), Action: fleetv1.PoolAction_POOL_ACTION_PROVISION, By: "reconciler",
				Reason: "1 node short of the wanted 4", NodeIds: []string{"gpu-a04"}},
			{At: timestamppb.New(now.Add(-5 * time.Minute)), Action: fleetv1.PoolAction_POOL_ACTION_SCALE, By: "autoscaler",
				Reason: "mean utilisation 86% above 80% for 5m: wanted 3 → 4"},
			{At: timestamppb.New(now.Add(-time.Hour)), Action: fleetv1.PoolAction_POOL_ACTION_HOLD, By: "reconciler",
				Reason: "replacement of gpu-a02 held: the auto-cordon breaker is open", NodeIds: []string{"gpu-a02"}},
		},
	}
	infer := &fleetv1.Pool{
		Name: "infer", Wanted: 2,
		Spec:   &fleetv1.PoolSpec{Providers: []string{"lambda"}, Min: 1, Max: 4},
		Status: &fleetv1.PoolStatus{Nodes: 2, Degraded: 1, Unhealthy: 1, Offline: 1, Utilization: 57},
		Decisions: []*fleetv1.PoolDecision{
			{At: timestamppb.New(now.Add(-30 * time.Minute)), Action: fleetv1.PoolAction_POOL_ACTION_REPLACE, By: "reconciler",
				Reason: "gpu-b00 stayed UNHEALTHY past 10m", NodeIds: []string{"gpu-b00", "gpu-b02"}},
		},
	}
	spare := &fleetv1.Pool{
		Name: "spare", Spec: &fleetv1.PoolSpec{Providers: []string{"static"}, Min: 0, Max: 2}, Status: &fleetv1.PoolStatus{},
	}
	return []*fleetv1.Pool{infer, spare, train}
}

// pooledFleet is the fixture fleet with gpu-a0* in train and gpu-b0* in
// infer.
func pooledFleet() []*fleetv1.Node {
	nodes := fixtureFleet()
	for _, n := range nodes {
		n.Pool = "infer"
		if strings.HasPrefix(n.GetNodeId(), "gpu-a") {
			n.Pool = "train"
		}
	}
	return nodes
}

// pooledSnapshot is a complete snapshot of the pooled fleet and its pools.
func pooledSnapshot(rev uint64) *controlplanev1.WatchFleetResponse {
	s := snapshot(rev, pooledFleet(), fixtureEvents())
	s.GetSnapshot().Pools = fixturePools()
	return s
}

// pooled is a stream message that loads the pooled fleet, for tests that
// send it among keys.
func pooled() streamMsg {
	return wire(pooledSnapshot(41))
}
