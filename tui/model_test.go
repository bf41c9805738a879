package tui

import (
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// newTestModel is a console without a stream, at a fixed size and clock,
// with colour off, loaded with the fixture fleet.
func newTestModel(t *testing.T, o Options) *Model {
	t.Helper()
	o.NoStream = true
	if o.Now == nil {
		o.Now = clock
	}
	if o.Theme == nil {
		o.Theme = NewTheme(true, false)
	}
	if o.Server == "" {
		o.Server = "127.0.0.1:50051"
	}
	m := New(o)
	send(m, tea.WindowSizeMsg{Width: 100, Height: 30}, connectedMsg{}, fixtureStatus())
	m.Apply(snapshot(40, fixtureFleet(), fixtureEvents()))
	return m
}

// send feeds messages to Update and returns the last command.
func send(m *Model, msgs ...tea.Msg) tea.Cmd {
	var cmd tea.Cmd
	for _, msg := range msgs {
		_, cmd = m.Update(msg)
	}
	return cmd
}

func keysOf(s ...string) []tea.Msg {
	var out []tea.Msg
	for _, k := range s {
		out = append(out, press(k))
	}
	return out
}

// plain is the frame without styling, as a terminal without colour would
// show it.
func plain(m *Model) string { return ansi.Strip(m.Frame()) }

func mustContain(t *testing.T, frame string, wants ...string) {
	t.Helper()
	frame = ansi.Strip(frame)
	for _, w := range wants {
		if !strings.Contains(frame, w) {
			t.Fatalf("frame lacks %q:\n%s", w, frame)
		}
	}
}

func TestFleetViewShowsEachDimension(t *testing.T) {
	m := newTestModel(t, Options{})
	f := plain(m)
	mustContain(t, f, "● connected", "rev 40", "5 nodes  32 GPUs", "2 unhealthy", "2 cordoned", "1 draining")
	lines := strings.Split(f, "\n")
	row := func(id string) string {
		for _, l := range lines {
			if strings.Contains(l, id) {
				return l
			}
		}
		t.Fatalf("no row for %s", id)
		return ""
	}
	// A cordoned healthy node and a failed one read differently, in words.
	mustContain(t, row("gpu-a03"), "CORDONED", "HEALTHY", "ONLINE", "HHHHHHHH")
	mustContain(t, row("gpu-a02"), "CORDONED", "UNHEALTHY", "HHUHHHHH")
	mustContain(t, row("gpu-b01"), "DRAINING", "DEGRADED", "STALE", "HDHH", "45s", "gpu1: temperature", "→ cooling")
	mustContain(t, row("gpu-b02"), "ACTIVE", "UNHEALTHY", "OFFLINE", "HHHX", "5m", "→ reboot")
	mustContain(t, row("gpu-a01"), "67%", "67°", "2s")
	// Where the terminal has room, the labels come back beside the causes.
	send(m, tea.WindowSizeMsg{Width: 200, Height: 30})
	mustContain(t, line(m, "gpu-b01"), "gpu1: temperature at or past the GPU's slowdown threshold → check cooling", "pool=infer")
}

func TestNavigationAndSort(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, keysOf("j", "j")...)
	if r := fleetOf(m).current(); r.id != "gpu-a03" {
		t.Fatalf("cursor on %s", r.id)
	}
	send(m, press("G"))
	if r := fleetOf(m).current(); r.id != "gpu-b02" {
		t.Fatalf("G: cursor on %s", r.id)
	}
	// Sort by health: worst first; the cursor follows its node.
	send(m, keysOf("s", "s")...)
	if m.d.fleet.sortBy != colHealth {
		t.Fatalf("sorted by %s", columnNames[m.d.fleet.sortBy])
	}
	if r := fleetOf(m).current(); r.id != "gpu-b02" {
		t.Fatalf("cursor lost its node: %s", r.id)
	}
	if got, want := shownIDs(m), []string{"gpu-a02", "gpu-b02", "gpu-b01", "gpu-a01", "gpu-a03"}; !slices.Equal(got, want) {
		t.Fatalf("sorted by health: %v, want %v", got, want)
	}
	mustContain(t, m.Frame(), "HEALTH▲")
	send(m, press("S"))
	if m.d.fleet.shown[0].health != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Fatalf("reverse sort starts with %s", m.d.fleet.shown[0].id)
	}
	mustContain(t, m.Frame(), "HEALTH▼")
	send(m, press("g"))
	if fleetOf(m).cursor != 0 {
		t.Fatal("g did not go to the top")
	}
}

func TestFilter(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("/"))
	if !filterOpen(m) {
		t.Fatal("/ did not open the filter")
	}
	send(m, typed("pool=infer")...)
	if len(m.d.fleet.shown) != 2 {
		t.Fatalf("label filter keeps %d nodes", len(m.d.fleet.shown))
	}
	send(m, typed(" b02")...)
	if len(m.d.fleet.shown) != 1 || m.d.fleet.shown[0].id != "gpu-b02" {
		t.Fatalf("label and text filter keeps %v", len(m.d.fleet.shown))
	}
	send(m, press("enter"))
	if filterOpen(m) {
		t.Fatal("enter did not close the filter")
	}
	mustContain(t, m.Frame(), "1 of 5 nodes", "filter pool=infer b02")
	// The filter stays while moving; esc clears it.
	send(m, press("esc"))
	if len(m.d.fleet.shown) != 5 {
		t.Fatalf("esc left %d nodes shown", len(m.d.fleet.shown))
	}
	send(m, press("/"))
	send(m, typed("nothing-matches")...)
	mustContain(t, m.Frame(), "no node matches the filter")
}

func TestViewsAndPalette(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press(":"))
	send(m, typed("events")...)
	send(m, press("enter"))
	if m.active != eventsViewName {
		t.Fatal(":events did not switch views")
	}
	mustContain(t, m.Frame(), "XID 79", "GPU has fallen off the bus", "reboot", "gpu-b01", "cooling")
	// A wide terminal has room for the remedies in full.
	send(m, tea.WindowSizeMsg{Width: 160, Height: 30})
	mustContain(t, m.Frame(), "drain, reboot node", "check cooling")
	send(m, tea.WindowSizeMsg{Width: 100, Height: 30})
	// The palette keeps a history.
	send(m, press(":"))
	send(m, press("up"))
	if m.palette.input.Value() != "events" {
		t.Fatalf("history gave %q", m.palette.input.Value())
	}
	send(m, press("esc"))
	send(m, press(":"))
	send(m, typed("bogus")...)
	send(m, press("enter"))
	mustContain(t, m.Frame(), `unknown command "bogus"`)
	send(m, press(":"))
	send(m, typed("nodes")...)
	send(m, press("enter"))
	if m.active != fleetViewName {
		t.Fatal(":nodes did not switch back")
	}
	// New events arrive live, newest first.
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_HealthEvent{HealthEvent: &fleetv1.HealthEvent{
		Id: "ev-9", NodeId: "gpu-a01", GpuIndex: 5, Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 48, Time: timestamppb.New(now),
		Health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, Cause: "double-bit ECC error", Remedy: fleetv1.Remedy_REMEDY_RESET_GPU,
	}}})
	if m.d.fleet.events[0].GetXid() != 48 {
		t.Fatal("new event not first")
	}
	send(m, press(":"))
	send(m, typed("q")...)
	_, cmd := m.Update(press("enter"))
	if cmd == nil || cmd() != tea.Quit() {
		t.Fatal(":q did not quit")
	}
}

func TestHelpIsGeneratedFromKeymap(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("?"))
	f := plain(m)
	for _, group := range fleetOf(m).FullHelp() {
		for _, b := range group {
			mustContain(t, f, b.Help().Desc)
		}
	}
	send(m, press("?"))
	if m.overlay != nil {
		t.Fatal("? did not close help")
	}
}

// TestHelpKeepsEachCommandOnOneLine: where the : commands take more
// than a line, a command and the ids it takes are never split between two.
func TestHelpKeepsEachCommandOnOneLine(t *testing.T) {
	for _, width := range []int{100, 80, 60} {
		m := newTestModel(t, Options{})
		send(m, tea.WindowSizeMsg{Width: width, Height: 40}, press("?"))
		help := ansi.Strip(m.overlay.view(width))
		for _, l := range strings.Split(help, "\n") {
			l = strings.Trim(l, "│ ")
			if strings.HasPrefix(l, "ID") || strings.HasSuffix(l, ":node") || strings.HasSuffix(l, ":cordon") || strings.HasSuffix(l, ":terminate") {
				t.Fatalf("at %d columns help splits a command from its ids:\n%s", width, help)
			}
		}
		mustContain(t, help, ":terminate ID…", ":release ID…")
	}
}

// TestReadOnlyHidesAndRefusesActions: in every view, a read-only console
// binds no action key: help lists none, and pressing any of them, whether
// or not the view acts with it, says why nothing happens. --read-only
// makes a console read-only, and so does a viewer's token once the control
// plane has said whose it is.
func TestReadOnlyHidesAndRefusesActions(t *testing.T) {
	actions := []string{"c", "u", "d", "t", "p", "x", "r", "b", "P", "+", "-", "space", "ctrl+a"}
	viewer := fixtureStatus()
	viewer.caller = &controlplanev1.Caller{Name: "dash", Role: controlplanev1.Role_ROLE_VIEWER}
	modes := []struct {
		name    string
		o       Options
		status  []tea.Msg
		refusal string
	}{
		{"flag", Options{ReadOnly: true}, nil, "read-only: actions are disabled"},
		{"viewer", Options{}, []tea.Msg{viewer}, "read-only: this token's role is viewer"},
	}
	tests := []struct {
		name string
		open []tea.Msg
	}{
		{"fleet", nil},
		{"events", keysOf("2")},
		{"node", keysOf("enter")},
		{"pools", []tea.Msg{pooled(), press("3")}},
		{"pool", []tea.Msg{pooled(), press("3"), press("enter")}},
	}
	for _, mode := range modes {
		for _, tt := range tests {
			t.Run(mode.name+"-"+tt.name, func(t *testing.T) {
				m := newTestModel(t, mode.o)
				send(m, tt.open...)
				send(m, mode.status...)
				readOnlyRefuses(t, m, actions, mode.refusal)
			})
		}
	}
}

// readOnlyRefuses checks that m refuses every action key with refusal,
// and that neither help nor the : prompt offers one.
func readOnlyRefuses(t *testing.T, m *Model, actions []string, refusal string) {
	t.Helper()
	mustContain(t, m.Frame(), "[READ-ONLY]")
	for _, k := range actions {
		send(m, statusLineMsg{})
		if cmd := send(m, press(k)); cmd != nil {
			t.Fatalf("%s returned a command in read-only mode", k)
		}
		if m.overlay != nil {
			t.Fatalf("%s opened a dialog in read-only mode", k)
		}
		mustContain(t, m.Frame(), refusal)
	}
	send(m, press("?"))
	for _, action := range []string{"mark row", "uncordon", "drain…", "terminate", "provision…", "run diagnostics", ":provision",
		"reset a GPU…", "reboot…", ":reset-gpu", ":reboot", "power-cycle…", "scale up", "scale down"} {
		if f := plain(m); strings.Contains(f, action) {
			t.Fatalf("help shows %q in read-only mode:\n%s", action, f)
		}
	}
	send(m, press("esc"))
	for _, c := range []string{"provision", "reset-gpu", "reboot"} {
		send(m, statusLineMsg{})
		send(m, press(":"))
		send(m, typed(c)...)
		send(m, press("enter"))
		if m.overlay != nil {
			t.Fatalf(":%s opened a dialog in read-only mode", c)
		}
		mustContain(t, m.Frame(), refusal)
	}
}

func TestDrainDialogConfirms(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("d"))
	dd, ok := m.overlay.(*drainDialog)
	if !ok {
		t.Fatalf("d opened %T", m.overlay)
	}
	send(m, typed("kernel 6.8")...)
	send(m, press("tab"))
	for range 2 {
		send(m, press("backspace"))
	}
	send(m, typed("soon")...)
	send(m, press("tab"), press("space"), press("enter"))
	mustContain(t, m.Frame(), `deadline "soon" is not a duration`)
	if m.overlay != dd {
		t.Fatal("a bad deadline closed the dialog")
	}
	for range 4 {
		send(m, press("backspace"))
	}
	send(m, typed("30m")...)
	send(m, press("enter"), press("enter"))
	if _, ok := m.overlay.(*confirm); !ok {
		t.Fatalf("after the form: %T", m.overlay)
	}
	mustContain(t, m.Frame(), "Drain gpu-a01?", "deadline 30m0s", "TERM, then KILL")
	send(m, press("n"))
	if m.overlay != nil {
		t.Fatal("n did not cancel")
	}
}

func TestBulkActionsAskFirst(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("space"), press("space"))
	if len(fleetOf(m).marks) != 2 {
		t.Fatalf("marked %d", len(fleetOf(m).marks))
	}
	mustContain(t, m.Frame(), "2 marked", "✓")
	if cmd := send(m, press("c")); cmd != nil {
		t.Fatal("bulk cordon ran without confirmation")
	}
	mustContain(t, m.Frame(), "Cordon 2 marked nodes (gpu-a01, gpu-a02)?")
	send(m, press("esc"))
	// esc in the fleet view clears the marks.
	send(m, press("esc"))
	if len(fleetOf(m).marks) != 0 {
		t.Fatal("esc kept the marks")
	}
	send(m, press("t"))
	mustContain(t, m.Frame(), "Terminate gpu-a03", "Drained first", "Drain timeout")
	send(m, press("esc"))
	send(m, press("ctrl+a"))
	if len(fleetOf(m).marks) != 5 {
		t.Fatalf("ctrl+a marked %d", len(fleetOf(m).marks))
	}
}

func TestStreamUpdatesRows(t *testing.T) {
	m := newTestModel(t, Options{})
	up := fixtureNode("gpu-a01", 8, fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, fleetv1.Reachability_REACHABILITY_ONLINE, 0)
	m.Apply(
		&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: up}},
		&controlplanev1.WatchFleetResponse{Revision: 42, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: fixtureNode("gpu-c01", 2, fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING, fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN, fleetv1.Reachability_REACHABILITY_UNKNOWN, 0)}},
		&controlplanev1.WatchFleetResponse{Revision: 43, Change: &controlplanev1.WatchFleetResponse_NodeRemoved{NodeRemoved: &controlplanev1.NodeRemoved{NodeId: "gpu-b02"}}},
		&controlplanev1.WatchFleetResponse{Revision: 43, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: &controlplanev1.HeartbeatBatch{Heartbeats: []*controlplanev1.NodeHeartbeat{
			{NodeId: "gpu-a03", Reachability: fleetv1.Reachability_REACHABILITY_ONLINE, LastHeartbeatAt: timestamppb.New(now), Samples: []*fleetv1.GpuSample{{UtilizationGpuPercent: 3, TemperatureCelsius: 91}}},
		}}}},
	)
	f := plain(m)
	mustContain(t, f, "rev 43", "gpu-c01", "PROVISIONING")
	if strings.Contains(f, "gpu-b02") {
		t.Fatal("removed node still shown")
	}
	if r := m.d.fleet.rows["gpu-a03"]; r.util != 3 || r.hot != 91 {
		t.Fatalf("heartbeat not applied: %+v", r)
	}
	if m.d.fleet.rows["gpu-a01"].lifecycle != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED {
		t.Fatal("upsert not applied")
	}
}

func TestConnectionLossBanner(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, disconnectedMsg{err: "connection refused", retry: 2 * time.Second, attempt: 3})
	mustContain(t, m.Frame(), "○ disconnected", "CONNECTION LOST", "connection refused", "retry 3 in 2s", "showing revision 40")
	send(m, connectedMsg{resumed: true})
	f := plain(m)
	if strings.Contains(f, "CONNECTION LOST") {
		t.Fatal("banner stayed after reconnect")
	}
	mustContain(t, f, "● connected", "resumed from revision 40")
}

func TestBreakerBanner(t *testing.T) {
	m := newTestModel(t, Options{})
	// The banner counts the nodes still held back, from the summary.
	summary := proto.CloneOf(m.d.fleet.summary)
	summary.HeldBack = 4
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_Totals{Totals: &controlplanev1.FleetTotals{
		Summary: summary,
		Breaker: &fleetv1.BreakerStatus{AutoCordonEnabled: true, Tripped: true, TrippedAt: timestamppb.New(now.Add(-2 * time.Minute)), SuppressedCordons: 4},
	}}})
	mustContain(t, m.Frame(), "AUTO-CORDON SUSPENDED", "2m ago", "4 cordons held back")
}

func TestResizeReflows(t *testing.T) {
	m := newTestModel(t, Options{})
	for _, size := range [][2]int{{80, 24}, {200, 60}, {60, 20}} {
		send(m, tea.WindowSizeMsg{Width: size[0], Height: size[1]})
		lines := strings.Split(plain(m), "\n")
		if len(lines) != size[1] {
			t.Fatalf("%dx%d: %d lines", size[0], size[1], len(lines))
		}
		for i, l := range lines {
			if w := len([]rune(l)); w > size[0] {
				t.Fatalf("%dx%d: line %d is %d wide: %q", size[0], size[1], i, w, l)
			}
		}
	}
}

func TestOpenNodeView(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("j"))
	send(m, press("enter"))
	if m.active != nodeViewName || nodeOf(m).id != "gpu-a02" {
		t.Fatalf("enter: view %s node %q", m.active, nodeOf(m).id)
	}
	mustContain(t, m.Frame(), "loading gpu-a02")
	send(m, nodeDetailMsg{id: "gpu-a02", resp: nodeDetail()})
	mustContain(t, m.Frame(), "gpu-a02", "CORDONED", "auto-cordon", "[policy]", "drain, reboot node", "XID 79",
		"GPU has fallen off the bus", "CORDON", "SUCCEEDED", "cordoned: this node takes no new work")
	send(m, press("esc"))
	if m.active != fleetViewName {
		t.Fatal("esc did not go back")
	}
}

func nodeDetail() *controlplanev1.GetNodeResponse {
	n := fixtureFleet()[1]
	for _, g := range n.GetGpus() {
		g.Metrics = &fleetv1.GpuMetrics{GpuIndex: g.GetIndex(), UtilizationGpuPercent: 90, TemperatureCelsius: 70, PowerUsageMilliwatts: 600000, MemoryUsedBytes: 60 << 30}
	}
	resp := &controlplanev1.GetNodeResponse{Node: n, Events: fixtureEvents()[:1], Commands: []*fleetv1.Command{{
		Id: "cmd-7", NodeId: n.GetNodeId(), Type: fleetv1.CommandType_COMMAND_TYPE_CORDON, Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
		IssuedBy: "policy", Message: "cordoned: this node takes no new work", UpdatedAt: timestamppb.New(now.Add(-50 * time.Second)),
	}}}
	for i := range 8 {
		h := &controlplanev1.GpuHistory{GpuIndex: uint32(i)}
		for s := range 30 {
			h.UtilizationGpuPercent = append(h.UtilizationGpuPercent, uint32((s*7+i*11)%100))
			h.TemperatureCelsius = append(h.TemperatureCelsius, uint32(50+(s+i)%30))
		}
		resp.History = append(resp.History, h)
	}
	return resp
}

// TestMarksFollowTheFilter: a bulk action reaches only nodes on screen; a
// filter that hides marked nodes unmarks them.
func TestMarksFollowTheFilter(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("space"), press("space")) // gpu-a01, gpu-a02
	send(m, press("/"))
	send(m, typed("b0")...)
	send(m, press("enter"))
	if len(fleetOf(m).marks) != 0 {
		t.Fatalf("hidden nodes stay marked: %v", fleetOf(m).marks)
	}
	send(m, press("t"))
	f := plain(m)
	mustContain(t, f, "Terminate gpu-b0")
	if strings.Contains(f, "marked") {
		t.Fatalf("terminate offered for hidden marked nodes:\n%s", f)
	}
}

// TestEachViewKeepsItsFilter: / opens on the filter of the view it
// edits, so typing in one view never lands in the other's.
func TestEachViewKeepsItsFilter(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("/"))
	send(m, typed("a0")...)
	send(m, press("enter"), press("2"), press("/"))
	if v := filterText(m); v != "" {
		t.Fatalf("events filter opened with %q", v)
	}
	send(m, typed("thermal")...)
	send(m, press("enter"), press("1"), press("/"))
	if v := filterText(m); v != "a0" {
		t.Fatalf("fleet filter reopened with %q, want a0", v)
	}
	send(m, press("z"), press("enter"))
	if m.d.fleet.filter.text != "a0z" || eventsOf(m).filter.text != "thermal" {
		t.Fatalf("filters: fleet %q, events %q", m.d.fleet.filter.text, eventsOf(m).filter.text)
	}
}

// TestBackFromNodeReturnsWhereItCameFrom: esc from a node opened in the
// events view goes back to the events; any way out of the node view stops
// its updates.
func TestBackFromNodeReturnsWhereItCameFrom(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("2"), press("enter"))
	if m.active != nodeViewName || nodeOf(m).id == "" {
		t.Fatalf("enter in events opened view %s node %q", m.active, nodeOf(m).id)
	}
	send(m, press("esc"))
	if m.active != eventsViewName {
		t.Fatalf("esc went to view %s, want the events", m.active)
	}
	send(m, press("1"), press("enter"))
	send(m, press("2"))
	if m.active != eventsViewName || nodeOf(m).id != "" {
		t.Fatalf("leaving the node with 2: view %s, node %q still open", m.active, nodeOf(m).id)
	}
}

// TestLongNodeIDKeepsDataColumns: at 80 columns one long node id is
// shortened rather than costing every row its UTIL, HOT and SEEN; with a
// fault in sight, those give way to its cause and remedy, and the id is
// still only shortened.
func TestLongNodeIDKeepsDataColumns(t *testing.T) {
	m := newTestModel(t, Options{})
	long := fixtureNode("gpu-training-cluster-east-rack-17-node-042", 8, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE,
		fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, fleetv1.Reachability_REACHABILITY_ONLINE, time.Second)
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: long}})
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24}, press("s"), press("s"), press("s"), press("s"), press("s"))
	send(m, press("/"))
	send(m, typed("healthy")...)
	send(m, press("enter"))
	mustContain(t, plain(m), "UTIL▲", "HOT", "SEEN", "gpu-training-cluste…", "67%")
	send(m, press("esc"))
	mustContain(t, plain(m), "WHY", "gpu-training-cl…", "gpu2 XID… → reboot")
}

// TestBannerPutsRetryFirst: at 80 columns the banner shows the retry and
// the revision before the (long) error, and the retry counts down.
func TestBannerPutsRetryFirst(t *testing.T) {
	at := now
	m := newTestModel(t, Options{Now: func() time.Time { return at }})
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	send(m, disconnectedMsg{err: `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:50051: connect: connection refused"`, retry: 6 * time.Second, attempt: 5})
	mustContain(t, m.Frame(), "retry 5 in 6s", "showing revision 40")
	at = at.Add(4 * time.Second)
	send(m, tickMsg{})
	mustContain(t, m.Frame(), "retry 5 in 2s")
}

// TestWaitingMessageWraps: before the first snapshot, a long connection
// error is wrapped to the screen, not cut on every line.
func TestWaitingMessageWraps(t *testing.T) {
	m := New(Options{NoStream: true, Now: clock, Theme: NewTheme(true, false), Server: "127.0.0.1:1"})
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	send(m, disconnectedMsg{err: `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`, retry: time.Second, attempt: 1})
	f := plain(m)
	mustContain(t, f, "connection refused")
	for _, line := range strings.Split(f, "\n") {
		if strings.HasSuffix(strings.TrimRight(line, " "), "…") && !strings.Contains(line, "help") {
			t.Fatalf("a line is cut:\n%s", f)
		}
	}
}

// TestPromptPlaceholdersShow: the / and : prompts show their whole hint.
func TestPromptPlaceholdersShow(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("/"))
	mustContain(t, m.Frame(), "text or label=value")
	send(m, press("esc"), press(":"))
	mustContain(t, m.Frame(), "nodes · events")
}

// TestSnapshotCutShort: a stream that breaks in the middle of a snapshot
// leaves the console on what it had: its revision (the resume point) does
// not jump to the unfinished snapshot's, and the next stream's snapshot is
// not mixed with the old chunks.
func TestSnapshotCutShort(t *testing.T) {
	m := newTestModel(t, Options{})
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 90, Change: &controlplanev1.WatchFleetResponse_Snapshot{Snapshot: &controlplanev1.Snapshot{
		Nodes: []*fleetv1.Node{fixtureNode("gpu-x01", 1, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, fleetv1.Reachability_REACHABILITY_ONLINE, 0)},
	}}})
	if m.d.fleet.revision != 40 {
		t.Fatalf("an unfinished snapshot moved the revision to %d", m.d.fleet.revision)
	}
	send(m, disconnectedMsg{err: "reset", retry: time.Second, attempt: 1}, connectedMsg{})
	m.Apply(snapshot(95, fixtureFleet()[:2], nil))
	if _, ok := m.d.fleet.rows["gpu-x01"]; ok || len(m.d.fleet.rows) != 2 || m.d.fleet.revision != 95 {
		t.Fatalf("rows %d (gpu-x01 kept: %t), revision %d", len(m.d.fleet.rows), ok, m.d.fleet.revision)
	}
}
