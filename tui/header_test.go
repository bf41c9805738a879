package tui

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// electionClient answers GetFleetStatus with the control planes it is
// set to, as whichever control plane leads would.
type electionClient struct {
	controlplanev1.ControlPlaneServiceClient
	mu  sync.Mutex
	cps *controlplanev1.ControlPlanes
}

func (c *electionClient) set(cps *controlplanev1.ControlPlanes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cps = cps
}

func (c *electionClient) GetFleetStatus(context.Context, *controlplanev1.GetFleetStatusRequest, ...grpc.CallOption) (*controlplanev1.GetFleetStatusResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &controlplanev1.GetFleetStatusResponse{ControlPlanes: c.cps}, nil
}

// electedAt is the control planes with leader leading the others, and the
// last failover from the first of them when failoverAgo is not zero.
func electedAt(leader string, others []string, failoverAgo time.Duration) *controlplanev1.ControlPlanes {
	cps := &controlplanev1.ControlPlanes{Leader: leader,
		Members: []*controlplanev1.ControlPlaneMember{{Address: leader, Leader: true, Since: timestamppb.New(now.Add(-time.Hour))}}}
	for _, o := range others {
		cps.Members = append(cps.Members, &controlplanev1.ControlPlaneMember{Address: o, Since: timestamppb.New(now.Add(-time.Hour))})
	}
	if failoverAgo > 0 {
		cps.LastFailover = &controlplanev1.Failover{From: "cp-1:50051", To: leader, At: timestamppb.New(now.Add(-failoverAgo))}
	}
	return cps
}

// header is the frame's header: the lines above the fleet table.
func header(m *Model) []string {
	lines := strings.Split(plain(m), "\n")
	for i, l := range lines {
		if strings.Contains(l, "NODE") {
			return lines[:i]
		}
	}
	return lines
}

// TestHeaderShowsTheControlPlanes: the header shows the leader, the
// standbys and the last failover that GetFleetStatus gave; after a
// failover the stream reconnects to the new leader, and its answer
// replaces them. A lone control plane shows none of it, and at 80 columns
// every header line still fits.
func TestHeaderShowsTheControlPlanes(t *testing.T) {
	tests := []struct {
		name  string
		width int
		cps   *controlplanev1.ControlPlanes
		want  string // "" for no word on the control planes
	}{
		{"lone", 100, nil, ""},
		{"leader-and-standbys", 100, electedAt("cp-1:50051", []string{"cp-2:50051", "cp-3:50051"}, 0), "leader cp-1:50051 · 2 standbys"},
		{"after-a-failover", 100, electedAt("cp-2:50051", []string{"cp-3:50051"}, 5*time.Minute), "leader cp-2:50051 · 1 standby · failover 5m ago"},
		{"no-standby-left", 100, electedAt("cp-2:50051", nil, 3*time.Hour), "leader cp-2:50051 · no standby · failover 3h ago"},
		{"narrow", 80, electedAt("cp-2:50051", []string{"cp-3:50051"}, 5*time.Minute), "leader cp-2:50051 · 1 standby · failover 5m ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &electionClient{cps: tt.cps}
			m := New(Options{Client: c, NoStream: true, Theme: NewTheme(true, false), Now: clock, Server: "cp-1:50051,cp-2:50051,cp-3:50051"})
			send(m, tea.WindowSizeMsg{Width: tt.width, Height: 24}, connectedMsg{})
			m.Apply(snapshot(40, fixtureFleet(), fixtureEvents()))
			send(m, await[fleetStatusMsg](t, m.Init()))
			head := header(m)
			text := strings.Join(head, "\n")
			if tt.want == "" && strings.Contains(text, "leader") {
				t.Fatalf("a lone control plane's header names a leader:\n%s", text)
			}
			if !strings.Contains(text, tt.want) {
				t.Fatalf("header lacks %q:\n%s", tt.want, text)
			}
			for _, l := range head {
				if w := lipgloss.Width(l); w > tt.width {
					t.Fatalf("header line of %d cells on a terminal of %d: %q", w, tt.width, l)
				}
			}
		})
	}
}

// TestHeaderFollowsAFailover: the leader stops, the stream breaks and
// connects again to the new leader; the console asks GetFleetStatus again
// and the header names the new leader and the failover.
func TestHeaderFollowsAFailover(t *testing.T) {
	c := &electionClient{cps: electedAt("cp-1:50051", []string{"cp-2:50051"}, 0)}
	m := New(Options{Client: c, NoStream: true, Theme: NewTheme(true, false), Now: clock, Server: "cp-1:50051,cp-2:50051"})
	send(m, tea.WindowSizeMsg{Width: 100, Height: 30}, connectedMsg{})
	m.Apply(snapshot(40, fixtureFleet(), fixtureEvents()))
	send(m, await[fleetStatusMsg](t, m.Init()))
	mustContain(t, strings.Join(header(m), "\n"), "leader cp-1:50051 · 1 standby")

	c.set(electedAt("cp-2:50051", nil, 10*time.Second))
	send(m, disconnectedMsg{err: "the control plane stepped down", retry: time.Second, attempt: 1})
	send(m, await[fleetStatusMsg](t, send(m, connectedMsg{resumed: true})))
	text := strings.Join(header(m), "\n")
	mustContain(t, text, "leader cp-2:50051 · no standby · failover 10s ago")
	if strings.Contains(text, "leader cp-1") {
		t.Fatalf("the header still names the old leader:\n%s", text)
	}
}
