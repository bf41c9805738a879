package tui

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/cptest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestHeldBackFilter: a filter word that begins "held-back" keeps the
// nodes the breaker held back, alone or with other words.
func TestHeldBackFilter(t *testing.T) {
	all := []string{"gpu-a01", "gpu-a02", "gpu-a03", "gpu-a04", "gpu-b01", "gpu-b02"}
	cases := []struct {
		name, filter string
		want         []string
	}{
		{"held", "held", []string{"gpu-a04"}},
		{"whole-word", "held-back", []string{"gpu-a04"}},
		{"upper-case", "HELD", []string{"gpu-a04"}},
		{"three-letters", "hel", []string{"gpu-a04"}},
		{"two-letters-name-nothing", "he", nil},
		{"with-a-state", "held unhealthy", []string{"gpu-a04"}},
		{"unhealthy-keeps-every-unhealthy", "unhealthy", []string{"gpu-a02", "gpu-a04", "gpu-b02"}},
		{"active-keeps-held-back", "active", []string{"gpu-a01", "gpu-a04", "gpu-b02"}},
		{"not-held-back", "held a01", nil},
		{"none", "", all},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			send(m, heldBack(), press("/"))
			send(m, typed(c.filter)...)
			if got := shownIDs(m); !slices.Equal(got, c.want) {
				t.Fatalf("/%s shows %v, want %v", c.filter, got, c.want)
			}
		})
	}
}

// TestHeldBackKey: H lists the held-back nodes together, and again every
// node; esc does too. Where none is held back, it says so.
func TestHeldBackKey(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, heldBack(), press("H"))
	if got := shownIDs(m); !slices.Equal(got, []string{"gpu-a04"}) {
		t.Fatalf("H shows %v, want gpu-a04 alone", got)
	}
	mustContain(t, m.Frame(), "1 of 6 nodes", "filter held-back", "gpu-a04  HELD BACK    UNHEALTHY")
	send(m, press("H"))
	if got := len(shownIDs(m)); got != 6 {
		t.Fatalf("H again shows %d nodes, want all 6", got)
	}
	send(m, press("H"), press("esc"))
	if got := len(shownIDs(m)); got != 6 {
		t.Fatalf("esc after H shows %d nodes, want all 6", got)
	}

	m = newTestModel(t, Options{})
	send(m, press("H"))
	mustContain(t, m.Frame(), "no node is held back from an automatic cordon")
}

// TestReleaseIsInEveryActingViewsHelp: each view in which R releases a
// held-back node lists R in its help.
func TestReleaseIsInEveryActingViewsHelp(t *testing.T) {
	tests := []struct {
		name string
		keys []tea.Msg
		view string
	}{
		{"fleet", nil, fleetViewName},
		{"node", keysOf("enter"), nodeViewName},
		{"pool", keysOf("3", "G", "enter"), poolViewName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newPoolModel(t, Options{})
			send(m, tt.keys...)
			if m.active != tt.view {
				t.Fatalf("view %s, want %s", m.active, tt.view)
			}
			send(m, press("?"))
			mustContain(t, m.overlay.view(m.width), "R       release held-back")
		})
	}
}

// TestBannerSaysHowToListHeldBack: the banner names the way to list the
// held-back nodes that works in the view on screen: H in the fleet view,
// where it is bound, :held in the others.
func TestBannerSaysHowToListHeldBack(t *testing.T) {
	tests := []struct {
		name string
		keys []tea.Msg
		want string
	}{
		{"fleet", nil, "1 cordon held back (press H)"},
		{"events", keysOf("2"), "1 cordon held back (:held lists them)"},
		{"node", keysOf("enter"), "1 cordon held back (:held lists them)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			send(m, heldBack())
			send(m, tt.keys...)
			mustContain(t, m.Frame(), tt.want)
		})
	}
}

// TestBannerCountsHeldBack: the banner counts the nodes still held back,
// from the summary, while the breaker is tripped and after it closed.
func TestBannerCountsHeldBack(t *testing.T) {
	tripped := &fleetv1.BreakerStatus{AutoCordonEnabled: true, Tripped: true, TrippedAt: timestamppb.New(now.Add(-time.Minute)), SuppressedCordons: 3}
	closed := &fleetv1.BreakerStatus{AutoCordonEnabled: true}
	cases := []struct {
		name     string
		held     uint32
		breaker  *fleetv1.BreakerStatus
		want     string
		wantNone bool
	}{
		{"tripped-two", 2, tripped, "AUTO-CORDON SUSPENDED: breaker tripped 1m ago, 2 cordons held back (press H)", false},
		{"tripped-one", 1, tripped, "1 cordon held back (press H)", false},
		{"tripped-all-judged", 0, tripped, "AUTO-CORDON SUSPENDED: breaker tripped 1m ago", true},
		{"closed-one-waits", 1, closed, "1 cordon held back by the auto-cordon breaker, waiting for you (press H)", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			send(m, tea.WindowSizeMsg{Width: 200, Height: 30}, totals(&fleetv1.FleetSummary{Nodes: 6, HeldBack: c.held}, c.breaker))
			mustContain(t, m.Frame(), c.want)
			if c.wantNone && strings.Contains(plain(m), "held back") {
				t.Fatalf("banner counts held-back nodes where none is:\n%s", plain(m))
			}
		})
	}
}

// TestHeldBackListActions drives the held-back list against a real
// control plane whose breaker held back b and c: H lists them, R on
// several asks first, R on one releases it, c on the other cordons it.
func TestHeldBackListActions(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-" + id}}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := cp.Nodes.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: id, Events: []*fleetv1.HealthEvent{
			{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 0},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	node := func(id string) *fleetv1.Node {
		t.Helper()
		resp, err := cp.Ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: id})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetNode()
	}
	// The console's copy of the fleet as the control plane has it.
	load := func(m *Model) {
		t.Helper()
		list, err := cp.Ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := cp.Ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		m.Apply(&controlplanev1.WatchFleetResponse{Revision: st.GetRevision(), Change: &controlplanev1.WatchFleetResponse_Snapshot{Snapshot: &controlplanev1.Snapshot{
			Nodes: list.GetNodes(), Summary: st.GetSummary(), Breaker: st.GetBreaker(), Complete: true,
		}}})
	}
	// act presses k and runs the action it starts.
	act := func(m *Model, k string) {
		t.Helper()
		cmd := send(m, press(k))
		if cmd == nil {
			t.Fatalf("%s ran nothing:\n%s", k, plain(m))
		}
		send(m, cmd())
	}

	m := New(Options{Client: cp.Ops, NoStream: true, Theme: NewTheme(true, false), Server: cp.Addr})
	send(m, tea.WindowSizeMsg{Width: 100, Height: 30}, connectedMsg{})
	load(m)
	mustContain(t, m.Frame(), "2 cordons held back (press H)")
	send(m, press("H"))
	if got := shownIDs(m); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("H shows %v, want b and c", got)
	}

	// Several marked ask first, naming them.
	send(m, press("ctrl+a"), press("R"))
	mustContain(t, m.Frame(), "Release 2 marked nodes (b, c)? They stay in service")
	send(m, press("n"), press("esc"))

	act(m, "R")
	mustContain(t, m.Frame(), "b released: ACTIVE, no longer held back")
	if n := node("b"); n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE || n.GetCordonHeldBackAt() != nil {
		t.Fatalf("after R, b is %s, held back at %v; want active and released", n.GetLifecycle(), n.GetCordonHeldBackAt())
	}
	load(m)
	if got := shownIDs(m); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("after b's release the list shows %v, want c alone", got)
	}
	mustContain(t, m.Frame(), "1 cordon held back (press H)")

	act(m, "c")
	mustContain(t, m.Frame(), "c CORDONED")
	if n := node("c"); n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED || n.GetCordonHeldBackAt() != nil {
		t.Fatalf("after c, c is %s, held back at %v; want cordoned and no longer held back", n.GetLifecycle(), n.GetCordonHeldBackAt())
	}
	load(m)
	mustContain(t, m.Frame(), "no node is held back from an automatic cordon")

	// R on a node that is not held back says so, naming it.
	send(m, press("H"))
	act(m, "R")
	mustContain(t, m.Frame(), `release failed: a: node_id: node "a" is not held back`)
}
