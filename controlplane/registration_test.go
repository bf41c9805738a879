package controlplane_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/internal/fleettest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func TestServerRegistersBothServicesHealthAndReflection(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	hc := grpc_health_v1.NewHealthClient(h.Conn)
	for _, svc := range []string{"", "navarch.node.v1.NodeService", "navarch.controlplane.v1.ControlPlaneService"} {
		resp, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
			t.Fatalf("health of %q: %v %v", svc, resp, err)
		}
	}
	stream, err := grpc_reflection_v1.NewServerReflectionClient(h.Conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"navarch.node.v1.NodeService", "navarch.controlplane.v1.ControlPlaneService", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}

func TestRegisterHeartbeatAndList(t *testing.T) {
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.HeartbeatInterval = controlplane.Duration{Duration: 3 * time.Second} }))
	ctx := ctxT(t)
	resp := h.register("gpu-node-1", 8)
	if resp.GetHeartbeatInterval().AsDuration() != 3*time.Second || resp.GetHealthReportInterval().AsDuration() != 30*time.Second {
		t.Fatalf("intervals: %v", resp)
	}
	if resp.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE {
		t.Fatalf("lifecycle %s", resp.GetLifecycle())
	}
	if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "gpu-node-1", Samples: []*fleetv1.GpuSample{{GpuIndex: 0, UtilizationGpuPercent: 97, TemperatureCelsius: 71}}}); err != nil {
		t.Fatal(err)
	}
	list, err := h.ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetNodes()) != 1 {
		t.Fatalf("listed %d nodes", len(list.GetNodes()))
	}
	n := list.GetNodes()[0]
	if n.GetNodeId() != "gpu-node-1" || len(n.GetGpus()) != 8 || n.GetReachability() != fleetv1.Reachability_REACHABILITY_ONLINE {
		t.Fatalf("node %v", n)
	}
	if len(n.GetSamples()) != 1 || n.GetSamples()[0].GetUtilizationGpuPercent() != 97 {
		t.Fatalf("samples %v", n.GetSamples())
	}
	if n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN {
		t.Fatalf("health before any report: %s", n.GetHealth())
	}
	h.healthyReport("gpu-node-1", 8)
	if got := h.get("gpu-node-1").GetNode().GetHealth(); got != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Fatalf("health after a clean report: %s", got)
	}
	detail := h.get("gpu-node-1")
	if detail.GetNode().GetGpus()[0].GetMetrics().GetTemperatureCelsius() != 55 {
		t.Fatalf("GetNode lacks the latest metrics: %v", detail.GetNode().GetGpus()[0])
	}
	if len(detail.GetHistory()) != 1 || detail.GetHistory()[0].GetUtilizationGpuPercent()[0] != 97 {
		t.Fatalf("history %v", detail.GetHistory())
	}
}

func TestRegisterValidation(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	many := map[string]string{}
	for i := range 65 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	dupIndex := fleettest.GPUs(2)
	dupIndex[1].Index = 0
	dupUUID := fleettest.GPUs(2)
	dupUUID[1].Uuid = dupUUID[0].GetUuid()
	noUUID := fleettest.GPUs(1)
	noUUID[0].Uuid = ""
	rows := []struct {
		name  string
		req   *nodev1.RegisterNodeRequest
		field string
	}{
		{"missing-node-id", &nodev1.RegisterNodeRequest{}, "node_id"},
		{"node-id-with-slash", &nodev1.RegisterNodeRequest{NodeId: "a/b"}, "node_id"},
		{"node-id-leading-dash", &nodev1.RegisterNodeRequest{NodeId: "-a"}, "node_id"},
		{"node-id-too-long", &nodev1.RegisterNodeRequest{NodeId: strings.Repeat("a", 254)}, "node_id"},
		{"too-many-labels", &nodev1.RegisterNodeRequest{NodeId: "n", Labels: many}, "labels"},
		{"label-key-space", &nodev1.RegisterNodeRequest{NodeId: "n", Labels: map[string]string{"a b": "c"}}, "labels[a b]"},
		{"label-value-comma", &nodev1.RegisterNodeRequest{NodeId: "n", Labels: map[string]string{"a": "b,c"}}, "labels[a]"},
		{"duplicate-gpu-index", &nodev1.RegisterNodeRequest{NodeId: "n", Gpus: dupIndex}, "gpus[1].index"},
		{"duplicate-gpu-uuid", &nodev1.RegisterNodeRequest{NodeId: "n", Gpus: dupUUID}, "gpus[1].uuid"},
		{"missing-gpu-uuid", &nodev1.RegisterNodeRequest{NodeId: "n", Gpus: noUUID}, "gpus[0].uuid"},
		{"too-many-gpus", &nodev1.RegisterNodeRequest{NodeId: "n", Gpus: fleettest.GPUs(65)}, "gpus"},
		{"hostname-control-char", &nodev1.RegisterNodeRequest{NodeId: "n", Hostname: "a\x00b"}, "hostname"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			_, err := h.node.RegisterNode(ctx, row.req)
			wantCode(t, err, codes.InvalidArgument, row.field)
		})
	}
	// Nothing was accepted.
	list, err := h.ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{})
	if err != nil || len(list.GetNodes()) != 0 {
		t.Fatalf("bad registrations left nodes: %v %v", list.GetNodes(), err)
	}
}

func TestUnknownNode(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	_, err := h.ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "nope"})
	wantCode(t, err, codes.NotFound, "node_id")
	_, err = h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "nope"})
	wantCode(t, err, codes.NotFound, "node_id")
	_, err = h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "nope"})
	wantCode(t, err, codes.NotFound, "node_id")
	_, err = h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "nope"})
	wantCode(t, err, codes.NotFound, "node_id")
}

func TestReRegistrationKeepsLifecycleAndRedeliversCommands(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 2)
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1", Reason: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	got, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(got.GetCommands()) != 1 {
		t.Fatalf("first poll: %v %v", got, err)
	}
	// The agent restarts before it carried the command out.
	resp := h.register("n1", 2)
	if resp.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED {
		t.Fatalf("re-registration changed lifecycle to %s", resp.GetLifecycle())
	}
	again, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(again.GetCommands()) != 1 || again.GetCommands()[0].GetId() != got.GetCommands()[0].GetId() {
		t.Fatalf("command not handed out again: %v %v", again, err)
	}
	n := h.get("n1").GetNode()
	if n.GetLifecycleReason() != "maintenance" {
		t.Fatalf("reason %q", n.GetLifecycleReason())
	}
}

func TestReRegistrationWithMissingGPUIsAFault(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 4)
	h.healthyReport("n1", 4)
	inv := fleettest.GPUs(4)
	inv = append(inv[:2], inv[3]) // GPU 2 is gone
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: inv, BootId: "boot-1"}); err != nil {
		t.Fatal(err)
	}
	d := h.get("n1")
	n := d.GetNode()
	if n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY || n.GetRemedy() != fleetv1.Remedy_REMEDY_REBOOT_NODE {
		t.Fatalf("health %s remedy %s", n.GetHealth(), n.GetRemedy())
	}
	if n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED || !n.GetCordonedByPolicy() {
		t.Fatalf("not auto-cordoned: %s", n.GetLifecycle())
	}
	var lost *fleetv1.Gpu
	for _, g := range n.GetGpus() {
		if g.GetLost() {
			lost = g
		}
	}
	if lost == nil || lost.GetUuid() != "GPU-0002" || len(n.GetGpus()) != 4 {
		t.Fatalf("lost GPU not kept: %v", n.GetGpus())
	}
	if len(d.GetEvents()) == 0 || d.GetEvents()[0].GetKind() != fleetv1.EventKind_EVENT_KIND_GPU_LOST {
		t.Fatalf("events %v", d.GetEvents())
	}
	// The GPU comes back after a reboot: the fault clears.
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: fleettest.GPUs(4), BootId: "boot-2"}); err != nil {
		t.Fatal(err)
	}
	h.healthyReport("n1", 4)
	if got := h.get("n1").GetNode().GetHealth(); got != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Fatalf("after the GPU came back: %s", got)
	}
}

// TestReplacedGPUIsRetired: the remedy for a lost GPU is to replace it; the
// new GPU in its slot retires the old one and its faults, so the node can
// read HEALTHY again.
func TestReplacedGPUIsRetired(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	inv := func(uuids ...string) []*fleetv1.Gpu {
		out := fleettest.GPUs(len(uuids))
		for i, u := range uuids {
			out[i].Uuid = u
			out[i].PciBusId = fmt.Sprintf("00000000:%02X:00.0", 0x18+i)
		}
		return out
	}
	reg := func(boot string, g []*fleetv1.Gpu) {
		t.Helper()
		if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: g, BootId: boot}); err != nil {
			t.Fatal(err)
		}
	}
	reg("boot-1", inv("GPU-a", "GPU-b"))
	h.healthyReport("n1", 2)
	reg("boot-2", inv("GPU-a")) // GPU-b is gone after a reboot
	if n := h.get("n1").GetNode(); n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY || len(n.GetGpus()) != 2 {
		t.Fatalf("lost GPU: health %s, %d GPUs", n.GetHealth(), len(n.GetGpus()))
	}
	// A new board goes into GPU-b's slot.
	reg("boot-3", inv("GPU-a", "GPU-new"))
	h.healthyReport("n1", 2)
	d := h.get("n1")
	n := d.GetNode()
	if n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Fatalf("after the replacement: %s (%s)", n.GetHealth(), n.GetHealthCause())
	}
	var uuids []string
	for _, g := range n.GetGpus() {
		uuids = append(uuids, g.GetUuid())
	}
	if !slices.Equal(uuids, []string{"GPU-a", "GPU-new"}) {
		t.Fatalf("GPUs %v, want the replaced one gone", uuids)
	}
	found := false
	for _, e := range d.GetEvents() {
		if e.GetKind() == fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED && e.GetGpuUuid() == "GPU-b" && strings.Contains(e.GetMessage(), "replaced by GPU-new") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no event tells of the replacement: %v", d.GetEvents())
	}
	// A new GPU in a different slot replaces nothing.
	reg("boot-4", inv("GPU-a"))
	g := inv("GPU-a", "GPU-other", "GPU-third")
	g = []*fleetv1.Gpu{g[0], g[2]} // a GPU at the third slot; the second is empty
	reg("boot-5", g)
	if n := h.get("n1").GetNode(); len(n.GetGpus()) != 3 || n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Fatalf("a GPU in another slot retired the lost one: %d GPUs, %s", len(n.GetGpus()), n.GetHealth())
	}
}

// TestUnansweredGPUIsLost: a GPU NVML counts but that does not answer the
// agent is a lost GPU even on the node's first registration, once; when it
// answers again it takes its own place.
func TestUnansweredGPUIsLost(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	inv := fleettest.GPUs(2)
	inv[0].PciBusId, inv[1].PciBusId = "00000000:18:00.0", "00000000:19:00.0"
	unanswered := []*nodev1.UnansweredGpu{{Index: 1, Reason: "nvmlDeviceGetUUID: GPU is lost"}}
	for range 2 { // the agent restarts; nothing new is said
		if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: inv[:1], UnansweredGpus: unanswered, BootId: "boot-1"}); err != nil {
			t.Fatal(err)
		}
	}
	d := h.get("n1")
	n := d.GetNode()
	if n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY || len(n.GetGpus()) != 2 || !n.GetGpus()[1].GetLost() {
		t.Fatalf("health %s, GPUs %v", n.GetHealth(), n.GetGpus())
	}
	if n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED {
		t.Fatalf("not auto-cordoned: %s", n.GetLifecycle())
	}
	lost := 0
	for _, e := range d.GetEvents() {
		if e.GetKind() == fleetv1.EventKind_EVENT_KIND_GPU_LOST {
			lost++
			if e.GetGpuIndex() != 1 || !strings.Contains(e.GetMessage(), "GPU is lost") {
				t.Fatalf("event %v", e)
			}
		}
	}
	if lost != 1 {
		t.Fatalf("%d gpu-lost events, want 1", lost)
	}
	// After a reboot it answers again.
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: inv, BootId: "boot-2"}); err != nil {
		t.Fatal(err)
	}
	h.healthyReport("n1", 2)
	d = h.get("n1")
	n = d.GetNode()
	if n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY || len(n.GetGpus()) != 2 || n.GetGpus()[1].GetUuid() != "GPU-0001" {
		t.Fatalf("after it answered: %s, GPUs %v", n.GetHealth(), n.GetGpus())
	}
	if e := d.GetEvents()[0]; e.GetKind() != fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED || !strings.Contains(e.GetMessage(), "answers again") {
		t.Fatalf("no event tells it answers again: %v", d.GetEvents())
	}

	_, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n2", Gpus: fleettest.GPUs(1), UnansweredGpus: []*nodev1.UnansweredGpu{{Index: 0}}})
	wantCode(t, err, codes.InvalidArgument, "gpus[0].index")
}

// TestGPUSlotsAfterEnumerationShifts: GPUs renumber when one vanishes;
// bus ids settle who replaced whom before indexes do, and a GPU that did
// not answer takes back whatever new GPU is left.
func TestGPUSlotsAfterEnumerationShifts(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	gpu := func(uuid string, index uint32, bus string) *fleetv1.Gpu {
		return &fleetv1.Gpu{Index: index, Uuid: uuid, PciBusId: "00000000:" + bus + ":00.0", Name: "H100", MemoryTotalBytes: 80 << 30}
	}
	reg := func(id, boot string, unanswered []uint32, gs ...*fleetv1.Gpu) {
		t.Helper()
		var u []*nodev1.UnansweredGpu
		for _, i := range unanswered {
			u = append(u, &nodev1.UnansweredGpu{Index: i, Reason: "GPU is lost"})
		}
		if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, BootId: boot, Gpus: gs, UnansweredGpus: u}); err != nil {
			t.Fatal(err)
		}
	}
	uuids := func(id string) []string {
		var out []string
		for _, g := range h.get(id).GetNode().GetGpus() {
			out = append(out, g.GetUuid())
		}
		return out
	}

	// n1: GPU 2 does not answer. After a reboot B is gone, GPU 2 answers
	// (as X, now GPU 1) and D moves up to GPU 2.
	reg("n1", "boot-1", []uint32{2}, gpu("A", 0, "18"), gpu("B", 1, "19"), gpu("D", 3, "1b"))
	reg("n1", "boot-2", nil, gpu("A", 0, "18"), gpu("X", 1, "1a"), gpu("D", 2, "1b"))
	if got := uuids("n1"); !slices.Equal(got, []string{"A", "X", "D", "B"}) {
		t.Fatalf("after the shift: %v, want A X D and B lost", got)
	}
	// B's slot gets a new board: every GPU is accounted for.
	reg("n1", "boot-3", nil, gpu("A", 0, "18"), gpu("Y", 1, "19"), gpu("X", 2, "1a"), gpu("D", 3, "1b"))
	if got := uuids("n1"); !slices.Equal(got, []string{"A", "Y", "X", "D"}) {
		t.Fatalf("after B's replacement: %v", got)
	}

	// n3: the GPU that does not answer is renumbered with the others when
	// A vanishes; one placeholder stands for it all along, and takes the
	// GPU it turns out to be.
	reg("n3", "boot-1", []uint32{2}, gpu("A", 0, "18"), gpu("B", 1, "19"), gpu("D", 3, "1b"))
	reg("n3", "boot-2", []uint32{1}, gpu("B", 0, "19"), gpu("D", 2, "1b"))
	if got := uuids("n3"); !slices.Equal(got, []string{"B", "D", "A", fleet.UnansweredPrefix + "2"}) {
		t.Fatalf("n3 renumbered: %v", got)
	}
	reg("n3", "boot-3", nil, gpu("B", 0, "19"), gpu("X", 1, "1a"), gpu("D", 2, "1b"))
	if got := uuids("n3"); !slices.Equal(got, []string{"B", "X", "D", "A"}) {
		t.Fatalf("n3 answered: %v", got)
	}

	// n4: a new GPU while a GPU still does not answer is not that GPU;
	// the placeholder keeps its history.
	reg("n4", "boot-1", []uint32{1}, gpu("A", 0, "18"), gpu("C", 2, "1a"))
	reg("n4", "boot-2", []uint32{1}, gpu("A", 0, "18"), gpu("E", 2, "1c"))
	for _, e := range h.get("n4").GetEvents() {
		if strings.Contains(e.GetMessage(), "answers again") {
			t.Fatalf("n4: %q while it still does not answer", e.GetMessage())
		}
	}
	for _, g := range h.get("n4").GetNode().GetGpus() {
		if g.GetUuid() == fleet.UnansweredPrefix+"1" && g.GetRemedyEpisodes() != 2 {
			t.Fatalf("n4: the placeholder's episodes %d, want 2 after a reboot that did not help", g.GetRemedyEpisodes())
		}
	}

	// n5: a known GPU that stops answering is lost under its own UUID, with
	// no placeholder beside it, and is whole again when it answers.
	reg("n5", "boot-1", nil, gpu("A", 0, "18"), gpu("B", 1, "19"))
	reg("n5", "boot-1", []uint32{1}, gpu("A", 0, "18"))
	reg("n5", "boot-2", []uint32{1}, gpu("A", 0, "18"))
	if got := uuids("n5"); !slices.Equal(got, []string{"A", "B"}) {
		t.Fatalf("n5 while B does not answer: %v", got)
	}
	reg("n5", "boot-3", nil, gpu("A", 0, "18"), gpu("B", 1, "19"))
	h.healthyReport("n5", 2)
	if n := h.get("n5").GetNode(); n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY || len(n.GetGpus()) != 2 {
		t.Fatalf("n5 after B answers: %s, %d GPUs", n.GetHealth(), len(n.GetGpus()))
	}

	// n6: two GPUs that do not answer keep their own placeholders when the
	// GPUs renumber.
	reg("n6", "boot-1", []uint32{1, 2}, gpu("A", 0, "18"))
	reg("n6", "boot-2", []uint32{0, 1}) // A vanished; both still do not answer
	byIndex := map[uint32]string{}
	for _, g := range h.get("n6").GetNode().GetGpus() {
		byIndex[g.GetIndex()] = g.GetUuid()
	}
	if byIndex[0] != fleet.UnansweredPrefix+"1" || byIndex[1] != fleet.UnansweredPrefix+"2" {
		t.Fatalf("n6 placeholders swapped: %v", byIndex)
	}

	// n7: at once, a placeholder's GPU answers (as X) and known B stops.
	reg("n7", "boot-1", []uint32{2}, gpu("A", 0, "18"), gpu("B", 1, "19"))
	reg("n7", "boot-2", []uint32{1}, gpu("A", 0, "18"), gpu("X", 2, "1a"))
	if got := uuids("n7"); !slices.Equal(got, []string{"A", "X", "B"}) {
		t.Fatalf("n7: %v, want A X and B lost", got)
	}

	// n2: a new GPU in a lost GPU's bus slot is that GPU's replacement,
	// even at the index of a GPU that did not answer.
	reg("n2", "boot-1", []uint32{1}, gpu("A", 0, "18"), gpu("C", 2, "19"))
	reg("n2", "boot-2", []uint32{1}, gpu("A", 0, "18"), gpu("E", 2, "19"))
	d := h.get("n2")
	found := false
	for _, e := range d.GetEvents() {
		found = found || strings.Contains(e.GetMessage(), "GPU C replaced by E")
	}
	if got := uuids("n2"); !found || !slices.Equal(got, []string{"A", "E", fleet.UnansweredPrefix + "1"}) {
		t.Fatalf("n2: %v, replaced event %t", got, found)
	}
}

// TestLostGPUEscalatesAcrossReboots: a GPU that reboots do not bring back
// needs a reboot again each time, and the third time the remedy is to
// inspect the hardware; the XID that told of its loss stays.
func TestLostGPUEscalatesAcrossReboots(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 2)
	h.xid("n1", 1, 79)
	for i, inv := range [][]*fleetv1.Gpu{fleettest.GPUs(2), fleettest.GPUs(1), fleettest.GPUs(1), fleettest.GPUs(1)} {
		if i == 0 {
			continue
		}
		if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: inv, BootId: fmt.Sprint("boot-", i)}); err != nil {
			t.Fatal(err)
		}
		n := h.get("n1").GetNode()
		want := fleetv1.Remedy_REMEDY_REBOOT_NODE
		if i == 3 {
			want = fleetv1.Remedy_REMEDY_INSPECT_HARDWARE
		}
		g := n.GetGpus()[1]
		if n.GetRemedy() != want || g.GetRemedyEpisodes() != uint32(i) {
			t.Fatalf("registration %d: remedy %s, episodes %d", i, n.GetRemedy(), g.GetRemedyEpisodes())
		}
		if !slices.ContainsFunc(g.GetFaults(), func(f *fleetv1.Fault) bool { return f.GetXid() == 79 }) {
			t.Fatalf("registration %d: the XID 79 that told of the loss is gone: %v", i, g.GetFaults())
		}
	}
}

// TestReRegistrationReplacesLabels: a label the agent no longer sends is
// gone, so label filters never find a node by a stale label.
func TestReRegistrationReplacesLabels(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	for _, labels := range []map[string]string{{"pool": "train", "zone": "a"}, {"zone": "b"}} {
		if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: fleettest.GPUs(1), BootId: "boot-1", Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.get("n1").GetNode().GetLabels(); !maps.Equal(got, map[string]string{"zone": "b"}) {
		t.Fatalf("labels %v, want only zone=b", got)
	}
	list, err := h.ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{LabelSelector: "pool=train"})
	if err != nil || len(list.GetNodes()) != 0 {
		t.Fatalf("stale label still matches: %v %v", list.GetNodes(), err)
	}
}

func TestRebootClearsXIDFault(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 2)
	h.healthyReport("n1", 2)
	h.xid("n1", 1, 79)
	if got := h.get("n1").GetNode().GetHealth(); got != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Fatalf("after XID 79: %s", got)
	}
	// An agent restart on the same boot keeps the fault.
	h.register("n1", 2)
	if got := h.get("n1").GetNode().GetHealth(); got != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Fatalf("agent restart cleared the fault: %s", got)
	}
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: fleettest.GPUs(2), BootId: "boot-2"}); err != nil {
		t.Fatal(err)
	}
	d := h.get("n1")
	n := d.GetNode()
	if n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Fatalf("reboot did not clear XID 79: %s (%s)", n.GetHealth(), n.GetHealthCause())
	}
	if e := d.GetEvents()[0]; e.GetKind() != fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED || e.GetGpuIndex() != 1 || !strings.Contains(e.GetCause(), "cleared by reboot") {
		t.Fatalf("no event tells of the reboot clearing the fault: %v", e)
	}
	if n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED {
		t.Fatalf("reboot uncordoned the node: %s", n.GetLifecycle())
	}
	if n.GetGpus()[1].GetRemedyEpisodes() != 1 {
		t.Fatalf("remedy episodes %d", n.GetGpus()[1].GetRemedyEpisodes())
	}
}

func TestListNodesFiltersAndPaging(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	for i := range 25 {
		id := fmt.Sprintf("node-%02d", i)
		zone := "a"
		if i%2 == 1 {
			zone = "b"
		}
		if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: fleettest.GPUs(1), Labels: map[string]string{"zone": zone}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "node-03"}); err != nil {
		t.Fatal(err)
	}
	var seen []string
	token := ""
	for {
		page, err := h.ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{PageSize: 10, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		if page.GetTotalSize() != 25 {
			t.Fatalf("total %d", page.GetTotalSize())
		}
		for _, n := range page.GetNodes() {
			seen = append(seen, n.GetNodeId())
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(seen) != 25 || seen[0] != "node-00" || seen[24] != "node-24" {
		t.Fatalf("paged %d nodes: %v", len(seen), seen)
	}
	rows := []struct {
		name string
		req  *controlplanev1.ListNodesRequest
		want int
	}{
		{"label", &controlplanev1.ListNodesRequest{LabelSelector: "zone=b"}, 12},
		{"label-any-value", &controlplanev1.ListNodesRequest{LabelSelector: "zone"}, 25},
		{"label-missing", &controlplanev1.ListNodesRequest{LabelSelector: "rack=1"}, 0},
		{"lifecycle", &controlplanev1.ListNodesRequest{Lifecycle: []fleetv1.LifecycleState{fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED}}, 1},
		{"text", &controlplanev1.ListNodesRequest{Text: "NODE-1"}, 10},
		{"combined", &controlplanev1.ListNodesRequest{Text: "node-1", LabelSelector: "zone=a"}, 5},
		{"reachability", &controlplanev1.ListNodesRequest{Reachability: []fleetv1.Reachability{fleetv1.Reachability_REACHABILITY_OFFLINE}}, 0},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			resp, err := h.ops.ListNodes(ctx, row.req)
			if err != nil {
				t.Fatal(err)
			}
			if int(resp.GetTotalSize()) != row.want {
				t.Fatalf("matched %d, want %d", resp.GetTotalSize(), row.want)
			}
		})
	}
	_, err := h.ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{PageSize: 5000})
	wantCode(t, err, codes.InvalidArgument, "page_size")
	_, err = h.ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{PageToken: "!!"})
	wantCode(t, err, codes.InvalidArgument, "page_token")
	_, err = h.ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{Lifecycle: []fleetv1.LifecycleState{99}})
	wantCode(t, err, codes.InvalidArgument, "lifecycle[0]")
	_, err = h.ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{LabelSelector: "=x"})
	wantCode(t, err, codes.InvalidArgument, "label_selector")
}

// TestLostGPUComesBack: a GPU lost from the snapshots is cleared by a
// GPU_RECOVERED event for its index; one that comes back at a registration
// without a reboot keeps its other faults.
func TestLostGPUComesBack(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 2)
	h.healthyReport("n1", 2)
	if _, err := h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Metrics: []*fleetv1.GpuMetrics{fleettest.CleanMetrics(0)}, GpuCount: 1}); err != nil {
		t.Fatal(err)
	}
	if g := h.get("n1").GetNode().GetGpus()[1]; !g.GetLost() {
		t.Fatalf("GPU 1 not lost: %v", g)
	}
	if _, err := h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED, GpuIndex: 1, Message: "device readable again"},
	}}); err != nil {
		t.Fatal(err)
	}
	if g := h.get("n1").GetNode().GetGpus()[1]; g.GetLost() || len(g.GetFaults()) != 0 {
		t.Fatalf("GPU 1 after GPU_RECOVERED: lost=%t faults=%v", g.GetLost(), g.GetFaults())
	}

	// XID 79 on GPU 1, which then drops out of the inventory and comes back
	// on the same boot: the loss clears, the XID does not.
	h.xid("n1", 1, 79)
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: fleettest.GPUs(1), BootId: "boot-1"}); err != nil {
		t.Fatal(err)
	}
	h.register("n1", 2)
	d := h.get("n1")
	g := d.GetNode().GetGpus()[1]
	if g.GetLost() || len(g.GetFaults()) != 1 || g.GetFaults()[0].GetXid() != 79 {
		t.Fatalf("GPU 1 back without a reboot: lost=%t faults=%v", g.GetLost(), g.GetFaults())
	}
	if d.GetEvents()[0].GetKind() != fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED {
		t.Fatalf("newest event %v", d.GetEvents()[0])
	}
}
