package fleet

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/internal/fleettest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func TestRegistration(t *testing.T) {
	now := time.Now()
	pol := policy.Default()
	req := func(gpus []*fleetv1.Gpu, boot string) *nodev1.RegisterNodeRequest {
		return &nodev1.RegisterNodeRequest{NodeId: "n1", Hostname: "n1", Gpus: gpus, BootId: boot, Labels: map[string]string{"zone": "a"}}
	}
	// known is a node registered once with two healthy GPUs, in a state.
	known := func(l fleetv1.LifecycleState) *fleetv1.Node {
		gs := fleettest.GPUs(2)
		for _, g := range gs {
			g.Health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
			g.PciBusId = "0000:0" + string(rune('1'+g.GetIndex())) + ":00.0"
		}
		return &fleetv1.Node{NodeId: "n1", Lifecycle: l, Health: fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, Gpus: gs, BootId: "boot-1", Labels: map[string]string{"old": "x"}}
	}
	faulty := func() *fleetv1.Node {
		n := known(active)
		pol.Judge(n.Gpus[1], &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 1}, nil, now)
		rollupNode(n)
		return n
	}
	withBus := func(gs []*fleetv1.Gpu) []*fleetv1.Gpu {
		for _, g := range gs {
			g.PciBusId = "0000:0" + string(rune('1'+g.GetIndex())) + ":00.0"
		}
		return gs
	}
	replacement := withBus(fleettest.GPUs(2))
	replacement[1].Uuid = "GPU-new"

	tests := []struct {
		name      string
		prev      *fleetv1.Node
		req       *nodev1.RegisterNodeRequest
		lifecycle fleetv1.LifecycleState
		health    fleetv1.HealthStatus
		fresh     bool
		events    []fleetv1.EventKind
		replaced  []uint32
		lost      int
	}{
		// New GPUs are UNKNOWN until the first health snapshot.
		{name: "new-node", req: req(fleettest.GPUs(2), "boot-1"), lifecycle: active, health: fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN, fresh: true},
		{name: "provisioned-node-comes-up", prev: &fleetv1.Node{NodeId: "n1", Lifecycle: provisioning}, req: req(fleettest.GPUs(2), "boot-1"),
			lifecycle: active, health: fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN},
		{name: "cordoned-node-stays-cordoned", prev: known(cordoned), req: req(withBus(fleettest.GPUs(2)), "boot-1"),
			lifecycle: cordoned, health: fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY},
		{name: "terminated-node-starts-afresh", prev: known(terminated), req: req(fleettest.GPUs(2), "boot-2"),
			lifecycle: active, health: fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN, fresh: true},
		{name: "missing-gpu-is-lost", prev: known(active), req: req(withBus(fleettest.GPUs(1)), "boot-1"),
			lifecycle: active, health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, events: []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_GPU_LOST}, lost: 1},
		{name: "new-gpu-in-the-slot-replaces-the-old", prev: faulty(), req: req(replacement, "boot-2"),
			lifecycle: active, health: fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN, events: []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED}, replaced: []uint32{1}},
		{name: "reboot-clears-an-xid-fault", prev: faulty(), req: req(withBus(fleettest.GPUs(2)), "boot-2"),
			lifecycle: active, health: fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, events: []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED}},
		{name: "no-reboot-keeps-an-xid-fault", prev: faulty(), req: req(withBus(fleettest.GPUs(2)), "boot-1"),
			lifecycle: active, health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := proto.CloneOf(tt.prev)
			reg, err := registration(pol, tt.prev, tt.req, now)
			if err != nil {
				t.Fatal(err)
			}
			if tt.prev != nil && !proto.Equal(tt.prev, before) {
				t.Fatal("registration changed the node it was given")
			}
			n := reg.node
			if n.GetLifecycle() != tt.lifecycle || n.GetHealth() != tt.health || reg.fresh != tt.fresh {
				t.Fatalf("got %s %s fresh=%t, want %s %s fresh=%t (cause %q)", n.GetLifecycle(), n.GetHealth(), reg.fresh, tt.lifecycle, tt.health, tt.fresh, n.GetHealthCause())
			}
			if n.GetLabels()["zone"] != "a" || n.GetLabels()["old"] != "" || n.GetBootId() != tt.req.GetBootId() {
				t.Fatalf("labels %v boot %q: the agent's labels and boot id replace the old ones", n.GetLabels(), n.GetBootId())
			}
			var kinds []fleetv1.EventKind
			for _, e := range reg.events {
				kinds = append(kinds, e.GetKind())
			}
			if len(kinds) != len(tt.events) || (len(kinds) > 0 && kinds[0] != tt.events[0]) {
				t.Fatalf("events %v, want %v", kinds, tt.events)
			}
			if len(reg.replaced) != len(tt.replaced) || (len(tt.replaced) > 0 && reg.replaced[0] != tt.replaced[0]) {
				t.Fatalf("replaced %v, want %v", reg.replaced, tt.replaced)
			}
			lost := 0
			for _, g := range n.GetGpus() {
				if g.GetLost() {
					lost++
				}
			}
			if lost != tt.lost {
				t.Fatalf("%d lost GPUs, want %d", lost, tt.lost)
			}
		})
	}
}
