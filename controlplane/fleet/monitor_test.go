package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/fleettest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
)

// transition is a node's reachability changing, at a time after start.
type transition struct {
	at    time.Duration
	reach fleetv1.Reachability
}

// TestReachabilityTimes drives the monitor a pass a second, as it runs, and
// checks that a node turns STALE and OFFLINE on the first pass at which its
// heartbeat is StaleAfter and OfflineAfter old, as when every pass looked
// at every node, while the passes look at the node only now and then.
func TestReachabilityTimes(t *testing.T) {
	const (
		online  = fleetv1.Reachability_REACHABILITY_ONLINE
		stale   = fleetv1.Reachability_REACHABILITY_STALE
		offline = fleetv1.Reachability_REACHABILITY_OFFLINE
		passes  = 200
	)
	s := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	tests := []struct {
		name   string
		loaded bool      // the node was loaded at start, not registered
		beats  []float64 // heartbeat times, seconds after start
		want   []transition
	}{
		{"registered-only", false, nil, []transition{{s(30), stale}, {s(90), offline}}},
		{"stops-after-one", false, []float64{0}, []transition{{s(30), stale}, {s(90), offline}}},
		{"between-passes", false, []float64{0.3}, []transition{{s(31), stale}, {s(91), offline}}},
		{"heartbeats-then-stops", false, []float64{0, 10, 20, 30, 40, 50, 60}, []transition{{s(90), stale}, {s(150), offline}}},
		{"back-from-stale", false, []float64{0, 35, 40.5}, []transition{
			{s(30), stale}, {s(35), online}, {s(71), stale}, {s(131), offline},
		}},
		{"back-from-offline", false, []float64{0, 100}, []transition{
			{s(30), stale}, {s(90), offline}, {s(100), online}, {s(130), stale}, {s(190), offline},
		}},
		{"loaded-never-heard", true, nil, []transition{{s(90), offline}}},
		{"loaded-then-heard", true, []float64{5}, []transition{{s(5), online}, {s(35), stale}, {s(95), offline}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := clockwork.NewFakeClockAt(wheelStart)
			ctx := ctxT(t)
			var f *Fleet
			if tt.loaded {
				f = newFleet(t, Options{Clock: clock, State: &store.State{Nodes: []*fleetv1.Node{
					{NodeId: "n1", Lifecycle: active, LifecycleChangedAt: ts(wheelStart)},
				}}})
			} else {
				f = newFleet(t, Options{Clock: clock})
				register(t, f, "n1", 1)
			}
			ns := f.get("n1")
			var got []transition
			last := ns.reachability()
			note := func() {
				if r := ns.reachability(); r != last {
					got = append(got, transition{clock.Since(wheelStart), r})
					last = r
				}
			}
			beats, looks := tt.beats, 0
			for k := 1; k <= passes; k++ {
				pass := wheelStart.Add(time.Duration(k) * time.Second)
				for len(beats) > 0 && !secs(beats[0]).After(pass) {
					clock.Advance(secs(beats[0]).Sub(clock.Now()))
					if _, err := f.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); err != nil {
						t.Fatal(err)
					}
					note()
					beats = beats[1:]
				}
				clock.Advance(pass.Sub(clock.Now()))
				if s, ok := f.wheel.dueSlot(ns); ok && s <= slot(pass) {
					looks++
				}
				f.Tick(ctx)
				note()
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("transitions %v, want %v", got, tt.want)
			}
			// Each look finds a transition or moves the next one on by up
			// to StaleAfter.
			if most := passes/30 + len(tt.want) + 2; looks > most {
				t.Errorf("the monitor looked at the node on %d of %d passes, want at most %d", looks, passes, most)
			}
		})
	}
}

// TestDeadlinesFireOnTime drives the monitor a pass a second and checks
// that each deadline is acted on at the first pass past it, as when every
// pass looked at every node.
func TestDeadlinesFireOnTime(t *testing.T) {
	at := func(s float64) *timestamppb.Timestamp { return ts(secs(s)) }
	lifecycle := func(want fleetv1.LifecycleState) func(*Fleet) bool {
		return func(f *Fleet) bool { return f.get("n1").node.Load().GetLifecycle() == want }
	}
	tests := []struct {
		name   string
		loaded []*fleetv1.Node              // the store's nodes at start
		setup  func(t *testing.T, f *Fleet) // at start
		done   func(f *Fleet) bool
		want   int // the first pass, in seconds after start, that finds done
	}{
		{
			// Deadline at 60 s, marked DRAINED once DrainGrace is past.
			name: "drain-deadline",
			setup: func(t *testing.T, f *Fleet) {
				register(t, f, "n1", 1)
				if _, _, err := f.Drain(ctxT(t), "n1", "test", secs(60), false); err != nil {
					t.Fatal(err)
				}
			},
			done: lifecycle(drained),
			want: 91,
		},
		{
			// Provisioning since 100 s before start; failed once
			// ProvisionTimeout (5 minutes) is past.
			name:   "provision-timeout",
			loaded: []*fleetv1.Node{{NodeId: "n1", Lifecycle: provisioning, LifecycleChangedAt: at(-100), Provider: "gone"}},
			done:   lifecycle(provisionFailed),
			want:   201,
		},
		{
			// Terminated 3500 s before start; removed once
			// TerminatedRetention (an hour) is past.
			name:   "terminated-retention",
			loaded: []*fleetv1.Node{{NodeId: "n1", Lifecycle: terminated, LifecycleChangedAt: at(-3500)}},
			done:   func(f *Fleet) bool { return f.get("n1") == nil },
			want:   101,
		},
		{
			// Delivered at start; handed out again once the poll timeout
			// (5 s) and RedeliverSlack are past.
			name: "redelivery",
			setup: func(t *testing.T, f *Fleet) {
				register(t, f, "n1", 1)
				if _, err := f.Cordon(ctxT(t), "n1", "test"); err != nil {
					t.Fatal(err)
				}
				if cmds, err := f.NodeCommands(ctxT(t), "n1", 0); err != nil || len(cmds) != 1 {
					t.Fatalf("delivered %v, %v; want the cordon", cmds, err)
				}
			},
			done: func(f *Fleet) bool { return f.get("n1").pending.Load() == 1 },
			want: 36,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := clockwork.NewFakeClockAt(wheelStart)
			f := newFleet(t, Options{Clock: clock, State: &store.State{Nodes: tt.loaded}})
			if tt.setup != nil {
				tt.setup(t, f)
			}
			ctx := ctxT(t)
			ns := f.get("n1")
			for k := 1; k <= tt.want+5; k++ {
				clock.Advance(time.Second)
				f.Tick(ctx)
				if tt.done(f) {
					if k != tt.want {
						t.Fatalf("done at the pass at %ds, want %ds", k, tt.want)
					}
					if _, ok := f.wheel.dueSlot(ns); ok && f.get("n1") == nil {
						t.Fatal("a removed node is still in the wheel")
					}
					return
				}
			}
			t.Fatalf("not done by %ds, want %ds", tt.want+5, tt.want)
		})
	}
}

// A node's quiet DEGRADED fault expires within expireEvery of its hold,
// and the node leaves the wheel's expiry bookkeeping once HEALTHY.
func TestDegradedFaultExpires(t *testing.T) {
	clock := clockwork.NewFakeClockAt(wheelStart)
	f := newFleet(t, Options{Clock: clock})
	ctx := ctxT(t)
	register(t, f, "n1", 1)
	if _, err := xid(t, f, "n1", 0, 999); err != nil {
		t.Fatal(err)
	}
	ns := f.get("n1")
	if h := ns.node.Load().GetHealth(); h != fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED {
		t.Fatalf("health %s after XID 999, want DEGRADED", h)
	}
	hold := int(f.policy.DegradedHold() / time.Second)
	healthyAt := 0
	for k := 1; k <= hold+int(expireEvery/time.Second)+2 && healthyAt == 0; k++ {
		clock.Advance(time.Second)
		f.Tick(ctx)
		if ns.node.Load().GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY {
			healthyAt = k
		}
	}
	if healthyAt < hold || healthyAt > hold+int(expireEvery/time.Second) {
		t.Fatalf("HEALTHY at %ds, want within %v of the hold (%ds)", healthyAt, expireEvery, hold)
	}
	clock.Advance(time.Second)
	f.Tick(ctx)
	f.wheel.mu.Lock()
	_, kept := f.wheel.expired[ns]
	f.wheel.mu.Unlock()
	if kept {
		t.Fatal("a HEALTHY node still has a time of its last expiry look")
	}
}

// A faulty node removed by the monitor's own look, as a terminated
// UNHEALTHY node past its retention is, leaves nothing of itself in the
// wheel: the look for quiet faults that follows the removal in the same
// pass must not record the node again.
func TestRemovedFaultyNodeLeavesTheWheel(t *testing.T) {
	tests := []struct {
		name   string
		health fleetv1.HealthStatus
	}{
		{"unhealthy", fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY},
		{"degraded", fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED},
		{"healthy", fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := clockwork.NewFakeClockAt(wheelStart)
			f := newFleet(t, Options{Clock: clock, State: &store.State{Nodes: []*fleetv1.Node{{
				NodeId: "n1", Lifecycle: terminated, Health: tt.health,
				LifecycleChangedAt: ts(wheelStart.Add(-2 * time.Hour)),
			}}}})
			ns := f.get("n1")
			clock.Advance(time.Second)
			f.Tick(ctxT(t))
			if f.get("n1") != nil {
				t.Fatal("the terminated node past its retention is still in the fleet")
			}
			f.wheel.mu.Lock()
			_, expired := f.wheel.expired[ns]
			f.wheel.mu.Unlock()
			if expired {
				t.Fatal("the removed node is still in the wheel's expiry bookkeeping")
			}
			if _, ok := f.wheel.dueSlot(ns); ok {
				t.Fatal("the removed node is still due in the wheel")
			}
		})
	}
}

// BenchmarkMonitorSecond is one second of the monitor in a fleet of
// 100 000 ACTIVE, HEALTHY 8-GPU nodes that heartbeat every ten seconds, a
// tenth of them each second. The heartbeats are not timed, only the pass.
func BenchmarkMonitorSecond(b *testing.B) {
	const nodes = 100000
	clock := clockwork.NewFakeClock()
	now := clock.Now()
	st := &store.State{}
	beats := make([]*nodev1.HeartbeatRequest, nodes)
	for i := range nodes {
		id := fmt.Sprintf("node-%06d", i)
		st.Nodes = append(st.Nodes, &fleetv1.Node{
			NodeId: id, Hostname: id, Gpus: fleettest.GPUs(8),
			Lifecycle: active, LifecycleChangedAt: ts(now), RegisteredAt: ts(now),
			Health: fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY,
		})
		beats[i] = &nodev1.HeartbeatRequest{NodeId: id}
	}
	f := newFleet(b, Options{Clock: clock, State: st})
	ctx := context.Background()
	second := func(s int) {
		clock.Advance(time.Second)
		for i := s % 10; i < nodes; i += 10 {
			if _, err := f.Heartbeat(ctx, beats[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	// A minute in, every node has heartbeated a few times and the monitor
	// has settled into its steady pace.
	for s := range 60 {
		second(s)
		f.Tick(ctx)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		second(60 + i)
		b.StartTimer()
		f.Tick(ctx)
	}
}
