package tui

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestFooterAlwaysOffersHelpAndQuit: however narrow the terminal, in every
// view, the last line ends with the help and quit keys.
func TestFooterAlwaysOffersHelpAndQuit(t *testing.T) {
	m := newTestModel(t, Options{})
	for _, width := range []int{160, 100, 80, 60, 40} {
		send(m, tea.WindowSizeMsg{Width: width, Height: 24})
		for _, view := range []string{"1", "2"} {
			send(m, press(view))
			lines := strings.Split(plain(m), "\n")
			if last := lines[len(lines)-1]; !strings.HasSuffix(last, "? help  q quit") {
				t.Fatalf("width %d, view %s: footer %q", width, view, last)
			}
		}
	}
}

// TestHelpFitsSmallTerminal: at 80 × 24 the help overlay is whole, border
// to border, with every binding.
func TestHelpFitsSmallTerminal(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24}, press("?"))
	f := plain(m)
	for i, l := range strings.Split(f, "\n") {
		if w := len([]rune(l)); w > 80 || strings.HasSuffix(l, "…") {
			t.Fatalf("line %d cut or too wide (%d): %q", i, w, l)
		}
	}
	mustContain(t, f, "╭", "╰", "run diagnostics", "provision…", "reverse sort", "? or esc closes this help")
}

// TestStatusLineExpires: an action's result shows for a while, then the
// view's hint returns; errors stay longer.
func TestStatusLineExpires(t *testing.T) {
	at := now
	m := newTestModel(t, Options{Now: func() time.Time { return at }})
	send(m, actionDoneMsg{text: "cordoned gpu-a01"})
	mustContain(t, m.Frame(), "cordoned gpu-a01")
	at = at.Add(statusShown)
	send(m, tickMsg(at))
	if strings.Contains(plain(m), "cordoned gpu-a01") {
		t.Fatal("status line still shown after it expired")
	}
	mustContain(t, m.Frame(), "5 of 5 nodes")
	send(m, actionDoneMsg{text: "cordon failed: node is TERMINATED", err: true})
	at = at.Add(statusShown)
	send(m, tickMsg(at))
	mustContain(t, m.Frame(), "cordon failed")
	at = at.Add(statusErrShown)
	send(m, tickMsg(at))
	if strings.Contains(plain(m), "cordon failed") {
		t.Fatal("error still shown after it expired")
	}
}

// TestEnterSubmitsFormFromAnyField: enter in the first field of the
// provision form goes to the confirmation, with the defaults.
func TestEnterSubmitsFormFromAnyField(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("p"))
	if _, ok := m.dialog.(*provisionDialog); !ok {
		t.Fatalf("p opened %T", m.dialog)
	}
	send(m, press("enter"))
	if _, ok := m.dialog.(*confirm); !ok {
		t.Fatalf("enter in the first field left %T", m.dialog)
	}
	mustContain(t, m.Frame(), "Provision 2 node(s) with 8 GPUs each through local?")
	send(m, press("n"))
	if m.dialog != nil {
		t.Fatal("n did not cancel")
	}
	// tab still moves between fields, and a bad value keeps the form open.
	send(m, press("p"), press("tab"), press("ctrl+a"))
	send(m, typed("zero")...)
	send(m, press("enter"))
	mustContain(t, m.Frame(), "is not a whole number from 1 to 1000")
}

// TestTerminatedNodesAreSetApart: the header counts terminated nodes
// apart from the fleet, and their rows show no live figures.
func TestTerminatedNodesAreSetApart(t *testing.T) {
	m := newTestModel(t, Options{})
	gone := fixtureNode("gpu-z99", 2, fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED, fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, fleetv1.Reachability_REACHABILITY_OFFLINE, time.Minute)
	sum := m.fleet.summary
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

// TestNodeViewListsGPUProcesses: the processes a drain waits for are on
// the node's page.
func TestNodeViewListsGPUProcesses(t *testing.T) {
	m := newTestModel(t, Options{})
	d := nodeDetail()
	d.Node.Gpus[0].Metrics = &fleetv1.GpuMetrics{Processes: []*fleetv1.GpuProcess{{Pid: 4121, Name: "python"}, {Pid: 4122}}}
	d.Node.Gpus[3].Metrics = &fleetv1.GpuMetrics{Processes: []*fleetv1.GpuProcess{{Pid: 4121, Name: "python"}}}
	send(m, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: d})
	mustContain(t, m.Frame(), "processes: 2 on gpu0, gpu3: pids 4121 (python), 4122")
	// Once the node is unreachable its processes are unknown.
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: &controlplanev1.HeartbeatBatch{
		Heartbeats: []*controlplanev1.NodeHeartbeat{{NodeId: "gpu-a02", Reachability: fleetv1.Reachability_REACHABILITY_OFFLINE, LastHeartbeatAt: timestamppb.New(now.Add(-2 * time.Minute))}},
	}}})
	if strings.Contains(plain(m), "processes:") {
		t.Fatal("an OFFLINE node's processes are shown")
	}
}
