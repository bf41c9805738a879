package fleet

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestAppendViewIsRender: a node's view appended in its encoding decodes
// to the view Render builds, whatever heartbeat data the node has: none
// yet (the last heartbeat is then the stored one), samples with zeros,
// values at their limits, a terminated node's, which keeps no samples,
// with its cordon held back, dropped events; and whatever the
// reachability.
func TestAppendViewIsRender(t *testing.T) {
	f := newFleet(t, Options{})
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(ns *nodeState)
		reach fleetv1.Reachability
	}{
		{"no-heartbeat", func(*nodeState) {}, fleetv1.Reachability_REACHABILITY_UNKNOWN},
		{"stored-heartbeat-only", func(ns *nodeState) {
			n := proto.CloneOf(ns.node.Load())
			n.LastHeartbeatAt = timestamppb.New(f.clock.Now().Add(-90 * time.Second).Add(123456789))
			ns.node.Store(n)
		}, fleetv1.Reachability_REACHABILITY_OFFLINE},
		{"heartbeat", func(ns *nodeState) {
			if _, err := f.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: ns.id(), Samples: []*fleetv1.GpuSample{
				{GpuIndex: 0},
				{GpuIndex: 1, UtilizationGpuPercent: 100, TemperatureCelsius: 65535, PowerUsageMilliwatts: 1<<32 - 1, MemoryUsedBytes: 1<<64 - 1, ProcessCount: 65535},
				{GpuIndex: 3, UtilizationGpuPercent: 42, TemperatureCelsius: 70, PowerUsageMilliwatts: 650000, MemoryUsedBytes: 60 << 30, ProcessCount: 2},
			}}); err != nil {
				t.Fatal(err)
			}
		}, fleetv1.Reachability_REACHABILITY_ONLINE},
		{"terminated-held-back-heartbeat", func(ns *nodeState) {
			n := proto.CloneOf(ns.node.Load())
			n.Lifecycle = terminated
			n.CordonHeldBackAt = timestamppb.New(f.clock.Now().Add(-time.Hour))
			ns.node.Store(n)
			if _, err := f.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: ns.id(), Samples: []*fleetv1.GpuSample{
				{GpuIndex: 2, UtilizationGpuPercent: 50, ProcessCount: 1},
			}}); err != nil {
				t.Fatal(err)
			}
		}, fleetv1.Reachability_REACHABILITY_OFFLINE},
		{"dropped-events", func(ns *nodeState) {
			ns.keep(nil, 17)
		}, fleetv1.Reachability_REACHABILITY_STALE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "node-" + tt.name
			register(t, f, id, 4)
			ns := f.get(id)
			tt.setup(ns)
			want := ns.Render(ns.node.Load(), tt.reach)
			b, err := ns.AppendView(nil, ns.node.Load(), tt.reach)
			if err != nil {
				t.Fatal(err)
			}
			got := &fleetv1.Node{}
			if err := proto.Unmarshal(b, got); err != nil {
				t.Fatalf("decode the appended view: %v", err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("appended view decodes to\n%v\nwant\n%v", got, want)
			}
		})
	}
}
