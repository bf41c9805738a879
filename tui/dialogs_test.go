package tui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/internal/cptest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestEnterSubmitsFormFromAnyField: enter in the first field of the
// provision form goes to the confirmation, with the defaults.
func TestEnterSubmitsFormFromAnyField(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("p"))
	if _, ok := m.overlay.(*provisionDialog); !ok {
		t.Fatalf("p opened %T", m.overlay)
	}
	send(m, press("enter"))
	if _, ok := m.overlay.(*confirm); !ok {
		t.Fatalf("enter in the first field left %T", m.overlay)
	}
	mustContain(t, m.Frame(), "Provision 2 nodes with 8 GPUs each through local?")
	send(m, press("n"))
	if m.overlay != nil {
		t.Fatal("n did not cancel")
	}
	// tab still moves between fields, and a bad value keeps the form open.
	send(m, press("p"), press("tab"), press("ctrl+a"))
	send(m, typed("zero")...)
	send(m, press("enter"))
	mustContain(t, m.Frame(), "is not a whole number from 1 to 1000")
}

// TestDialogsFitTheTerminal: a dialog is never wider than the terminal:
// a bulk action's title naming long ids, and the keys that close it,
// wrap inside the box, and the box keeps its right edge, at 100 columns
// as on a narrow terminal.
func TestDialogsFitTheTerminal(t *testing.T) {
	var ids []string
	for i := range 8 {
		id := fmt.Sprintf("local-%08x", 0x08312a13+i)
		ids = append(ids, id)
	}
	tests := []struct {
		name  string
		width int
		line  string
	}{
		{"terminate-eight-at-100", 100, "terminate " + strings.Join(ids, " ")},
		{"drain-eight-at-100", 100, "drain " + strings.Join(ids, " ")},
		{"terminate-one-at-56", 56, "terminate " + ids[0]},
		{"provision-at-50", 50, "provision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			for _, id := range ids {
				m.Apply(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{
					NodeUpsert: fixtureNode(id, 8, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, fleetv1.Reachability_REACHABILITY_ONLINE, time.Second),
				}})
			}
			send(m, tea.WindowSizeMsg{Width: tt.width, Height: 40})
			command(m, tt.line)
			if m.overlay == nil {
				t.Fatalf(":%s opened no dialog:\n%s", tt.line, plain(m))
			}
			box := strings.Split(ansi.Strip(m.overlay.view(tt.width)), "\n")
			for _, l := range box {
				if w := ansi.StringWidth(l); w > tt.width {
					t.Fatalf("a dialog line is %d wide at %d columns:\n%s", w, tt.width, strings.Join(box, "\n"))
				}
			}
			if !strings.HasSuffix(box[0], "╮") || !strings.HasSuffix(box[len(box)-1], "╯") {
				t.Fatalf("the box lost its right edge:\n%s", strings.Join(box, "\n"))
			}
			mustContain(t, flat(m), "esc cancel")
		})
	}
}

// retype empties a field of n characters and types s in it.
func retype(n int, s string) []tea.Msg {
	var out []tea.Msg
	for range n {
		out = append(out, press("backspace"))
	}
	return append(out, typed(s)...)
}

// flat is the screen's words in order, without the boxes around dialogs,
// so that text reads the same however a dialog wrapped it.
func flat(m *Model) string {
	text := plain(m)
	if m.overlay != nil {
		// The view flanks each line of a dialog drawn over it; the
		// dialog's own text reads whole after the screen.
		text += "\n" + ansi.Strip(m.overlay.view(m.width))
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(text, "│", " ")), " ")
}

// TestDialogsUseTheServersLimits: the dialogs start from, and check
// against, the bounds and defaults GetFleetStatus gave, whatever they are.
func TestDialogsUseTheServersLimits(t *testing.T) {
	status := fleetStatusMsg{providers: []string{"local"}, limits: &controlplanev1.OperatorLimits{
		MaxDrainDeadline:             durationpb.New(2 * time.Hour),
		DefaultDrainDeadline:         durationpb.New(45 * time.Minute),
		DefaultTerminateDrainTimeout: durationpb.New(3 * time.Minute),
		MaxProvisionCount:            5,
		MaxGpusPerNode:               16,
	}}
	tests := []struct {
		name string
		keys []tea.Msg
		want string
	}{
		{"drain-starts-at-default", keysOf("d"), "Deadline 45m"},
		{"drain-past-bound", append(append(keysOf("d", "tab"), retype(3, "3h")...), press("enter")),
			`deadline "3h" is not a duration between 1s and 2h, such as 30m or 2h`},
		{"drain-within-bound", append(append(keysOf("d", "tab"), retype(3, "90m")...), press("enter")), "deadline 1h30m0s"},
		{"terminate-starts-at-default", keysOf("t"), "Drain timeout 3m"},
		{"terminate-names-default", keysOf("t", "enter"), "then KILL, after 3m), then stopped"},
		{"terminate-past-bound", append(append(keysOf("t", "tab"), retype(2, "3h")...), press("enter")),
			`drain timeout "3h" is not a duration between 1s and 2h, such as 10m or 1h`},
		{"provision-past-bound", append(append(keysOf("p", "tab"), retype(1, "6")...), press("enter")),
			`count "6" is not a whole number from 1 to 5`},
		{"provision-placeholder", keysOf("p", "tab", "backspace"), "1–5"},
		{"provision-gpus-past-bound", append(append(keysOf("p", "tab", "tab"), retype(1, "17")...), press("enter")),
			`GPUs per node "17" is not a whole number from 0 to 16`},
		{"provision-gpus-within-bound", append(append(keysOf("p", "tab", "tab"), retype(1, "16")...), press("enter")),
			"Provision 2 nodes with 16 GPUs each through local?"},
		{"provision-gpus-placeholder", keysOf("p", "tab", "tab", "backspace"), "0–16 (0: provider's default)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			send(m, status)
			send(m, tt.keys...)
			if f := flat(m); !strings.Contains(f, tt.want) {
				t.Fatalf("screen lacks %q:\n%s", tt.want, plain(m))
			}
		})
	}
}

// TestServerJudgesBeforeItsLimitsAreKnown: until GetFleetStatus has
// answered, the console sends what the operator typed and shows what the
// control plane made of it: its own default for a deadline left empty, its
// refusal of one too far away or of too many GPUs per node. Once it has
// answered, the dialogs start from its defaults and check its bounds.
func TestServerJudgesBeforeItsLimitsAreKnown(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "gpu-a01", Gpus: []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-a01"}}}); err != nil {
		t.Fatal(err)
	}
	m := New(Options{Client: cp.Ops, NoStream: true, Theme: NewTheme(true, false), Server: cp.Addr})
	send(m, tea.WindowSizeMsg{Width: 100, Height: 30}, connectedMsg{})
	m.Apply(snapshot(1, fixtureFleet()[:1], nil))
	// act answers the confirmation and shows the action's outcome.
	act := func() string {
		t.Helper()
		cmd := send(m, press("y"))
		if cmd == nil {
			t.Fatalf("y ran nothing:\n%s", plain(m))
		}
		send(m, cmd())
		return plain(m)
	}

	send(m, press("t"))
	mustContain(t, m.Frame(), "Drain timeout     the control plane's default")
	send(m, press("enter"))
	mustContain(t, m.Frame(), "after the control plane's drain timeout")
	send(m, press("n"), press("d"))
	mustContain(t, m.Frame(), "Deadline          the control plane's default")
	send(m, press("tab"))
	// Days are a unit, as on the command line.
	send(m, typed("9d")...)
	send(m, press("enter"))
	mustContain(t, m.Frame(), "deadline 216h0m0s")
	mustContain(t, act(), "drain failed: gpu-a01: deadline:", "away")

	send(m, press("d"), press("enter"))
	if f := flat(m); !strings.Contains(f, "No new work lands; the control plane's default deadline;") {
		t.Fatalf("confirmation of a drain without a deadline:\n%s", plain(m))
	}
	if f := act(); !strings.Contains(f, "gpu-a01 DRAINING") || strings.Contains(f, "deadline in") {
		t.Fatalf("drain without a deadline:\n%s", f)
	}
	node, err := cp.Ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "gpu-a01"})
	if err != nil {
		t.Fatal(err)
	}
	var deadline time.Time
	for _, c := range node.GetCommands() {
		if c.GetType() == fleetv1.CommandType_COMMAND_TYPE_DRAIN {
			deadline = c.GetDrain().GetDeadline().AsTime()
		}
	}
	if left := time.Until(deadline); left < 50*time.Minute || left > 70*time.Minute {
		t.Fatalf("the drain ends in %s, not the control plane's default hour", left)
	}

	// Too many GPUs per node: the control plane refuses them.
	provision := append(append(append(keysOf("p"), typed("local")...), keysOf("tab", "tab")...), retype(1, "65")...)
	send(m, provision...)
	send(m, press("enter"))
	mustContain(t, flat(m), "Provision 2 nodes with 65 GPUs each through local?")
	mustContain(t, act(), "provision failed: gpus_per_node: 65 is above 64")

	// Connected, the console asks for the limits, and its dialogs start
	// from them and check against them.
	load := send(m, connectedMsg{resumed: true})
	if load == nil {
		t.Fatal("connecting did not ask for the fleet status")
	}
	send(m, load())
	send(m, press("d"))
	if f := flat(m); !strings.Contains(f, "Deadline 1h") {
		t.Fatalf("drain form after the status arrived:\n%s", plain(m))
	}
	send(m, press("esc"))
	send(m, provision...)
	send(m, press("enter"))
	if _, ok := m.overlay.(*provisionDialog); !ok {
		t.Fatalf("65 GPUs per node left %T:\n%s", m.overlay, plain(m))
	}
	mustContain(t, flat(m), `GPUs per node "65" is not a whole number from 0 to 64`)
}

// TestProvisionFormStartsWithAProvider: the provision form starts with
// the provider the control plane offers, and before it has said which it
// offers, asks for one rather than sending none.
func TestProvisionFormStartsWithAProvider(t *testing.T) {
	tests := []struct {
		name      string
		providers []string
		want      string
	}{
		{"only-one", []string{"aws"}, "Provider aws"},
		{"local-among-them", []string{"aws", "local"}, "Provider local"},
		{"first-otherwise", []string{"gcp", "aws"}, "Provider gcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			send(m, fleetStatusMsg{providers: tt.providers, limits: fixtureStatus().limits})
			send(m, press("p"))
			if f := flat(m); !strings.Contains(f, tt.want) {
				t.Fatalf("screen lacks %q:\n%s", tt.want, plain(m))
			}
		})
	}

	t.Run("not-yet-listed", func(t *testing.T) {
		m := New(Options{NoStream: true, Theme: NewTheme(true, false), Now: clock})
		send(m, tea.WindowSizeMsg{Width: 100, Height: 30}, connectedMsg{})
		m.Apply(snapshot(40, fixtureFleet(), fixtureEvents()))
		send(m, press("p"))
		mustContain(t, flat(m), "Provider required", "not yet listed by the control plane")
		send(m, press("enter"))
		if _, ok := m.overlay.(*provisionDialog); !ok {
			t.Fatalf("enter without a provider left %T:\n%s", m.overlay, plain(m))
		}
		mustContain(t, flat(m), "the provider is required")
		send(m, typed("local")...)
		send(m, press("enter"))
		mustContain(t, flat(m), "Provision 2 nodes with 8 GPUs each through local?")
	})
}

// TestTerminateDialogSends: the terminate dialog sends the reason, drain
// timeout and force it was given, as `navarch terminate` does; a forced
// termination sends no timeout, having no drain.
func TestTerminateDialogSends(t *testing.T) {
	tests := []struct {
		name     string
		keys     []tea.Msg
		question string
		want     *controlplanev1.TerminateNodeRequest
	}{
		{"default-timeout", keysOf("enter"), "Terminate gpu-a01? It is drained first (jobs get TERM, then KILL, after 10m), then stopped.",
			&controlplanev1.TerminateNodeRequest{NodeId: "gpu-a01", Reason: "termination from the console", DrainTimeout: durationpb.New(10 * time.Minute)}},
		{"timeout-in-days", slices.Concat(keysOf("tab"), retype(3, "2d"), keysOf("enter")), "after 48h), then stopped",
			&controlplanev1.TerminateNodeRequest{NodeId: "gpu-a01", Reason: "termination from the console", DrainTimeout: durationpb.New(48 * time.Hour)}},
		{"emptied-timeout", slices.Concat(keysOf("tab"), retype(3, ""), keysOf("enter")), "after the control plane's drain timeout",
			&controlplanev1.TerminateNodeRequest{NodeId: "gpu-a01", Reason: "termination from the console"}},
		{"force", keysOf("tab", "tab", "space", "enter"), "Terminate gpu-a01 now? It is not drained: its jobs are killed as it stops.",
			&controlplanev1.TerminateNodeRequest{NodeId: "gpu-a01", Reason: "termination from the console", Force: true}},
		{"force-leaves-timeout-unread", slices.Concat(keysOf("tab"), retype(3, "soon"), keysOf("tab", "y", "enter")), "Terminate gpu-a01 now?",
			&controlplanev1.TerminateNodeRequest{NodeId: "gpu-a01", Reason: "termination from the console", Force: true}},
		{"reason", slices.Concat(typed("rack swap"), keysOf("tab"), retype(3, "30m"), keysOf("enter")), "after 30m), then stopped",
			&controlplanev1.TerminateNodeRequest{NodeId: "gpu-a01", Reason: "rack swap", DrainTimeout: durationpb.New(30 * time.Minute)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &actionClient{}
			m := newTestModel(t, Options{Client: c})
			send(m, press("t"))
			send(m, tt.keys...)
			if _, ok := m.overlay.(*confirm); !ok {
				t.Fatalf("the form left %T:\n%s", m.overlay, plain(m))
			}
			mustContain(t, flat(m), tt.question)
			finish(t, m, send(m, press("y")))
			mustContain(t, m.Frame(), "gpu-a01 TERMINATING")
			if len(c.terminated) != 1 || !proto.Equal(c.terminated[0], tt.want) {
				t.Fatalf("sent %v, want %v", c.terminated, tt.want)
			}
		})
	}

	t.Run("marked-rows", func(t *testing.T) {
		c := &actionClient{}
		m := newTestModel(t, Options{Client: c})
		send(m, press("space"), press("space"), press("t"))
		mustContain(t, flat(m), "Terminate 2 marked nodes (gpu-a01, gpu-a02)", "Drain timeout 10m", "Force (no drain) [ ] no")
		send(m, slices.Concat(keysOf("tab"), retype(3, "20m"), keysOf("enter"))...)
		mustContain(t, flat(m), "Each is drained first (jobs get TERM, then KILL, after 20m), then stopped.")
		finish(t, m, send(m, press("y")))
		mustContain(t, m.Frame(), "terminating 2 nodes")
		if got := c.calls(); got != "terminate gpu-a01, terminate gpu-a02" {
			t.Fatalf("calls %q", got)
		}
		for _, req := range c.terminated {
			if req.GetDrainTimeout().AsDuration() != 20*time.Minute || req.GetForce() {
				t.Fatalf("sent %v", req)
			}
		}
	})
}

// TestTerminateDialogRefusesBadTimeouts: a drain timeout that is no
// duration, or one outside the control plane's bounds once they are known,
// keeps the form open on the field with a message, and sends nothing.
func TestTerminateDialogRefusesBadTimeouts(t *testing.T) {
	bounded := `is not a duration between 1s and 168h, such as 10m or 1h`
	tests := []struct {
		name    string
		limits  bool
		timeout string
		want    string
	}{
		{"not-a-duration", true, "soon", `drain timeout "soon" ` + bounded},
		{"negative", true, "-5m", `drain timeout "-5m" ` + bounded},
		{"zero", true, "0s", `drain timeout "0s" ` + bounded},
		{"under-the-least", true, "500ms", `drain timeout "500ms" ` + bounded},
		{"past-the-most", true, "8d", `drain timeout "8d" ` + bounded},
		{"no-limits-yet", false, "soon", `drain timeout "soon" is not a positive duration, such as 10m or 1h`},
		{"no-limits-yet-negative", false, "-1h", `drain timeout "-1h" is not a positive duration, such as 10m or 1h`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &actionClient{}
			m := New(Options{Client: c, NoStream: true, Theme: NewTheme(true, false), Now: clock})
			send(m, tea.WindowSizeMsg{Width: 100, Height: 30}, connectedMsg{})
			if tt.limits {
				send(m, fixtureStatus())
			}
			m.Apply(snapshot(40, fixtureFleet(), fixtureEvents()))
			send(m, press("t"), press("tab"))
			send(m, retype(3, tt.timeout)...)
			if cmd := send(m, press("enter")); cmd != nil {
				t.Fatal("a refused timeout started something")
			}
			td, ok := m.overlay.(*terminateDialog)
			if !ok || td.focus != terminateTimeout {
				t.Fatalf("a refused timeout left %T:\n%s", m.overlay, plain(m))
			}
			mustContain(t, flat(m), tt.want)
			if got := c.calls(); got != "" {
				t.Fatalf("a refused timeout sent %s", got)
			}
		})
	}
}
