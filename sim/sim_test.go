package sim

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func controlPlane(t *testing.T) (rpcclient.Target, controlplanev1.ControlPlaneServiceClient) {
	t.Helper()
	cp := cptest.Start(t, cptest.Options{Config: func(cfg *controlplane.Config) {
		cfg.HeartbeatInterval = controlplane.Duration{Duration: 200 * time.Millisecond}
		cfg.HealthReportInterval = controlplane.Duration{Duration: 500 * time.Millisecond}
		cfg.StaleAfter = controlplane.Duration{Duration: 2 * time.Second}
		cfg.OfflineAfter = controlplane.Duration{Duration: 4 * time.Second}
		cfg.CommandPollTimeout = controlplane.Duration{Duration: 2 * time.Second}
		off := false
		cfg.AutoCordon.Enabled = &off
	}})
	return cp.Target(), cp.Ops
}

func TestSimulatedFleet(t *testing.T) {
	addr, ops := controlPlane(t)
	f, err := New(Options{Server: addr, Nodes: 300, GPUs: 4, Conns: 3, ChaosInterval: 30 * time.Second, Labels: map[string]string{"pool": "sim"}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()

	status := func() *fleetv1.FleetSummary {
		st, err := ops.GetFleetStatus(context.Background(), &controlplanev1.GetFleetStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return st.GetSummary()
	}
	testutil.EventuallyWithin(t, 30*time.Second, "300 healthy, online nodes", func() bool {
		s := status()
		return s.GetNodes() == 300 && s.GetOnline() == 300 && s.GetGpus() == 1200 && s.GetHealthUnknown() == 0
	})
	testutil.EventuallyWithin(t, 30*time.Second, "chaos events", func() bool {
		evs, err := ops.ListEvents(context.Background(), &controlplanev1.ListEventsRequest{})
		return err == nil && len(evs.GetEvents()) > 0
	})
	if err := f.InjectXID(context.Background(), 7, 3, 79); err != nil {
		t.Fatal(err)
	}
	id := f.NodeIDs()[7]
	d, err := ops.GetNode(context.Background(), &controlplanev1.GetNodeRequest{NodeId: id})
	if err != nil || d.GetNode().GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Fatalf("%s after XID 79: %v %v", id, d.GetNode().GetHealth(), err)
	}
	if _, err := ops.DrainNode(context.Background(), &controlplanev1.DrainNodeRequest{NodeId: id}); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyWithin(t, 30*time.Second, "simulated node drained", func() bool {
		d, err := ops.GetNode(context.Background(), &controlplanev1.GetNodeRequest{NodeId: id})
		return err == nil && d.GetNode().GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED
	})
	if f.HeartbeatLatencies().Count() == 0 || f.ReportLatencies().Count() == 0 {
		t.Fatal("no latencies recorded")
	}
	q := f.HeartbeatLatencies().Quantiles(0.5, 0.99)
	if q[0] <= 0 || q[1] < q[0] {
		t.Fatalf("quantiles %v", q)
	}
}

// TestSpreadSendsTheConfiguredRate: every node is called once per
// interval, no more, at sizes where a call a tick would be too many.
func TestSpreadSendsTheConfiguredRate(t *testing.T) {
	tests := []struct {
		name     string
		nodes    int
		interval time.Duration
	}{
		{"fewer-calls-than-ticks", 200, 3 * time.Second}, // 67 a second, under one a 10 ms tick
		{"between-one-and-two-a-tick", 1000, 6 * time.Second},
		{"many-a-tick", 3000, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := bareFleet(tt.nodes)
			var calls atomic.Int64
			const run = 1500 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), run)
			defer cancel()
			var slot atomic.Pointer[pace]
			f.spread(ctx, func(*node) time.Duration { return tt.interval }, &slot, func(context.Context, *node, time.Duration) { calls.Add(1) })
			want := float64(tt.nodes) * float64(run) / float64(tt.interval)
			// Short of the rate by at most what a busy machine delays the
			// last ticks; never over it.
			if got := float64(calls.Load()); got < 0.75*want || got > 1.05*want {
				t.Fatalf("%d calls in %s, want %.0f (%d nodes every %s)", calls.Load(), run, want, tt.nodes, tt.interval)
			}
		})
	}
}

// TestSpreadCountsTheWaitForASlot: when every slot for calls in flight
// is taken, the calls due wait and are counted as behind, and each call
// is told how long it waited since it came due, to count in its latency.
func TestSpreadCountsTheWaitForASlot(t *testing.T) {
	// Twice the calls a second that maxInFlight slots of 100 ms answers
	// can take.
	const answer = 100 * time.Millisecond
	f := bareFleet(maxInFlight)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var slot atomic.Pointer[pace]
	var mu sync.Mutex
	var from []time.Time // each call's start less the wait it was told of
	var mostBehind int64
	f.spread(ctx, func(*node) time.Duration { return answer / 2 }, &slot, func(_ context.Context, _ *node, waited time.Duration) {
		began := time.Now()
		mu.Lock()
		from = append(from, began.Add(-waited))
		mostBehind = max(mostBehind, slot.Load().behind())
		mu.Unlock()
		time.Sleep(answer)
	})
	if mostBehind < maxInFlight {
		t.Errorf("at most %d calls behind, with half of the calls due unsent", mostBehind)
	}
	// Calls go out in the order they came due, so the k-th earliest time a
	// call was timed from is the time call k came due, or the tick after
	// it, plus the start of its goroutine (allowed a quarter of a second,
	// for a loaded machine); never earlier. Calls timed from when they
	// were sent would be up to a second late by the end.
	p := slot.Load()
	slices.SortFunc(from, time.Time.Compare)
	const slack = tick + 250*time.Millisecond
	for k, at := range from {
		if d := at.Sub(p.dueAt(int64(k))); d < -time.Millisecond || d > slack {
			t.Fatalf("call %d of %d timed from %s after it came due, want 0 to %s", k, len(from), d, slack)
		}
	}
}

// TestSpreadDoesNotDelayCallsOfAQuickServer: a server that answers at
// once is sent each call as it comes due, so no call is told of a wait
// for a slot; at a few calls a tick, a call timed from an earlier due
// time than its own would be told of a whole interval between calls.
func TestSpreadDoesNotDelayCallsOfAQuickServer(t *testing.T) {
	f := bareFleet(100)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var slot atomic.Pointer[pace]
	var mu sync.Mutex
	var waits []time.Duration
	// A call every 30 ms, one every third tick.
	f.spread(ctx, func(*node) time.Duration { return 3 * time.Second }, &slot, func(_ context.Context, _ *node, waited time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, waited)
	})
	if len(waits) < 30 {
		t.Fatalf("%d calls in 1.5 s, want about 50", len(waits))
	}
	slices.Sort(waits)
	if median := waits[len(waits)/2]; median > time.Millisecond {
		t.Fatalf("a quick server's calls waited %s (the median of %d) for a slot, want none", median, len(waits))
	}
}

// bareFleet is a fleet of n nodes with nothing behind them, for spread.
func bareFleet(n int) *Fleet {
	f := &Fleet{nodes: make([]*node, n)}
	for i := range f.nodes {
		f.nodes[i] = &node{}
	}
	return f
}
