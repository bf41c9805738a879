package fleet

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/fleettest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
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

// watchService serves WatchFleet from a fleet, as the API does.
type watchService struct {
	controlplanev1.UnimplementedControlPlaneServiceServer
	f *Fleet
}

func (s watchService) WatchFleet(req *controlplanev1.WatchFleetRequest, stream controlplanev1.ControlPlaneService_WatchFleetServer) error {
	return s.f.Watch(stream.Context(), req.GetSinceRevision(), stream)
}

// grpcSnapshot opens a WatchFleet stream to f over gRPC, so that the
// snapshot is appended from the nodes' encodings, and returns its nodes
// by id.
func grpcSnapshot(t *testing.T, f *Fleet) map[string]*fleetv1.Node {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	controlplanev1.RegisterControlPlaneServiceServer(s, watchService{f: f})
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	stream, err := controlplanev1.NewControlPlaneServiceClient(conn).WatchFleet(ctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		t.Fatalf("open a stream: %v", err)
	}
	nodes := map[string]*fleetv1.Node{}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("receive the snapshot: %v", err)
		}
		for _, n := range m.GetSnapshot().GetNodes() {
			nodes[n.GetNodeId()] = n
		}
		if m.GetSnapshot().GetComplete() {
			return nodes
		}
	}
}

// TestSnapshotFollowsEveryChange: each node's encoded durable state,
// kept from one snapshot to the next, never outlives the state: after
// every kind of durable change (health and faults, labels, a cordon, a
// drain, lifecycle steps, a removal) and after a heartbeat, which
// changes nothing durable, and a reachability change, the next snapshot
// over gRPC has every node exactly as the fleet renders it now, with
// fresh samples, and no removed node.
func TestSnapshotFollowsEveryChange(t *testing.T) {
	f := newFleet(t, Options{})
	ctx := ctxT(t)
	for _, id := range []string{"a", "b", "c"} {
		register(t, f, id, 4)
	}
	heartbeat := func(id string, util uint32) {
		if _, err := f.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: id, Samples: []*fleetv1.GpuSample{
			{GpuIndex: 0, UtilizationGpuPercent: util, TemperatureCelsius: 60, ProcessCount: 1},
			{GpuIndex: 1, UtilizationGpuPercent: util / 2, PowerUsageMilliwatts: 400000},
		}}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		change  func(t *testing.T)
		removed string
	}{
		{"registered", func(*testing.T) {}, ""},
		{"heartbeat", func(*testing.T) { heartbeat("a", 90) }, ""},
		{"heartbeat-again", func(*testing.T) { heartbeat("a", 40); heartbeat("b", 10) }, ""},
		{"health-and-fault", func(t *testing.T) {
			if _, err := xid(t, f, "a", 1, 79); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"labels", func(t *testing.T) {
			if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "b", Hostname: "b", Gpus: fleettest.GPUs(4), BootId: "boot-1",
				Labels: map[string]string{"zone": "z2", "rack": "r9"}}); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"cordon", func(t *testing.T) {
			if _, err := f.Cordon(ctx, "b", "maintenance"); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"drain", func(t *testing.T) {
			if _, _, err := f.Drain(ctx, "b", "maintenance", f.clock.Now().Add(time.Hour), false); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"terminate", func(t *testing.T) {
			if _, err := f.Terminate(ctx, "c", "retire", true, 0); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"terminated", func(t *testing.T) {
			if _, err := f.operate(ctx, "c", func(_ *nodeState, n *fleetv1.Node, _ *change, now time.Time) error {
				setLifecycle(n, terminated, "stopped", "test", now)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"reachability", func(*testing.T) {
			f.setReachability(f.get("a"), fleetv1.Reachability_REACHABILITY_STALE)
		}, ""},
		{"remove", func(*testing.T) { f.remove(ctx, f.get("c")) }, "c"},
	}
	var removed []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.change(t)
			if tt.removed != "" {
				removed = append(removed, tt.removed)
			}
			// A change that publishes nothing (a heartbeat) would leave
			// the last snapshot to be shared, and heartbeats sent after it.
			f.hub.TotalsChanged()
			got := grpcSnapshot(t, f)
			for _, id := range removed {
				if _, ok := got[id]; ok {
					t.Fatalf("removed node %s is in the snapshot", id)
				}
			}
			for _, ns := range f.all() {
				want := ns.view()
				if !proto.Equal(got[ns.id()], want) {
					t.Fatalf("node %s in the snapshot is\n%v\nwant\n%v", ns.id(), got[ns.id()], want)
				}
			}
			if len(got) != f.Len() {
				t.Fatalf("snapshot has %d nodes, the fleet %d", len(got), f.Len())
			}
		})
	}
}

// TestSnapshotKeepsEncodedState: a snapshot keeps each node's encoded
// durable state, so that the next one copies it, until the node changes:
// then it is dropped, so as not to hold the state replaced.
func TestSnapshotKeepsEncodedState(t *testing.T) {
	f := newFleet(t, Options{})
	register(t, f, "a", 2)
	register(t, f, "b", 2)
	grpcSnapshot(t, f)
	for _, ns := range f.all() {
		if e := ns.enc.Load(); e == nil || e.state != ns.node.Load() {
			t.Fatalf("node %s keeps no encoding of its state after a snapshot", ns.id())
		}
	}
	if _, err := f.Cordon(ctxT(t), "a", "maintenance"); err != nil {
		t.Fatal(err)
	}
	if f.get("a").enc.Load() != nil {
		t.Fatal("a cordoned node keeps the encoding of the state it replaced")
	}
	if e := f.get("b").enc.Load(); e == nil || e.state != f.get("b").node.Load() {
		t.Fatal("a node that did not change lost its kept encoding")
	}
}

// TestKeptEncodingRacesChanges: a node encoded for snapshots while it
// changes ends keeping nothing or the encoding of its current state, never
// one of a state replaced, and every view appended decodes to the state
// it was appended from.
func TestKeptEncodingRacesChanges(t *testing.T) {
	f := newFleet(t, Options{})
	ctx := ctxT(t)
	register(t, f, "a", 2)
	ns := f.get("a")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			var err error
			if i%2 == 0 {
				_, err = f.Cordon(ctx, "a", "maintenance")
			} else {
				_, err = f.Uncordon(ctx, "a", "back")
			}
			if err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		state := ns.node.Load()
		b, err := ns.AppendView(nil, state, fleetv1.Reachability_REACHABILITY_ONLINE)
		if err != nil {
			t.Fatal(err)
		}
		got := &fleetv1.Node{}
		if err := proto.Unmarshal(b, got); err != nil {
			t.Fatal(err)
		}
		if got.GetLifecycle() != state.GetLifecycle() || got.GetLifecycleReason() != state.GetLifecycleReason() {
			t.Fatalf("view appended from a %v node is %v", state.GetLifecycle(), got.GetLifecycle())
		}
	}
	if e := ns.enc.Load(); e != nil && e.state != ns.node.Load() {
		t.Fatal("the node keeps the encoding of a state it replaced")
	}
}
