package tui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// manyEvents is n health events, newest first, each on a node of its own
// (gpu-e00, gpu-e01, …) so that a frame shows which are on screen.
func manyEvents(n int) []*fleetv1.HealthEvent {
	evs := make([]*fleetv1.HealthEvent, n)
	for i := range evs {
		evs[i] = &fleetv1.HealthEvent{Id: fmt.Sprintf("ev-%d", 100+n-i), NodeId: fmt.Sprintf("gpu-e%02d", i),
			Kind: fleetv1.EventKind_EVENT_KIND_THERMAL, Time: timestamppb.New(now.Add(-time.Duration(i) * time.Minute)),
			Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED, Cause: "temperature at or past the GPU's slowdown threshold"}
	}
	return evs
}

// TestEventsWindowStaysFull: scrolled to the oldest event, the events
// view keeps its window full when the terminal grows or the list shrinks:
// no blank rows under the last event while others are hidden above, and
// the cursor stays on screen.
func TestEventsWindowStaysFull(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Model)
		shown  int    // events there are after the change, all of which fit
		cursor string // the node of the event under the cursor
	}{
		{"terminal-grows", func(m *Model) { send(m, tea.WindowSizeMsg{Width: 80, Height: 60}) }, 40, "gpu-e39"},
		{"list-shrinks", func(m *Model) { m.Apply(snapshot(60, fixtureFleet(), manyEvents(5))) }, 5, "gpu-e04"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			m.Apply(snapshot(50, fixtureFleet(), manyEvents(40)))
			send(m, tea.WindowSizeMsg{Width: 80, Height: 24}, press("2"), press("G"))
			mustContain(t, cursorLine(t, m), "gpu-e39")
			tt.change(m)
			f := plain(m)
			for i := range tt.shown {
				if id := fmt.Sprintf("gpu-e%02d", i); !strings.Contains(f, id) {
					t.Fatalf("%s is not on screen though all %d events fit:\n%s", id, tt.shown, f)
				}
			}
			mustContain(t, cursorLine(t, m), tt.cursor)
		})
	}
}
