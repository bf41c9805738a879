package tui

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// shownIDs are the fleet table's node ids, top to bottom.
func shownIDs(m *Model) []string {
	var ids []string
	for _, r := range m.d.fleet.shown {
		ids = append(ids, r.id)
	}
	return ids
}

// totals is a stream message carrying new fleet totals.
func totals(s *fleetv1.FleetSummary, b *fleetv1.BreakerStatus) streamMsg {
	return wire(&controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_Totals{
		Totals: &controlplanev1.FleetTotals{Summary: s, Breaker: b},
	}})
}

// TestHeaderCountsStaleApartFromOffline: a STALE node is counted as
// stale, not offline, as its row and `get status` say.
func TestHeaderCountsStaleApartFromOffline(t *testing.T) {
	cases := []struct {
		name    string
		summary *fleetv1.FleetSummary
		want    []string
		notWant string
	}{
		{"one-stale", &fleetv1.FleetSummary{Nodes: 1, Gpus: 8, Healthy: 1, Stale: 1}, []string{"1 node  8 GPUs", "1 stale  0 offline"}, "1 offline"},
		{"stale-and-offline", &fleetv1.FleetSummary{Nodes: 3, Gpus: 1, Stale: 2, Offline: 1}, []string{"3 nodes  1 GPU", "2 stale  1 offline"}, "3 offline"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			send(m, totals(c.summary, nil))
			mustContain(t, m.Frame(), c.want...)
			if strings.Contains(plain(m), c.notWant) {
				t.Fatalf("header says %q:\n%s", c.notWant, plain(m))
			}
		})
	}
}

// TestFilterMatchesStates: a filter word matches a node's lifecycle,
// health or reachability by the start of its name, as well as its id,
// hostname and labels.
func TestFilterMatchesStates(t *testing.T) {
	cases := []struct {
		name, filter string
		want         []string
	}{
		{"unhealthy", "unhealthy", []string{"gpu-a02", "gpu-b02"}},
		{"healthy-is-not-unhealthy", "healthy", []string{"gpu-a01", "gpu-a03"}},
		{"degraded-upper-case", "DEGRADED", []string{"gpu-b01"}},
		{"cordoned", "cordoned", []string{"gpu-a02", "gpu-a03"}},
		{"cordon-begins-cordoned", "cordon", []string{"gpu-a02", "gpu-a03"}},
		{"offline", "offline", []string{"gpu-b02"}},
		{"stale", "stale", []string{"gpu-b01"}},
		{"draining", "draining", []string{"gpu-b01"}},
		{"state-and-label", "unhealthy zone=us-east-1b", []string{"gpu-b02"}},
		{"state-and-id", "cordoned a03", []string{"gpu-a03"}},
		{"two-states", "unhealthy cordoned", []string{"gpu-a02"}},
		{"id-still-matches", "b0", []string{"gpu-b01", "gpu-b02"}},
		{"two-letters-name-no-state", "on", []string{"gpu-a01", "gpu-a02", "gpu-a03", "gpu-b01", "gpu-b02"}},
		{"no-state-begins-so", "offlinex", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTestModel(t, Options{})
			send(m, press("/"))
			send(m, typed(c.filter)...)
			if got := shownIDs(m); !slices.Equal(got, c.want) {
				t.Fatalf("/%s shows %v, want %v", c.filter, got, c.want)
			}
		})
	}
}

// TestCountsArePlural: every count the console draws agrees with its
// noun.
func TestCountsArePlural(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, totals(&fleetv1.FleetSummary{Nodes: 1, Gpus: 1, HeldBack: 1},
		&fleetv1.BreakerStatus{AutoCordonEnabled: true, Tripped: true, TrippedAt: timestamppb.New(now.Add(-time.Minute)), SuppressedCordons: 1}))
	mustContain(t, m.Frame(), "1 node  1 GPU", "1 cordon held back")
	send(m, keysOf("2", "/")...)
	send(m, typed("thermal")...)
	send(m, press("enter"))
	mustContain(t, m.Frame(), "1 event (newest first)")
}

func TestPlural(t *testing.T) {
	cases := []struct {
		name string
		got  string
		want string
	}{
		{"none", plural(0, "node"), "0 nodes"},
		{"one", plural(1, "node"), "1 node"},
		{"two", plural(2, "event"), "2 events"},
		{"phrase", plural(uint64(1), "marked node"), "1 marked node"},
		{"phrase-plural", plural(uint32(3), "marked node"), "3 marked nodes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Fatalf("got %q, want %q", c.got, c.want)
			}
		})
	}
}
