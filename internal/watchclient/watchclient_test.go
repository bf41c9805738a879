package watchclient

import (
	"context"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// fleetOf starts a real control plane with n registered nodes.
func fleetOf(t *testing.T, n int) *cptest.ControlPlane {
	t.Helper()
	cp := cptest.Start(t, cptest.Options{})
	for i := range n {
		if _, err := cp.Nodes.RegisterNode(t.Context(), &nodev1.RegisterNodeRequest{
			NodeId: fmt.Sprintf("node-%04d", i), Gpus: fleettest.GPUs(8), BootId: "boot-1",
			Labels: map[string]string{"zone": fmt.Sprint("z", i%3)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return cp
}

// untilComplete reads messages up to and including a complete snapshot.
func untilComplete(t *testing.T, recv func() (*controlplanev1.WatchFleetResponse, error)) []*controlplanev1.WatchFleetResponse {
	t.Helper()
	var out []*controlplanev1.WatchFleetResponse
	for {
		m, err := recv()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
		if m.GetSnapshot().GetComplete() {
			return out
		}
	}
}

// chunkSizes is how many nodes each snapshot chunk carries.
func chunkSizes(msgs []*controlplanev1.WatchFleetResponse) []int {
	var out []int
	for _, m := range msgs {
		out = append(out, len(m.GetSnapshot().GetNodes()))
	}
	return out
}

// nodesByID is every node of a snapshot's chunks, by id.
func nodesByID(msgs []*controlplanev1.WatchFleetResponse) map[string]*fleetv1.Node {
	out := map[string]*fleetv1.Node{}
	for _, m := range msgs {
		for _, n := range m.GetSnapshot().GetNodes() {
			out[n.GetNodeId()] = n
		}
	}
	return out
}

// withoutNodes is a snapshot chunk's message with its nodes left out.
func withoutNodes(m *controlplanev1.WatchFleetResponse) *controlplanev1.WatchFleetResponse {
	c := proto.CloneOf(m)
	c.GetSnapshot().Nodes = nil
	return c
}

// TestStreamDeliversWhatGRPCDoes: over real TLS to a real control plane,
// a snapshot in several chunks and the changes after it come through
// Watch as gRPC's own stream has them, in the order they were sent.
func TestStreamDeliversWhatGRPCDoes(t *testing.T) {
	const nodes = 1100 // three chunks of up to 500
	cp := fleetOf(t, nodes)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	plain, err := cp.Ops.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := untilComplete(t, plain.Recv)
	s, err := Watch(ctx, cp.Ops, &controlplanev1.WatchFleetRequest{}, Message)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := untilComplete(t, s.Recv)
	// Each stream takes a snapshot of its own, whose nodes come in no
	// set order: the chunks are compared by their sizes, which place the
	// short one last, their nodes by id, and what the last one carries
	// besides.
	if fmt.Sprint(chunkSizes(got)) != fmt.Sprint(chunkSizes(want)) || len(got) < 3 {
		t.Fatalf("chunks of %v nodes, gRPC's stream %v (want at least 3 chunks)", chunkSizes(got), chunkSizes(want))
	}
	gotNodes, wantNodes := nodesByID(got), nodesByID(want)
	if len(gotNodes) != nodes || len(wantNodes) != nodes {
		t.Fatalf("%d nodes, gRPC's stream %d, want %d", len(gotNodes), len(wantNodes), nodes)
	}
	for id, n := range wantNodes {
		if !proto.Equal(gotNodes[id], n) {
			t.Fatalf("node %s differs from gRPC's:\n got %v\nwant %v", id, gotNodes[id], n)
		}
	}
	if g, w := withoutNodes(got[len(got)-1]), withoutNodes(want[len(want)-1]); !proto.Equal(g, w) {
		t.Fatalf("the last chunk differs from gRPC's:\n got %v\nwant %v", g, w)
	}

	// Changes come in the order they were made, whichever decoder
	// finished first.
	const cordons = 60
	for i := range cordons {
		if _, err := cp.Ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: fmt.Sprintf("node-%04d", i), Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < cordons; {
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		n := m.GetNodeUpsert()
		if n == nil || n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED {
			continue
		}
		if want := fmt.Sprintf("node-%04d", i); n.GetNodeId() != want {
			t.Fatalf("cordon %d came as %s's, want %s's", i, n.GetNodeId(), want)
		}
		i++
	}
}

// TestStreamHeartbeats: a node's heartbeat reaches a watching console
// within the control plane's next flush, its samples whole, through the
// batches the control plane encodes from its packed state and the real
// codec and TLS.
func TestStreamHeartbeats(t *testing.T) {
	cp := fleetOf(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Watch(ctx, cp.Ops, &controlplanev1.WatchFleetRequest{}, Message)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	untilComplete(t, s.Recv)
	want := &fleetv1.GpuSample{GpuIndex: 3, UtilizationGpuPercent: 77, TemperatureCelsius: 66, PowerUsageMilliwatts: 512000, MemoryUsedBytes: 40 << 30, ProcessCount: 2}
	if _, err := cp.Nodes.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "node-0001", Samples: []*fleetv1.GpuSample{want}}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, hb := range m.GetHeartbeats().GetHeartbeats() {
			if hb.GetNodeId() != "node-0001" {
				t.Fatalf("a heartbeat of %s, which sent none", hb.GetNodeId())
			}
			if hb.GetReachability() != fleetv1.Reachability_REACHABILITY_ONLINE || hb.GetLastHeartbeatAt() == nil ||
				len(hb.GetSamples()) != 1 || !proto.Equal(hb.GetSamples()[0], want) {
				t.Fatalf("heartbeat %v, want node-0001 ONLINE with its sample %v", hb, want)
			}
			return
		}
	}
}

// goroutines counts the goroutines running this package's code.
func goroutines() int {
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		panic(err)
	}
	return strings.Count(b.String(), "internal/watchclient.(*Stream).read") + strings.Count(b.String(), "internal/watchclient.decode")
}

// TestStreamEnds: a closed stream says it was cancelled, whatever it had
// read ahead; one the control plane ends gives its error, again on every
// later Recv; neither leaves a goroutine behind.
func TestStreamEnds(t *testing.T) {
	cp := fleetOf(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	s, err := Watch(ctx, cp.Ops, &controlplanev1.WatchFleetRequest{}, Message)
	if err != nil {
		t.Fatal(err)
	}
	// Not zero, or the count could not tell a leak.
	testutil.Eventually(t, "the stream's reader and decoders counted", func() bool { return goroutines() > 0 })
	untilComplete(t, s.Recv)
	// Changes read ahead, not yet taken.
	for i := range 3 {
		if _, err := cp.Ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: fmt.Sprintf("node-%04d", i), Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, "the changes read ahead", func() bool { return len(s.order) > 0 })
	s.Close()
	for range 2 {
		if _, err := s.Recv(); status.Code(err) != codes.Canceled {
			t.Fatalf("Recv after Close: %v, want Canceled", err)
		}
	}
	testutil.Eventually(t, "the closed stream's goroutines gone", func() bool { return goroutines() == 0 })

	// A connection of its own, which outlives the control plane.
	conn, err := rpcclient.Dial(cp.Target())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, err = Watch(ctx, controlplanev1.NewControlPlaneServiceClient(conn), &controlplanev1.WatchFleetRequest{}, Message)
	if err != nil {
		t.Fatal(err)
	}
	untilComplete(t, s.Recv)
	cp.Stop()
	_, err = s.Recv()
	for err == nil {
		_, err = s.Recv()
	}
	if code := status.Code(err); code != codes.Unavailable {
		t.Fatalf("a stream whose control plane stopped ended with %v, want Unavailable", err)
	}
	if _, again := s.Recv(); again != err {
		t.Fatalf("Recv after the end: %v, want the same %v", again, err)
	}
	testutil.Eventually(t, "the ended stream's goroutines gone", func() bool { return goroutines() == 0 })
}

// TestUndecodableMessage: a message that does not decode ends the stream
// with Internal, as gRPC's own stream reports it.
func TestUndecodableMessage(t *testing.T) {
	work := make(chan *message[*controlplanev1.WatchFleetResponse], 1)
	m := &message[*controlplanev1.WatchFleetResponse]{raw: mem.BufferSlice{mem.SliceBuffer([]byte{0xff, 0xff})}, done: make(chan struct{})}
	work <- m
	close(work)
	decodeAll(work, Message)
	<-m.done
	if status.Code(m.err) != codes.Internal || !strings.Contains(m.err.Error(), "failed to unmarshal") {
		t.Fatalf("an undecodable message gave %v, want Internal, failed to unmarshal", m.err)
	}
}
