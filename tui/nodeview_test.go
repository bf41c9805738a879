package tui

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The UUIDs of throttledNode's GPUs, whole.
var throttledUUIDs = []string{
	"GPU-0a1b2c3d-1111-4c7d-9e0f-1a2b3c4d5e60",
	"GPU-5f1c2d3e-2222-4c7d-9e0f-1a2b3c4d5e61",
	"GPU-9e8d7c6b-3333-4c7d-9e0f-1a2b3c4d5e62",
	"GPU-77aa88bb-4444-4c7d-9e0f-1a2b3c4d5e63",
}

// throttledNode is gpu-t01, four H100s at 3 a.m.: gpu0 idle; gpu1 with
// three faults, too hot, slowed by heat for 2m10s and at its power cap;
// gpu2 held down by the power brake for 45 s; gpu3 busy at full clocks.
func throttledNode() *fleetv1.Node {
	n := fixtureNode("gpu-t01", 4, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY,
		fleetv1.Reachability_REACHABILITY_ONLINE, 2*time.Second)
	reasons := []uint64{
		clocksIdle,
		clocksHwThermal | clocksHwSlowdown | clocksSwPowerCap,
		clocksHwPowerBrake | clocksHwSlowdown,
		0,
	}
	for i, g := range n.GetGpus() {
		g.Uuid = throttledUUIDs[i]
		g.PciBusId = fmt.Sprintf("0000:%02x:00.0", 0x1b+i)
		g.Serial = fmt.Sprintf("165492200654%d", i)
		g.Metrics = &fleetv1.GpuMetrics{
			GpuIndex: g.GetIndex(), UtilizationGpuPercent: 80, TemperatureCelsius: 70, PowerUsageMilliwatts: 600000, MemoryUsedBytes: 60 << 30,
			SmClockMhz: 1980, MemoryClockMhz: 2619, ClockEventReasons: reasons[i],
		}
	}
	n.Gpus[0].Metrics.SmClockMhz, n.Gpus[0].Metrics.UtilizationGpuPercent = 345, 0
	n.Gpus[1].Metrics.SmClockMhz, n.Gpus[1].Metrics.HwSlowdownSeconds = 1125, 130
	n.Gpus[2].Metrics.SmClockMhz, n.Gpus[2].Metrics.PowerBrakeSeconds = 810, 45
	bad := n.Gpus[1]
	bad.Health = fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
	bad.Remedy = fleetv1.Remedy_REMEDY_RESET_GPU
	bad.HealthCause = "double-bit ECC error (+2 more)"
	bad.Faults = []*fleetv1.Fault{
		{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 48, Health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, Cause: "double-bit ECC error",
			Remedy: fleetv1.Remedy_REMEDY_RESET_GPU, Since: timestamppb.New(now.Add(-20 * time.Minute)), Count: 3, Escalated: true},
		{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, Health: fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, Cause: "GPU has fallen off the bus",
			Remedy: fleetv1.Remedy_REMEDY_REBOOT_NODE, Since: timestamppb.New(now.Add(-5 * time.Minute)), Count: 1},
		{Kind: fleetv1.EventKind_EVENT_KIND_THERMAL, Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED, Cause: "temperature at or past the GPU's slowdown threshold",
			Remedy: fleetv1.Remedy_REMEDY_CHECK_COOLING, Since: timestamppb.New(now.Add(-2 * time.Minute)), Count: 7},
	}
	n.HealthCause = "gpu1: double-bit ECC error (+2 more)"
	n.Remedy = fleetv1.Remedy_REMEDY_RESET_GPU
	return n
}

// openThrottled adds gpu-t01 to the fleet, opens it from the fleet view
// (it sorts last) and answers its fetch.
func openThrottled(t *testing.T, m *Model, width, height int) {
	t.Helper()
	send(m, tea.WindowSizeMsg{Width: width, Height: height})
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: throttledNode()}})
	send(m, press("1"), press("G"), press("enter"))
	if m.active != nodeViewName || nodeOf(m).id != "gpu-t01" {
		t.Fatalf("opened %q", nodeOf(m).id)
	}
	send(m, nodeDetailMsg{id: "gpu-t01", resp: &controlplanev1.GetNodeResponse{Node: throttledNode(), Events: fixtureEvents()[:1]}})
}

// scrolled is every line the node view shows from its top to its end, in
// order, each once, without the line that says where the scrolling
// stands: the view is scrolled a line at a time, and each frame must fit
// the terminal.
func scrolled(t *testing.T, m *Model, width, height int) []string {
	t.Helper()
	send(m, press("g"))
	var lines []string
	seen := map[string]bool{}
	for range 200 {
		checkFits(t, m, width, height)
		f := plain(m)
		for _, l := range strings.Split(f, "\n") {
			if strings.HasSuffix(l, "(j/k pgup/pgdn g/G)") {
				// Where the scrolling stands, not a line of the view.
				continue
			}
			if l = strings.TrimRight(l, " "); !seen[l] {
				seen[l] = true
				lines = append(lines, l)
			}
		}
		if !strings.Contains(f, "more below") {
			return lines
		}
		send(m, press("j"))
	}
	t.Fatalf("%dx%d: the node view never reached its end", width, height)
	return nil
}

// lineWith is the first of lines holding every one of wants, and its
// place.
func lineWith(t *testing.T, lines []string, wants ...string) (int, string) {
	t.Helper()
	for i, l := range lines {
		if !slices.ContainsFunc(wants, func(w string) bool { return !strings.Contains(l, w) }) {
			return i, l
		}
	}
	t.Fatalf("no line holds all of %q:\n%s", wants, strings.Join(lines, "\n"))
	return 0, ""
}

// TestNodeViewShowsEachGPU: under each GPU's row the node view lists
// every fault the GPU has, worst first, with its cause, XID, remedy, count
// and age, and what holds its clocks down; at its end it says per GPU
// which board it is and its clocks, with every reason in words. At 80
// columns the model and UUID are shortened, on a wide terminal they are
// whole, with the PCI bus id and serial.
func TestNodeViewShowsEachGPU(t *testing.T) {
	tests := []struct {
		name          string
		width, height int
		model         string
		uuid          func(string) string
		wide          bool
	}{
		{"80x24", 80, 24, "H100 80GB HBM3", func(u string) string { return u[:len("GPU-")+8] + "…" }, false},
		{"200x60", 200, 60, "NVIDIA H100 80GB HBM3", func(u string) string { return u }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			openThrottled(t, m, tt.width, tt.height)
			lines := scrolled(t, m, tt.width, tt.height)
			all := strings.Join(lines, "\n")

			// Under gpu1's row its faults, worst first, then the heat
			// that slows it; under gpu2's the power brake.
			row1, _ := lineWith(t, lines, "1    U ")
			xid48, _ := lineWith(t, lines, "UNHEALTHY", "XID 48", "double-bit ECC", "→", "3× over 20m", "[escalated]")
			xid79, _ := lineWith(t, lines, "UNHEALTHY", "XID 79", "GPU has fallen", "→", "5m ago")
			thermal, _ := lineWith(t, lines, "DEGRADED", "thermal", "temperature at", "→", "7× over 2m")
			heat, _ := lineWith(t, lines, "clocks: HW thermal slowdown for 2m10s, power cap")
			row2, _ := lineWith(t, lines, "2    H ")
			brake, _ := lineWith(t, lines, "clocks: power brake for 45s")
			row3, _ := lineWith(t, lines, "3    H ")
			if got := []int{row1, xid48, xid79, thermal, heat, row2, brake, row3}; !slices.IsSorted(got) {
				t.Fatalf("gpu1's row, its faults, its clocks, gpu2's row, its clocks, gpu3's row at lines %v:\n%s", got, all)
			}
			if tt.wide {
				lineWith(t, lines, "XID 48", "double-bit ECC error → drain, reset GPU [escalated]  3× over 20m")
				lineWith(t, lines, "XID 79", "GPU has fallen off the bus → drain, reboot node  5m ago")
				lineWith(t, lines, "thermal", "temperature at or past the GPU's slowdown threshold → check cooling  7× over 2m")
			}

			// At the end, each GPU in order: its name, model, UUID and
			// clocks, and every reason, the idle one too.
			details, _ := lineWith(t, lines, "GPU DETAILS")
			// The reasons follow the clocks on their line where they fit,
			// else on the next.
			clocks := []string{"SM  345 / mem 2619 MHz", "SM 1125 / mem 2619 MHz", "SM  810 / mem 2619 MHz", "SM 1980 / mem 2619 MHz"}
			reasons := []string{"clocks: idle", "clocks: HW thermal slowdown for 2m10s, power cap", "clocks: power brake for 45s", ""}
			last := details
			for i, u := range throttledUUIDs {
				wants := []string{fmt.Sprintf("gpu%d  %s  %s", i, tt.model, tt.uuid(u)), clocks[i]}
				if tt.wide {
					wants = append(wants, fmt.Sprintf("0000:%02x:00.0", 0x1b+i), fmt.Sprintf("165492200654%d", i))
				}
				at, l := lineWith(t, lines, wants...)
				if at <= last {
					t.Fatalf("gpu%d's details at line %d, after line %d:\n%s", i, at, last, all)
				}
				last = at
				next := ""
				if at+1 < len(lines) {
					next = lines[at+1]
				}
				switch {
				case reasons[i] == "":
					if strings.Contains(l+next, "clocks:") {
						t.Fatalf("gpu%d runs at full clocks: %q, %q", i, l, next)
					}
				case strings.HasSuffix(l, "  "+reasons[i]):
				case tt.wide:
					t.Fatalf("at %d columns gpu%d's reasons are not on its line: %q", tt.width, i, l)
				case strings.TrimSpace(next) == reasons[i]:
					last = at + 1
				default:
					t.Fatalf("gpu%d's reasons, %q, are neither on its line nor under it: %q, %q", i, reasons[i], l, next)
				}
			}
			if !tt.wide && (strings.Contains(all, throttledUUIDs[1]) || strings.Contains(all, "NVIDIA H100")) {
				t.Fatalf("at %d columns the UUIDs and models are whole:\n%s", tt.width, all)
			}
			// A HW slowdown that the heat or the brake explains is not
			// named again.
			if strings.Contains(all, "HW slowdown") {
				t.Fatalf("HW slowdown named beside the heat or the brake:\n%s", all)
			}
		})
	}
}

// TestGPUDetailsKeepRoomForReasonsOnlyWhenShown: the room kept at the
// line's end for the clocks' reasons is not taken from the UUIDs where no
// GPU has a reason to show, as at full clocks under load.
func TestGPUDetailsKeepRoomForReasonsOnlyWhenShown(t *testing.T) {
	tests := []struct {
		name    string
		reasons uint64
		wantCut bool
	}{
		{"no-reasons", 0, false},
		{"reasons", clocksSwPowerCap, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := throttledNode()
			for _, g := range n.GetGpus() {
				g.Metrics.ClockEventReasons = tt.reasons
			}
			lines := gpuDetails(NewTheme(true, false), n, true, 100)
			all := strings.Join(lines, "\n")
			if cut := !strings.Contains(all, throttledUUIDs[0]); cut != tt.wantCut {
				t.Fatalf("at 100 columns the UUIDs are cut: %v, want %v:\n%s", cut, tt.wantCut, all)
			}
		})
	}
}

// TestNodeViewGPUSectionFollowsReachability: an unreachable node's clocks
// are not current, and a lost GPU says so; their faults still show.
func TestNodeViewGPUSectionFollowsReachability(t *testing.T) {
	m := newTestModel(t, Options{})
	openThrottled(t, m, 200, 60)
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 42, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: &controlplanev1.HeartbeatBatch{
		Heartbeats: []*controlplanev1.NodeHeartbeat{{NodeId: "gpu-t01", Reachability: fleetv1.Reachability_REACHABILITY_OFFLINE, LastHeartbeatAt: timestamppb.New(now.Add(-2 * time.Minute))}},
	}}})
	f := plain(m)
	if strings.Contains(f, "MHz") || strings.Contains(f, "clocks:") {
		t.Fatalf("an OFFLINE node's clocks are shown:\n%s", f)
	}
	mustContain(t, f, "clocks -", "XID 48", "double-bit ECC error")

	n := throttledNode()
	n.Gpus[3].Lost = true
	send(m, nodeDetailMsg{id: "gpu-t01", resp: &controlplanev1.GetNodeResponse{Node: n}})
	_, l := lineWith(t, strings.Split(plain(m), "\n"), "gpu3 ", throttledUUIDs[3])
	mustContain(t, l, "lost")
	if strings.Contains(l, "MHz") {
		t.Fatalf("a lost GPU's clocks: %q", l)
	}
}

// TestNodeViewHighlightsThrottling: heat and the power brake stand out;
// an idle GPU's reason recedes.
func TestNodeViewHighlightsThrottling(t *testing.T) {
	th := NewTheme(true, true)
	m := newTestModel(t, Options{Theme: th})
	openThrottled(t, m, 200, 60)
	f := m.Frame()
	for _, want := range []string{th.Bad.Render("HW thermal slowdown for 2m10s"), th.Bad.Render("power brake for 45s"), th.Muted.Render("idle")} {
		if !strings.Contains(f, want) {
			t.Fatalf("frame lacks %q:\n%s", want, f)
		}
	}
}

func TestClockEvents(t *testing.T) {
	tests := []struct {
		name string
		in   *fleetv1.GpuMetrics
		want []string
	}{
		{"none", &fleetv1.GpuMetrics{}, nil},
		{"idle", &fleetv1.GpuMetrics{ClockEventReasons: 0x1}, []string{"idle"}},
		{"every-bit", &fleetv1.GpuMetrics{ClockEventReasons: 0x7ff}, []string{
			"HW thermal slowdown", "power brake", "SW thermal slowdown", "power cap", "board limit", "reliability limit",
			"sync boost", "application clocks", "display clock", "idle"}},
		{"hw-slowdown-alone", &fleetv1.GpuMetrics{ClockEventReasons: 0x8, HwSlowdownSeconds: 90}, []string{"HW slowdown for 1m30s"}},
		{"thermal-explains-slowdown", &fleetv1.GpuMetrics{ClockEventReasons: 0x48, HwSlowdownSeconds: 5}, []string{"HW thermal slowdown for 5s"}},
		{"brake-explains-slowdown", &fleetv1.GpuMetrics{ClockEventReasons: 0x88, PowerBrakeSeconds: 600}, []string{"power brake for 10m"}},
		{"unknown-bits", &fleetv1.GpuMetrics{ClockEventReasons: 0x4 | 0x1000}, []string{"power cap", "reasons 0x1000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range clockEvents(tt.in) {
				got = append(got, c.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
