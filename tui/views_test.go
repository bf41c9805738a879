package tui

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// These tests drive the console as an operator would, at the smallest
// supported terminal and a large one, with colour off.

// newEvent is a stream message carrying one health event.
func newEvent(rev uint64, e *fleetv1.HealthEvent) *controlplanev1.WatchFleetResponse {
	return &controlplanev1.WatchFleetResponse{Revision: rev, Change: &controlplanev1.WatchFleetResponse_HealthEvent{HealthEvent: e}}
}

// cursorLine is the events view's line marked with ›, failing unless
// there is exactly one.
func cursorLine(t *testing.T, m *Model) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(plain(m), "\n") {
		if strings.HasPrefix(l, "›") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d lines marked with ›, want 1:\n%s", len(found), plain(m))
	}
	return found[0]
}

// checkFits fails unless the frame is exactly the terminal's size.
func checkFits(t *testing.T, m *Model, width, height int) {
	t.Helper()
	lines := strings.Split(plain(m), "\n")
	if len(lines) != height {
		t.Fatalf("%dx%d: %d lines:\n%s", width, height, len(lines), plain(m))
	}
	for i, l := range lines {
		if w := len([]rune(l)); w > width {
			t.Fatalf("%dx%d: line %d is %d wide: %q", width, height, i, w, l)
		}
	}
}

func TestEventsCursorFollowsItsEvent(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24}, press("2"), press("j"))
	if e := eventsOf(m).current(); e.GetId() != "ev-2" {
		t.Fatalf("j: cursor on %s", e.GetId())
	}

	// Two new events arrive at the top; the cursor stays on its event.
	m.Apply(
		newEvent(41, &fleetv1.HealthEvent{Id: "ev-9", NodeId: "gpu-a01", GpuIndex: 5, Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 48,
			Time: timestamppb.New(now), Health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, Cause: "double-bit ECC error", Remedy: fleetv1.Remedy_REMEDY_RESET_GPU}),
		newEvent(42, &fleetv1.HealthEvent{Id: "ev-10", NodeId: "gpu-a03", GpuIndex: 1, Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 31,
			Time: timestamppb.New(now), Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED, Cause: "GPU memory page fault", Remedy: fleetv1.Remedy_REMEDY_CHECK_APPLICATION}),
	)
	if e := eventsOf(m).current(); e.GetId() != "ev-2" {
		t.Fatalf("after new events: cursor on %s", e.GetId())
	}
	// A resync brings a fresh copy of every event; the cursor finds its
	// event among them.
	m.Apply(snapshot(43, fixtureFleet(), append([]*fleetv1.HealthEvent{
		{Id: "ev-11", NodeId: "gpu-a03", Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 31, Time: timestamppb.New(now), Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED},
		{Id: "ev-10", NodeId: "gpu-a03", Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 31, Time: timestamppb.New(now), Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED},
		{Id: "ev-9", NodeId: "gpu-a01", Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 48, Time: timestamppb.New(now), Health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY},
	}, fixtureEvents()...)))
	if e := eventsOf(m).current(); e.GetId() != "ev-2" {
		t.Fatalf("after a resync: cursor on %s", e.GetId())
	}

	// enter opens the node of the event under the cursor.
	send(m, press("enter"))
	if m.active != nodeViewName || nodeOf(m).id != "gpu-b01" {
		t.Fatalf("enter opened %q", nodeOf(m).id)
	}
}

func TestEventsCursorRowIsMarked(t *testing.T) {
	m := newTestModel(t, Options{})
	for _, size := range [][2]int{{80, 24}, {200, 60}} {
		send(m, tea.WindowSizeMsg{Width: size[0], Height: size[1]}, press("2"), press("g"))
		// Without colour the cursor row still reads: it starts with ›.
		mustContain(t, cursorLine(t, m), "gpu-a02", "XID 79")
		send(m, press("j"))
		mustContain(t, cursorLine(t, m), "gpu-b01", "thermal")
		checkFits(t, m, size[0], size[1])
	}
}

func TestEventsCursorFollowsAnEventWithoutID(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, tea.WindowSizeMsg{Width: 200, Height: 60}, press("2"))
	// Events the agent sent have no id yet; their content identifies them.
	m.Apply(newEvent(41, &fleetv1.HealthEvent{NodeId: "gpu-a03", GpuIndex: 4, Kind: fleetv1.EventKind_EVENT_KIND_THERMAL,
		Time: timestamppb.New(now.Add(-30 * time.Second)), Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED, Cause: "temperature at or past the GPU's slowdown threshold"}))
	send(m, press("G"))
	send(m, press("k"), press("k"), press("k"))
	if e := eventsOf(m).current(); e.GetNodeId() != "gpu-a03" {
		t.Fatalf("cursor on %s", e.GetNodeId())
	}
	m.Apply(newEvent(42, &fleetv1.HealthEvent{NodeId: "gpu-a03", GpuIndex: 4, Kind: fleetv1.EventKind_EVENT_KIND_THERMAL,
		Time: timestamppb.New(now), Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED, Cause: "temperature at or past the GPU's slowdown threshold"}))
	if e := eventsOf(m).current(); e.GetNodeId() != "gpu-a03" || !e.GetTime().AsTime().Equal(now.Add(-30*time.Second)) {
		t.Fatalf("after a new event: cursor on %s at %v", e.GetNodeId(), e.GetTime().AsTime())
	}
	checkFits(t, m, 200, 60)
}

// bigNode is a 64-GPU node, all reporting, for the node view.
func bigNode(id string) *fleetv1.Node {
	n := fixtureNode(id, 64, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, fleetv1.Reachability_REACHABILITY_ONLINE, 2*time.Second)
	for _, g := range n.GetGpus() {
		g.Metrics = &fleetv1.GpuMetrics{GpuIndex: g.GetIndex(), UtilizationGpuPercent: 77, TemperatureCelsius: 66, PowerUsageMilliwatts: 500000, MemoryUsedBytes: 20 << 30}
	}
	return n
}

// openBig adds a 64-GPU node, opens it from the fleet view (it sorts
// last) and answers its fetch with cmds.
func openBig(t *testing.T, m *Model, cmds ...*fleetv1.Command) {
	t.Helper()
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: bigNode("gpu-c64")}})
	send(m, press("1"), press("G"), press("enter"))
	if m.active != nodeViewName || nodeOf(m).id != "gpu-c64" {
		t.Fatalf("opened %q", nodeOf(m).id)
	}
	send(m, nodeDetailMsg{id: "gpu-c64", resp: &controlplanev1.GetNodeResponse{Node: bigNode("gpu-c64"), Events: fixtureEvents()[:1], Commands: cmds}})
}

var gpuRow = regexp.MustCompile(`(?m)^(\d+)\s+[HDU?X]\s`)

// gpuRows are the GPU indexes the frame shows.
func gpuRows(m *Model) []string {
	var out []string
	for _, g := range gpuRow.FindAllStringSubmatch(plain(m), -1) {
		out = append(out, g[1])
	}
	return out
}

func TestNodeViewScrollsGPUs(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	openBig(t, m, &fleetv1.Command{Id: "cmd-1", NodeId: "gpu-c64", Type: fleetv1.CommandType_COMMAND_TYPE_CORDON,
		Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, IssuedBy: "alice", Message: "cordoned: this node takes no new work", UpdatedAt: timestamppb.New(now.Add(-time.Minute))})
	checkFits(t, m, 80, 24)
	rows := gpuRows(m)
	if len(rows) == 0 || rows[0] != "0" {
		t.Fatalf("first page shows GPUs %v:\n%s", rows, plain(m))
	}
	if strings.Contains(plain(m), "COMMANDS") {
		t.Fatal("a 64-GPU node's commands fit at 80x24?")
	}
	mustContain(t, m.Frame(), "gpu-c64", "driver 550.54.15")

	// j scrolls the GPU rows; the title and the GPU column header stay.
	send(m, press("j"))
	rows = gpuRows(m)
	if len(rows) == 0 || rows[0] != "1" {
		t.Fatalf("j: GPUs %v:\n%s", rows, plain(m))
	}
	mustContain(t, m.Frame(), "gpu-c64  ACTIVE", "GPU  H  UTIL  TEMP", "↑ 1 more above", "more below")

	// A page down moves by most of a screen.
	send(m, tea.KeyPressMsg{Code: tea.KeyPgDown})
	if rows = gpuRows(m); len(rows) == 0 || rows[0] == "1" {
		t.Fatalf("pgdn: GPUs %v", rows)
	}

	// G shows the end: the last GPUs' details, after the events and the
	// commands.
	for _, k := range []tea.KeyPressMsg{press("G"), {Code: tea.KeyEnd}} {
		send(m, press("g"), k)
		f := plain(m)
		mustContain(t, f, "gpu63 ", "GPU-gpu-c64-63")
		if strings.Contains(f, "more below") {
			t.Fatalf("%s left lines below:\n%s", k, f)
		}
		checkFits(t, m, 80, 24)
	}
	// Going up from the end starts at once.
	send(m, press("k"))
	mustContain(t, m.Frame(), "1 more below")

	// g and home go back to the top.
	for _, k := range []tea.KeyPressMsg{press("g"), {Code: tea.KeyHome}} {
		send(m, press("G"), k)
		if rows := gpuRows(m); len(rows) == 0 || rows[0] != "0" {
			t.Fatalf("%s: GPUs %v", k, rows)
		}
	}

	// Every GPU can be reached, each in its row.
	seen := map[string]bool{}
	for range 100 {
		for _, r := range gpuRows(m) {
			seen[r] = true
		}
		send(m, press("j"))
	}
	if len(seen) != 64 {
		t.Fatalf("scrolling showed %d of 64 GPUs", len(seen))
	}
}

// gpuLine is the node view's row for a GPU.
func gpuLine(t *testing.T, m *Model, idx int) string {
	t.Helper()
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^%d\s+[HDU?X]\s.*$`, idx))
	l := re.FindString(plain(m))
	if l == "" {
		t.Fatalf("no row for GPU %d:\n%s", idx, plain(m))
	}
	return l
}

var noMetrics = regexp.MustCompile(`^\d+\s+[HDU?]\s+-\s+-\s+-\s+-/80G\s`)

func TestNodeViewShowsDashForMissingMetrics(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24})

	// An online node whose GPUs have no metrics yet (the control plane
	// restarted): nothing is known, so nothing is made up.
	send(m, press("enter"))
	n := fixtureFleet()[0]
	n.Samples = nil
	send(m, nodeDetailMsg{id: "gpu-a01", resp: &controlplanev1.GetNodeResponse{Node: n}})
	for i := range 8 {
		if l := gpuLine(t, m, i); !noMetrics.MatchString(l) {
			t.Fatalf("GPU %d without metrics: %q", i, l)
		}
	}
	send(m, press("esc"))

	// An offline node: what it last reported is not current.
	send(m, press("G"), press("enter"))
	if nodeOf(m).id != "gpu-b02" {
		t.Fatalf("opened %s", nodeOf(m).id)
	}
	n = fixtureFleet()[4]
	for _, g := range n.GetGpus() {
		g.Metrics = &fleetv1.GpuMetrics{GpuIndex: g.GetIndex(), UtilizationGpuPercent: 90, TemperatureCelsius: 70, PowerUsageMilliwatts: 600000, MemoryUsedBytes: 60 << 30}
	}
	send(m, nodeDetailMsg{id: "gpu-b02", resp: &controlplanev1.GetNodeResponse{Node: n}})
	for i := range 3 {
		if l := gpuLine(t, m, i); !noMetrics.MatchString(l) {
			t.Fatalf("offline node's GPU %d: %q", i, l)
		}
	}
	mustContain(t, gpuLine(t, m, 3), "lost")
	if f := plain(m); strings.Contains(f, "90%") || strings.Contains(f, "600W") {
		t.Fatalf("offline node shows old figures:\n%s", f)
	}
	checkFits(t, m, 80, 24)

	// It comes back: heartbeats bring live figures.
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: &controlplanev1.HeartbeatBatch{Heartbeats: []*controlplanev1.NodeHeartbeat{{
		NodeId: "gpu-b02", Reachability: fleetv1.Reachability_REACHABILITY_ONLINE, LastHeartbeatAt: timestamppb.New(now),
		Samples: []*fleetv1.GpuSample{
			{GpuIndex: 0, UtilizationGpuPercent: 33, TemperatureCelsius: 55, PowerUsageMilliwatts: 250000, MemoryUsedBytes: 10 << 30},
			{GpuIndex: 1, UtilizationGpuPercent: 0, TemperatureCelsius: 41, PowerUsageMilliwatts: 70000, MemoryUsedBytes: 0},
			{GpuIndex: 2, UtilizationGpuPercent: 12, TemperatureCelsius: 44, PowerUsageMilliwatts: 90000, MemoryUsedBytes: 1 << 30},
		},
	}}}}})
	mustContain(t, gpuLine(t, m, 0), "33%", "55°", "250W", "10/80G")
	// A measured zero is a zero.
	mustContain(t, gpuLine(t, m, 1), " 0%", "41°", "70W", "0/80G")
}

const diagReport = "diagnostics: 1 of 6 checks failed\n" +
	"ok   gpu0 nvml        responds\n" +
	"ok   gpu0 ecc         no volatile uncorrected errors\n" +
	"ok   gpu0 row-remap   no pending remaps\n" +
	"ok   gpu1 nvml        responds\n" +
	"FAIL gpu1 ecc         volatile uncorrected 2 since boot; reset the GPU or reboot the node before scheduling more work on it\n" +
	"ok   gpu1 row-remap   no pending remaps\n"

func diagCommands() []*fleetv1.Command {
	return []*fleetv1.Command{
		{Id: "cmd-3", NodeId: "gpu-a02", Type: fleetv1.CommandType_COMMAND_TYPE_CORDON, Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
			IssuedBy: "alice", Message: "cordoned: this node takes no new work", CreatedAt: timestamppb.New(now.Add(-time.Minute)), UpdatedAt: timestamppb.New(now.Add(-time.Minute))},
		{Id: "cmd-2", NodeId: "gpu-a02", Type: fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS, Status: fleetv1.CommandStatus_COMMAND_STATUS_FAILED,
			IssuedBy: "alice", Message: diagReport, CreatedAt: timestamppb.New(now.Add(-2 * time.Minute)), UpdatedAt: timestamppb.New(now.Add(-2 * time.Minute))},
		{Id: "cmd-1", NodeId: "gpu-a02", Type: fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS, Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
			IssuedBy: "alice", Message: "diagnostics: 6 checks on 2 GPUs passed\nok   gpu0 nvml        an older report\n",
			CreatedAt: timestamppb.New(now.Add(-time.Hour)), UpdatedAt: timestamppb.New(now.Add(-time.Hour))},
	}
}

func TestNodeViewShowsDiagnosticsReport(t *testing.T) {
	for _, size := range [][2]int{{200, 60}, {80, 24}} {
		w, h := size[0], size[1]
		m := newTestModel(t, Options{})
		send(m, tea.WindowSizeMsg{Width: w, Height: h})
		send(m, press("j"), press("enter"))
		resp := nodeDetail()
		resp.Commands = diagCommands()
		send(m, nodeDetailMsg{id: "gpu-a02", resp: resp})
		if h < 60 {
			// A small terminal scrolls down to the commands, which the
			// GPU details follow.
			for i := 0; i < 100 && !strings.Contains(plain(m), "diagnostics: 6 checks on 2 GPUs passed"); i++ {
				send(m, press("j"))
			}
		}
		f := plain(m)
		mustContain(t, f, "DIAGNOSTICS FAILED", "diagnostics: 1 of 6 checks failed",
			"FAIL gpu1 ecc         volatile uncorrected 2", "ok   gpu0 nvml        responds", "ok   gpu1 row-remap   no pending remaps",
			"cordoned: this node takes no new work", "diagnostics: 6 checks on 2 GPUs passed")
		// Only the latest report is shown in full, under its command.
		if strings.Contains(f, "an older report") {
			t.Fatalf("%dx%d: an older report is shown in full:\n%s", w, h, f)
		}
		lines := strings.Split(f, "\n")
		at := -1
		for i, l := range lines {
			if strings.Contains(l, "DIAGNOSTICS FAILED") {
				at = i
			}
		}
		for _, l := range lines[at+1 : at+7] {
			if !strings.HasPrefix(l, "      ") || !(strings.Contains(l, "ok ") || strings.Contains(l, "FAIL ")) {
				t.Fatalf("%dx%d: report line %q is not a check under its command:\n%s", w, h, l, f)
			}
		}
		// The other commands keep one line each.
		mustContain(t, f, "diagnostics: 6 checks on 2 GPUs passed")
		checkFits(t, m, w, h)
	}
}

// TestTerminatedNodesAreSetApart: the header counts terminated nodes
// apart from the fleet, and their rows show no live figures.
func TestTerminatedNodesAreSetApart(t *testing.T) {
	m := newTestModel(t, Options{})
	gone := fixtureNode("gpu-z99", 2, fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED, fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, fleetv1.Reachability_REACHABILITY_OFFLINE, time.Minute)
	sum := m.d.fleet.summary
	sum.Nodes++
	sum.Terminated++
	m.Apply(
		&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: gone}},
		&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_Totals{Totals: &controlplanev1.FleetTotals{Summary: sum}}},
	)
	f := plain(m)
	mustContain(t, f, "5 nodes (+1 terminated)")
	for _, l := range strings.Split(f, "\n") {
		if strings.Contains(l, "gpu-z99") && strings.Contains(l, "%") {
			t.Fatalf("terminated row shows utilisation: %q", l)
		}
	}
}

// TestNodeViewHeartbeatAgeFollowsStream: the node view's heartbeat age
// comes from the stream, not from when the node was fetched.
func TestNodeViewHeartbeatAgeFollowsStream(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: nodeDetail()})
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: &controlplanev1.HeartbeatBatch{
		Heartbeats: []*controlplanev1.NodeHeartbeat{{NodeId: "gpu-a02", Reachability: fleetv1.Reachability_REACHABILITY_ONLINE, LastHeartbeatAt: timestamppb.New(now.Add(-17 * time.Second))}},
	}}})
	mustContain(t, m.Frame(), "heartbeat 17s ago")
}

// processDetail is the node gpu-a02 as GetNode answers while python
// runs on gpu0 and gpu3: the health report of 20 s ago lists the
// processes, the heartbeat of 3 s ago counts them.
func processDetail() *controlplanev1.GetNodeResponse {
	d := nodeDetail()
	reported := timestamppb.New(now.Add(-20 * time.Second))
	d.Node.Gpus[0].Metrics = &fleetv1.GpuMetrics{Time: reported, Processes: []*fleetv1.GpuProcess{{Pid: 4121, Name: "python"}, {Pid: 4122}}}
	d.Node.Gpus[3].Metrics = &fleetv1.GpuMetrics{Time: reported, Processes: []*fleetv1.GpuProcess{{Pid: 4121, Name: "python"}}}
	d.Node.Samples[0].ProcessCount = 2
	d.Node.Samples[3].ProcessCount = 1
	return d
}

// TestNodeViewListsGPUProcesses: the processes a drain waits for are on
// the node's page.
func TestNodeViewListsGPUProcesses(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: processDetail()})
	mustContain(t, m.Frame(), "processes: 2 on gpu0, gpu3: pids 4121 (python), 4122")
	// Once the node is unreachable its processes are unknown.
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: &controlplanev1.HeartbeatBatch{
		Heartbeats: []*controlplanev1.NodeHeartbeat{{NodeId: "gpu-a02", Reachability: fleetv1.Reachability_REACHABILITY_OFFLINE, LastHeartbeatAt: timestamppb.New(now.Add(-2 * time.Minute))}},
	}}})
	if strings.Contains(plain(m), "processes:") {
		t.Fatal("an OFFLINE node's processes are shown")
	}
}

// TestNodeViewDropsProcessesThatEnded: once a heartbeat or a GetNode
// answer newer than the health report counts no processes on a GPU, as
// after a drain that killed them, the node view stops listing that GPU's
// processes without waiting for the next full report.
func TestNodeViewDropsProcessesThatEnded(t *testing.T) {
	heartbeat := func(ago time.Duration, gpu0, gpu3 uint32) tea.Msg {
		var samples []*fleetv1.GpuSample
		for i := range uint32(8) {
			s := &fleetv1.GpuSample{GpuIndex: i, UtilizationGpuPercent: 10, TemperatureCelsius: 40}
			switch i {
			case 0:
				s.ProcessCount = gpu0
			case 3:
				s.ProcessCount = gpu3
			}
			samples = append(samples, s)
		}
		return wire(&controlplanev1.WatchFleetResponse{Revision: 42, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: &controlplanev1.HeartbeatBatch{
			Heartbeats: []*controlplanev1.NodeHeartbeat{{NodeId: "gpu-a02", Reachability: fleetv1.Reachability_REACHABILITY_ONLINE,
				LastHeartbeatAt: timestamppb.New(now.Add(-ago)), Samples: samples}},
		}}})
	}
	drained := processDetail()
	drained.Node.Lifecycle = fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED
	drained.Node.LastHeartbeatAt = timestamppb.New(now.Add(-time.Second))
	drained.Node.Samples[0].ProcessCount, drained.Node.Samples[3].ProcessCount = 0, 0
	cases := []struct {
		name string
		then tea.Msg
		want string // the processes line, "" for none
	}{
		{"heartbeat-counts-none", heartbeat(time.Second, 0, 0), ""},
		{"heartbeat-counts-none-on-one-gpu", heartbeat(time.Second, 0, 1), "processes: 1 on gpu3: pids 4121 (python)"},
		{"heartbeat-older-than-the-report", heartbeat(30*time.Second, 0, 0), "processes: 2 on gpu0, gpu3: pids 4121 (python), 4122"},
		{"get-node-counts-none", nodeDetailMsg{id: "gpu-a02", resp: drained}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			send(m, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: processDetail()})
			mustContain(t, m.Frame(), "processes: 2 on gpu0, gpu3")
			send(m, c.then)
			got := ""
			for _, l := range strings.Split(plain(m), "\n") {
				if strings.HasPrefix(l, "processes:") {
					got = strings.TrimSpace(l)
				}
			}
			if got != c.want {
				t.Fatalf("processes line %q, want %q", got, c.want)
			}
		})
	}
}

// TestNodeViewShowsSlurm: a node whose agent works with Slurm shows what
// Slurm says of it, a drain set by hand marked as one Navarch leaves alone.
func TestNodeViewShowsSlurm(t *testing.T) {
	m := newTestModel(t, Options{})
	d := nodeDetail()
	d.Node.Scheduler = &fleetv1.SchedulerState{Scheduler: "slurm", NodeName: "a02", State: "IDLE+DRAIN", Drain: true, Drained: true, Reason: "fan noise"}
	send(m, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: d})
	mustContain(t, m.Frame(), "scheduler: slurm a02: IDLE+DRAIN · drained by hand (Navarch won't resume) · reason: fan noise")
}

// TestViewsFollowTheRegistry: each listed view is shown by its number key
// and by its commands, and help names both, the views in the order
// viewSpecs lists them.
func TestViewsFollowTheRegistry(t *testing.T) {
	m := newTestModel(t, Options{})
	listed := listedViews()
	var titles []string
	for _, s := range listed {
		titles = append(titles, s.title)
	}
	last := fmt.Sprint(len(listed))
	for i, s := range listed {
		send(m, press(last), press(fmt.Sprint(i+1)))
		if m.active != s.name {
			t.Fatalf("key %d shows %q, want %q", i+1, m.active, s.name)
		}
		for _, c := range append([]string{s.name}, s.aliases...) {
			send(m, press(last), press(":"))
			send(m, typed(c)...)
			send(m, press("enter"))
			if m.active != s.name {
				t.Fatalf(":%s shows %q, want %q", c, m.active, s.name)
			}
		}
		send(m, press("?"))
		mustContain(t, m.overlay.view(m.width), fmt.Sprintf("1–%d     %s", len(listed), strings.Join(titles, ", ")), ":"+s.name+" ")
		send(m, press("esc"))
	}
}

// TestHelpIsTheActiveViews: the help overlay lists the keys of the view it
// was opened from, and none that do nothing there.
func TestHelpIsTheActiveViews(t *testing.T) {
	tests := []struct {
		name       string
		keys       []tea.Msg
		has, lacks []string
	}{
		{"fleet", nil, []string{"mark row", "reverse sort", "run diagnostics", "filter"}, nil},
		{"events", keysOf("2"), []string{"open node", "filter", "provision…"}, []string{"mark row", "run diagnostics", "reverse sort"}},
		{"node", keysOf("enter"), []string{"uncordon", "run diagnostics", "power-cycle…", "back"}, []string{"mark row", "filter", "open node", "scale up"}},
		{"pools", keysOf("3"), []string{"open pool", "scale up (one node more)", "scale down (one node fewer)", "2H 1D 0U counts", "SIZE nodes/wanted"},
			[]string{"run diagnostics", "filter", "GPU glyphs", "power-cycle…"}},
		{"pool", keysOf("3", "enter"), []string{"open node", "scale up (one node more)", "cordon", "power-cycle…", "GPU glyphs", "2H 1D 0U counts"},
			[]string{"mark row", "filter", "SIZE nodes/wanted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newPoolModel(t, Options{})
			send(m, tt.keys...)
			send(m, press("?"))
			box := ansi.Strip(m.overlay.view(m.width))
			mustContain(t, box, tt.has...)
			for _, no := range tt.lacks {
				if strings.Contains(box, no) {
					t.Errorf("help lists %q:\n%s", no, box)
				}
			}
		})
	}
}

// probeView is a view that opens on an argument, registered as any new
// view would be: in viewSpecs, and nowhere else.
type probeView struct {
	opened []string
	hidden int
}

func (p *probeView) Update(msg tea.Msg) tea.Cmd {
	if _, ok := msg.(hiddenMsg); ok {
		p.hidden++
	}
	return nil
}
func (p *probeView) View() string              { return "probe on " + strings.Join(p.opened, ", ") }
func (p *probeView) SetSize(int, int)          {}
func (p *probeView) Hint() string              { return "probe" }
func (p *probeView) ShortHelp() []key.Binding  { return nil }
func (p *probeView) FullHelp() [][]key.Binding { return nil }
func (p *probeView) open(arg string) tea.Cmd   { p.opened = append(p.opened, arg); return nil }

// TestViewOpensOnItsArgument: showViewMsg opens any view that takes an
// argument on it, without the root knowing the view.
func TestViewOpensOnItsArgument(t *testing.T) {
	registered := viewSpecs
	t.Cleanup(func() { viewSpecs = registered })
	viewSpecs = append(slices.Clone(registered), viewSpec{name: "probe", newView: func(*deps) view { return &probeView{} }})

	m := newTestModel(t, Options{})
	probe := m.views["probe"].(*probeView)
	send(m, showViewMsg{name: "probe", arg: "gpu-a01"})
	if m.active != "probe" || len(probe.opened) != 1 || probe.opened[0] != "gpu-a01" {
		t.Fatalf("showing probe on gpu-a01: active %q, opened on %v", m.active, probe.opened)
	}
	mustContain(t, m.Frame(), "probe on gpu-a01")
	send(m, showViewMsg{name: nodeViewName, arg: "gpu-a03"})
	if m.active != nodeViewName || nodeOf(m).id != "gpu-a03" || probe.hidden != 1 {
		t.Fatalf("showing the node gpu-a03: active %q on %q, probe hidden %d times", m.active, nodeOf(m).id, probe.hidden)
	}
	// Without an argument a view is shown as it was.
	send(m, showViewMsg{name: "probe"})
	if m.active != "probe" || len(probe.opened) != 1 {
		t.Fatalf("showing probe again: active %q, opened on %v", m.active, probe.opened)
	}
}
