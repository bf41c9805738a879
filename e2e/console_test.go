package e2e

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/tui"
)

// console runs the real console against the fleet's control plane at the
// given size. waitScreen waits until what the console has drawn so far
// (escape codes stripped) meets cond.
func (f *fleet) console(width, height int) (tm *teatest.TestModel, waitScreen func(what string, cond func(screen string) bool)) {
	f.t.Helper()
	m := tui.New(tui.Options{Client: f.ops, Server: f.target.Addr, Theme: tui.NewTheme(true, false)})
	f.t.Cleanup(m.Close)
	tm = teatest.NewTestModel(f.t, m, teatest.WithInitialTermSize(width, height))
	out := tm.Output()
	var screen bytes.Buffer
	return tm, func(what string, cond func(string) bool) {
		f.t.Helper()
		teatest.WaitFor(f.t, out, func(b []byte) bool {
			screen.Write(b)
			return cond(ansi.Strip(screen.String()))
		}, teatest.WithDuration(20*time.Second), teatest.WithCheckInterval(50*time.Millisecond))
	}
}

// TestConsoleCordonsWithKeys runs the real console, streaming from a real
// control plane with simulated agents, and cordons a node with keys.
func TestConsoleCordonsWithKeys(t *testing.T) {
	f := startControlPlane(t)
	f.addNode("node-x")
	f.addNode("node-y", "xid=79@gpu1+1s")
	// The console draws only what changes: open it once both nodes are
	// there, so its first screen names them both whole.
	f.waitFor("both nodes registered", func() bool { return f.node("node-x") != nil && f.node("node-y") != nil })
	tm, waitScreen := f.console(120, 30)
	// node-y's XID 79 cordons it on its own; node-x stays ACTIVE.
	waitScreen("both nodes, node-y cordoned by policy", func(s string) bool {
		return strings.Contains(s, "node-x") && strings.Contains(s, "node-y") && strings.Contains(s, "UNHEALTHY")
	})
	// The cursor follows its node as nodes arrive; g goes to the first row,
	// node-x by id.
	tm.Send(tea.KeyPressMsg{Code: 'g', Text: "g"})
	tm.Send(tea.KeyPressMsg{Code: 'c', Text: "c"})
	f.waitFor("node-x CORDONED by the console", func() bool {
		d := f.node("node-x")
		return d.GetNode().GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED &&
			d.GetNode().GetLifecycleReason() == "cordoned from the console"
	})
	f.waitFor("the agent acknowledged the cordon", func() bool {
		cmds := f.node("node-x").GetCommands()
		return len(cmds) > 0 && cmds[0].GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
	})
	// The console learns it from the stream, like any other change: a
	// CORDONED in its row, besides node-y's and the status line.
	waitScreen("node-x CORDONED on screen", func(s string) bool { return strings.Count(s, "CORDONED") >= 3 })
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	final := tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).(*tui.Model)
	frame := ansi.Strip(final.Frame())
	var rowX string
	for _, l := range strings.Split(frame, "\n") {
		if strings.Contains(l, "node-x") && strings.Contains(l, "ONLINE") {
			rowX = l
		}
	}
	if !strings.Contains(rowX, "CORDONED") || !strings.Contains(rowX, "HEALTHY") {
		t.Fatalf("node-x row %q in:\n%s", rowX, frame)
	}
	st, err := f.ops.GetFleetStatus(context.Background(), &controlplanev1.GetFleetStatusRequest{})
	if err != nil || st.GetSummary().GetCordoned() != 2 {
		t.Fatalf("status %v %v", st.GetSummary(), err)
	}
}
