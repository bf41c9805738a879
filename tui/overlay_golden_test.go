package tui

import (
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest/v2"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// overlayGolden names an overlay's golden file testdata/overlay_*.golden
// rather than after the test.
type overlayGolden struct {
	testing.TB
	name string
}

func (g overlayGolden) Name() string { return "overlay_" + g.name }

// TestGoldenOverlayDrainOverFleet: at 80×24 the drain dialog is drawn
// over the fleet table, which stays in sight above and around it.
func TestGoldenOverlayDrainOverFleet(t *testing.T) {
	msgs := []tea.Msg{press("j"), press("j"), press("d")}
	msgs = append(msgs, typed("rack 12 power work")...)
	m := New(Options{NoStream: true, Now: clock, Theme: NewTheme(true, false), Server: "127.0.0.1:50051"})
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24))
	tm.Send(connectedMsg{})
	tm.Send(fixtureStatus())
	tm.Send(streamMsg{msgs: []*controlplanev1.WatchFleetResponse{snapshot(40, fixtureFleet(), fixtureEvents())}})
	for _, msg := range msgs {
		tm.Send(msg)
	}
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	final := tm.FinalModel(t, teatest.WithFinalTimeout(5*time.Second)).(*Model)
	golden.RequireEqual(overlayGolden{t, "drain_over_fleet_80x24"}, ansi.Strip(final.Frame()))
}
