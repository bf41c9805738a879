package controlplane_test

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func (h *harness) reach(id string) fleetv1.Reachability {
	h.t.Helper()
	return h.get(id).GetNode().GetReachability()
}

func TestHeartbeatMonitor(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC))
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	f := h.fleet()
	h.register("n1", 1)
	if got := h.reach("n1"); got != fleetv1.Reachability_REACHABILITY_ONLINE {
		t.Fatalf("after registration: %s", got)
	}
	steps := []struct {
		advance time.Duration
		beat    bool
		want    fleetv1.Reachability
	}{
		{10 * time.Second, false, fleetv1.Reachability_REACHABILITY_ONLINE},
		{19 * time.Second, false, fleetv1.Reachability_REACHABILITY_ONLINE},
		{time.Second, false, fleetv1.Reachability_REACHABILITY_STALE}, // 30s: stale_after
		{59 * time.Second, false, fleetv1.Reachability_REACHABILITY_STALE},
		{time.Second, false, fleetv1.Reachability_REACHABILITY_OFFLINE}, // 90s: offline_after
		{time.Hour, false, fleetv1.Reachability_REACHABILITY_OFFLINE},
		{0, true, fleetv1.Reachability_REACHABILITY_ONLINE}, // a heartbeat brings it back at once
		{31 * time.Second, false, fleetv1.Reachability_REACHABILITY_STALE},
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		if s.beat {
			if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); err != nil {
				t.Fatal(err)
			}
		}
		f.Tick(ctx)
		if got := h.reach("n1"); got != s.want {
			t.Fatalf("step %d: %s, want %s", i, got, s.want)
		}
	}
	st, _ := h.ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if st.GetSummary().GetStale() != 1 {
		t.Fatalf("summary %v", st.GetSummary())
	}
}

// TestRestartMarksNodesUnheard: after a restart no node is ONLINE until it
// heartbeats; the last-seen time from before is kept for operators.
func TestRestartMarksNodesUnheard(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC))
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("n1", 1)
	h.register("n2", 1)
	seen := clock.Now()
	h.restart()
	for _, id := range []string{"n1", "n2"} {
		n := h.get(id).GetNode()
		if n.GetReachability() != fleetv1.Reachability_REACHABILITY_UNKNOWN {
			t.Fatalf("%s after restart: %s", id, n.GetReachability())
		}
		if !n.GetLastHeartbeatAt().AsTime().Equal(seen) {
			t.Fatalf("%s last seen %v, want %v", id, n.GetLastHeartbeatAt().AsTime(), seen)
		}
	}
	if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	if got := h.reach("n1"); got != fleetv1.Reachability_REACHABILITY_ONLINE {
		t.Fatalf("n1 after a heartbeat: %s", got)
	}
	clock.Advance(89 * time.Second)
	h.fleet().Tick(ctx)
	if got := h.reach("n2"); got != fleetv1.Reachability_REACHABILITY_UNKNOWN {
		t.Fatalf("n2 before the offline timeout: %s", got)
	}
	clock.Advance(time.Second)
	if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	h.fleet().Tick(ctx)
	if got := h.reach("n2"); got != fleetv1.Reachability_REACHABILITY_OFFLINE {
		t.Fatalf("n2 never heard from: %s", got)
	}
	if got := h.reach("n1"); got != fleetv1.Reachability_REACHABILITY_ONLINE {
		t.Fatalf("n1: %s", got)
	}
}
