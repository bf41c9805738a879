package tui

import (
	"context"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"

	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/fleettest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// openNode opens the node view on gpu-a02 with the fixture's details.
func openNode(m *Model, edit ...func(*controlplanev1.GetNodeResponse)) {
	d := nodeDetail()
	for _, fn := range edit {
		fn(d)
	}
	send(m, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: d})
}

// TestRemedyDialogs: from the node view, r and b open the dialogs of a GPU
// reset and a reboot, which end in a confirmation saying what will happen.
func TestRemedyDialogs(t *testing.T) {
	tests := []struct {
		name string
		keys []tea.Msg
		want []string
	}{
		// The fixture's GPU 2 is the worst, and none asks for a reset.
		{"reset-starts-at-the-worst-gpu", keysOf("r"), []string{"Reset a GPU of gpu-a02", "GPU 2"}},
		{"reset-confirms", keysOf("r", "enter"), []string{
			"Reset GPU 2 of gpu-a02 through nvidia-smi? Its agent refuses while compute processes run on it; a reset that succeeds clears the faults a reset remedies.",
			"y confirm"}},
		{"reset-forced", append(append(keysOf("r"), retype(1, "5")...), keysOf("tab", "tab", "space", "enter")...), []string{
			"Reset GPU 5 of gpu-a02 through nvidia-smi? Compute processes on it get TERM, then KILL, first;"}},
		{"reset-bad-gpu", append(append(keysOf("r"), retype(1, "x")...), press("enter")), []string{`GPU "x" is not a GPU index such as 0 or 7`}},
		{"reset-cancelled", keysOf("r", "esc"), []string{"reset cancelled"}},
		{"reboot-confirms", keysOf("b", "enter"), []string{
			"Reboot gpu-a02? Its agent reboots the node; the reboot is done when the node registers from a new boot."}},
		{"reboot-forced-says-what-dies", keysOf("b", "tab", "space", "enter"), []string{
			"It is CORDONED, not drained: its GPU work dies with it."}},
		{"reboot-cancelled", keysOf("b", "esc"), []string{"reboot cancelled"}},
		{"palette-reset", append(append(keysOf(":"), typed("reset-gpu")...), press("enter")), []string{"Reset a GPU of gpu-a02"}},
		{"palette-reboot", append(append(keysOf(":"), typed("reboot")...), press("enter")), []string{"Reboot gpu-a02", "Force reboot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			openNode(m)
			send(m, tt.keys...)
			for _, w := range tt.want {
				if f := flat(m); !strings.Contains(f, w) {
					t.Fatalf("screen lacks %q:\n%s", w, plain(m))
				}
			}
		})
	}
}

// TestResetStartsAtTheGPUThatNeedsIt: the reset form starts at the GPU
// whose remedy is a reset.
func TestResetStartsAtTheGPUThatNeedsIt(t *testing.T) {
	m := newTestModel(t, Options{})
	openNode(m, func(d *controlplanev1.GetNodeResponse) {
		d.Node.Gpus[5].Health = fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
		d.Node.Gpus[5].Remedy = fleetv1.Remedy_REMEDY_RESET_GPU
	})
	send(m, press("r"))
	mustContain(t, flat(m), "GPU 5")
}

// TestRemediesOutsideTheNodeView: the : prompt's remedies need a node on
// screen, and a node whose agent forbids remedies opens no dialog.
func TestRemediesOutsideTheNodeView(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press(":"))
	send(m, typed("reboot")...)
	send(m, press("enter"))
	if m.overlay != nil {
		t.Fatalf(":reboot in the fleet view opened %T", m.overlay)
	}
	mustContain(t, m.Frame(), "acts on the node on screen: open one first")
	// In the fleet view, r and b do nothing.
	send(m, press("r"), press("b"))
	if m.overlay != nil {
		t.Fatalf("r or b in the fleet view opened %T", m.overlay)
	}

	openNode(m, func(d *controlplanev1.GetNodeResponse) { d.Node.RemediesDisabled = true })
	mustContain(t, m.Frame(), "remedies: disabled by the agent (--no-remedies)")
	for _, k := range []string{"r", "b"} {
		send(m, statusLineMsg{}, press(k))
		if m.overlay != nil {
			t.Fatalf("%s opened %T on a node whose agent forbids remedies", k, m.overlay)
		}
		mustContain(t, m.Frame(), "gpu-a02's agent forbids remedies (it was started with --no-remedies)")
	}
}

// TestRemediesReachTheControlPlane drives the console against a real
// control plane: a confirmed reset and reboot queue commands with what the
// dialogs said, and the control plane's refusals show in the status line.
func TestRemediesReachTheControlPlane(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "gpu-a01", Gpus: fleettest.GPUs(2), BootId: "boot-1"}); err != nil {
		t.Fatal(err)
	}
	m := New(Options{Client: cp.Ops, NoStream: true, Theme: NewTheme(true, false), Server: cp.Addr})
	send(m, tea.WindowSizeMsg{Width: 120, Height: 30}, connectedMsg{})
	m.Apply(snapshot(1, fixtureFleet()[:1], nil))
	send(m, press("enter"))
	send(m, nodeOf(m).fetch()())
	mustContain(t, m.Frame(), "gpu-a01")
	// act answers the confirmation and shows the action's outcome.
	act := func(keys ...tea.Msg) string {
		t.Helper()
		send(m, keys...)
		cmd := send(m, press("y"))
		if cmd == nil {
			t.Fatalf("y ran nothing:\n%s", plain(m))
		}
		send(m, cmd())
		return plain(m)
	}
	rows := []struct {
		name string
		keys []tea.Msg
		want string
	}{
		{"reset-forced", append(append(keysOf("r"), retype(1, "1")...), keysOf("tab", "tab", "space", "enter")...),
			"reset of GPU 1 queued on gpu-a01 as cmd-"},
		{"reset-no-such-gpu", append(append(keysOf("r"), retype(1, "9")...), press("enter")),
			`reset failed: gpu-a01: gpu_index: node "gpu-a01" has no GPU 9`},
		{"reboot-not-drained", keysOf("b", "enter"),
			"reboot failed: gpu-a01 is ACTIVE; it cannot be rebooted until it is drained (drain it first, or force the reboot)"},
		{"reboot-forced", keysOf("b", "tab", "space", "enter"), "reboot queued on gpu-a01 as cmd-"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			if f := act(row.keys...); !strings.Contains(f, row.want) {
				t.Fatalf("screen lacks %q:\n%s", row.want, f)
			}
		})
	}
	node, err := cp.Ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "gpu-a01"})
	if err != nil {
		t.Fatal(err)
	}
	var reset, reboot *fleetv1.Command
	for _, c := range node.GetCommands() {
		switch c.GetType() {
		case fleetv1.CommandType_COMMAND_TYPE_RESET_GPU:
			reset = c
		case fleetv1.CommandType_COMMAND_TYPE_REBOOT:
			reboot = c
		}
	}
	if reset.GetGpuIndex() != 1 || !reset.GetForce() || reset.GetReason() != "GPU 1 reset from the console" {
		t.Fatalf("reset %v", reset)
	}
	if !reboot.GetForce() || reboot.GetBootId() != "boot-1" || reboot.GetReason() != "reboot from the console" {
		t.Fatalf("reboot %v", reboot)
	}
}
