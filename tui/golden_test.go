package tui

import (
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest/v2"
)

// Golden screens at a fixed size with colour off. `go tool task golden`
// rewrites them after a deliberate change.
const goldenWidth, goldenHeight = 100, 30

// runGolden runs the real program with the fixture fleet, sends msgs, and
// compares the final screen with testdata/<test name>.golden.
func runGolden(t *testing.T, o Options, msgs ...tea.Msg) {
	t.Helper()
	runGoldenAt(t, goldenWidth, goldenHeight, o, msgs...)
}

// runGoldenAt is runGolden on a terminal of the given size.
func runGoldenAt(t *testing.T, width, height int, o Options, msgs ...tea.Msg) {
	t.Helper()
	o.NoStream = true
	o.Now = clock
	o.Theme = NewTheme(true, false)
	o.Server = "127.0.0.1:50051"
	m := New(o)
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(width, height))
	tm.Send(connectedMsg{})
	tm.Send(fixtureStatus())
	tm.Send(wire(snapshot(40, fixtureFleet(), fixtureEvents())))
	for _, msg := range msgs {
		tm.Send(msg)
	}
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	final := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(*Model)
	golden.RequireEqual(t, ansi.Strip(final.Frame()))
}

func TestGoldenFleetView(t *testing.T) {
	runGolden(t, Options{}, press("j"))
}

func TestGoldenNodeView(t *testing.T) {
	runGolden(t, Options{}, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: nodeDetail()})
}

func TestGoldenHelp(t *testing.T) {
	runGolden(t, Options{}, press("?"))
}

func TestGoldenDrainDialog(t *testing.T) {
	msgs := []tea.Msg{press("j"), press("j"), press("d")}
	msgs = append(msgs, typed("rack 12 power work")...)
	runGolden(t, Options{}, msgs...)
}

func TestGoldenResetDialog(t *testing.T) {
	runGolden(t, Options{}, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: nodeDetail()}, press("r"))
}

func TestGoldenReadOnly(t *testing.T) {
	runGolden(t, Options{ReadOnly: true}, press("c"))
}

func TestGoldenEventsView(t *testing.T) {
	runGolden(t, Options{}, press("2"))
}

// The smallest supported terminal, 80 × 24: every screen must still fit.
// The fleet is on a bad day: a node held back by the tripped breaker, and
// one OFFLINE.

func TestGoldenNarrowFleetView(t *testing.T) {
	runGoldenAt(t, 80, 24, Options{}, heldBack(), press("j"))
}

// The held-back nodes listed together (H), at 80 × 24.
func TestGoldenNarrowHeldBack(t *testing.T) {
	runGoldenAt(t, 80, 24, Options{}, heldBack(), press("H"))
}

// A wide terminal, 200 × 60: the WHY column says each cause and remedy in
// full, and the labels keep the rest.

func TestGoldenWideFleetView(t *testing.T) {
	runGoldenAt(t, 200, 60, Options{}, heldBack(), press("j"))
}

func TestGoldenNarrowHelp(t *testing.T) {
	runGoldenAt(t, 80, 24, Options{}, press("?"))
}

func TestGoldenNarrowEventsView(t *testing.T) {
	runGoldenAt(t, 80, 24, Options{}, press("2"))
}

func TestGoldenNarrowNodeView(t *testing.T) {
	runGoldenAt(t, 80, 24, Options{}, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: nodeDetail()})
}

func TestGoldenNarrowNodeHelp(t *testing.T) {
	runGoldenAt(t, 80, 24, Options{}, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: nodeDetail()}, press("?"))
}

// The pools: the list, one pool, a scale's confirmation, and the fleet
// with a POOL column once nodes are in pools.

func TestGoldenPoolsView(t *testing.T) {
	runGolden(t, Options{}, pooled(), press("3"), press("G"))
}

func TestGoldenPoolView(t *testing.T) {
	runGolden(t, Options{}, pooled(), press("3"), press("G"), press("enter"))
}

func TestGoldenScaleConfirm(t *testing.T) {
	runGolden(t, Options{}, pooled(), press("3"), press("G"), press("+"))
}

func TestGoldenReadOnlyPoolsView(t *testing.T) {
	runGolden(t, Options{ReadOnly: true}, pooled(), press("3"))
}

func TestGoldenFleetViewWithPools(t *testing.T) {
	runGolden(t, Options{}, pooled(), press("j"))
}

func TestGoldenPowerCycleDialog(t *testing.T) {
	runGolden(t, Options{}, press("G"), press("P"))
}

func TestGoldenNarrowPoolsView(t *testing.T) {
	runGoldenAt(t, 80, 24, Options{}, pooled(), press("3"))
}

func TestGoldenNarrowPoolView(t *testing.T) {
	runGoldenAt(t, 80, 24, Options{}, pooled(), press("3"), press("G"), press("enter"))
}

func TestGoldenNarrowPoolsHelp(t *testing.T) {
	runGoldenAt(t, 80, 24, Options{}, pooled(), press("3"), press("?"))
}

// TestGoldenOverlayDrainOverFleet: at 80×24 the drain dialog is drawn
// over the fleet table, which stays in sight above and around it.
func TestGoldenOverlayDrainOverFleet(t *testing.T) {
	msgs := []tea.Msg{press("j"), press("j"), press("d")}
	runGoldenAt(t, 80, 24, Options{}, append(msgs, typed("rack 12 power work")...)...)
}

// Three control planes on etcd, after a failover, at 80 × 24: the header
// names the leader, the standbys and the failover, wrapped like the
// totals.
func TestGoldenNarrowControlPlanes(t *testing.T) {
	st := fixtureStatus()
	st.controlPlanes = electedAt("cp-2:50051", []string{"cp-3:50051", "cp-4:50051"}, 5*time.Minute)
	runGoldenAt(t, 80, 24, Options{}, st)
}
