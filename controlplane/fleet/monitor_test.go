package fleet

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/internal/fleettest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
)

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
