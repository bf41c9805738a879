package watch

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	grpcencoding "google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

func init() { grpcencoding.RegisterCodecV2(jsonCodec{}) }

// jsonCodec is a codec other than protobuf's, which writes out a
// message's fields and drops its unknown ones.
type jsonCodec struct{}

func (jsonCodec) Name() string { return "json" }

func (jsonCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := protojson.Marshal(v.(proto.Message))
	if err != nil {
		return nil, fmt.Errorf("marshal json: %w", err)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (jsonCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := protojson.Unmarshal(data.Materialize(), v.(proto.Message)); err != nil {
		return fmt.Errorf("unmarshal json: %w", err)
	}
	return nil
}

// dialGRPC connects to lis, ready, until the test ends.
func dialGRPC(t *testing.T, lis *bufconn.Listener) controlplanev1.ControlPlaneServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	conn.Connect()
	testutil.Eventually(t, "the connection to be ready", func() bool { return conn.GetState() == connectivity.Ready })
	return controlplanev1.NewControlPlaneServiceClient(conn)
}

// watchService serves WatchFleet from a hub, as the API does.
type watchService struct {
	controlplanev1.UnimplementedControlPlaneServiceServer
	hub *Hub
}

func (s watchService) WatchFleet(req *controlplanev1.WatchFleetRequest, stream controlplanev1.ControlPlaneService_WatchFleetServer) error {
	return s.hub.Serve(stream.Context(), req.GetSinceRevision(), stream)
}

// serveGRPC serves h's WatchFleet on lis until the test ends.
func serveGRPC(t testing.TB, h *Hub, lis net.Listener) {
	t.Helper()
	s := grpc.NewServer()
	controlplanev1.RegisterControlPlaneServiceServer(s, watchService{hub: h})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
}

// hubOverGRPC serves a hub on f over gRPC, on an in-memory connection,
// and returns it with a client of it, until the test ends.
func hubOverGRPC(t *testing.T, f *fakeFleet) (*Hub, controlplanev1.ControlPlaneServiceClient) {
	t.Helper()
	h := newHub(t, f, Options{Buffer: 64, Replay: 64})
	lis := bufconn.Listen(1 << 20)
	serveGRPC(t, h, lis)
	return h, dialGRPC(t, lis)
}

// recvSnapshot reads a stream's messages up to its complete snapshot.
func recvSnapshot(t *testing.T, stream controlplanev1.ControlPlaneService_WatchFleetClient) []*controlplanev1.WatchFleetResponse {
	t.Helper()
	var chunks []*controlplanev1.WatchFleetResponse
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("receive the snapshot: %v", err)
		}
		chunks = append(chunks, m)
		if m.GetSnapshot().GetComplete() {
			return chunks
		}
	}
}

// TestGRPCSharesEncodedChunks: over gRPC, streams that start together are
// sent each snapshot chunk encoded once per encoding: two plain streams
// and one that names the protobuf codec share one encoding, a gzip stream
// gets its own, and every stream reads
// the same snapshot, the chunks a stream in this process is sent.
func TestGRPCSharesEncodedChunks(t *testing.T) {
	f := fleetOf(1201)
	h, client := hubOverGRPC(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var snapshots [][]*controlplanev1.WatchFleetResponse
	// The third names the protobuf codec, as a client that forces gRPC's
	// codec does: it shares the plain streams' encoding.
	for _, opts := range [][]grpc.CallOption{nil, nil, {grpc.CallContentSubtype("proto")}, {grpc.UseCompressor(gzip.Name)}} {
		stream, err := client.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{}, opts...)
		if err != nil {
			t.Fatalf("open a stream: %v", err)
		}
		snapshots = append(snapshots, recvSnapshot(t, stream))
	}
	for i, chunks := range snapshots {
		if len(chunks) != 3 || !chunks[2].GetSnapshot().GetComplete() || chunks[2].GetSnapshot().GetSummary().GetNodes() != 1201 {
			t.Fatalf("stream %d read %d chunks, want 3 with the totals last", i, len(chunks))
		}
		for j := range chunks {
			if !proto.Equal(chunks[j], snapshots[0][j]) {
				t.Fatalf("stream %d read a chunk %d unlike the first stream's", i, j)
			}
		}
	}

	h.mu.Lock()
	s := h.snap
	h.mu.Unlock()
	if s.chunks != nil {
		t.Fatal("a stream was sent the chunks as messages, not as shared encodings")
	}
	for j, m := range s.messages(f) {
		if !proto.Equal(m, snapshots[0][j]) {
			t.Fatalf("chunk %d over gRPC is\n%v\nnot the chunk as a message\n%v", j, snapshots[0][j], m)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.encoded) != 2 {
		t.Fatalf("chunks encoded in %d ways, want 2 (plain, gzip): %v", len(s.encoded), s.encoded)
	}
	for enc, chunks := range s.encoded {
		if enc.compressor != "" && enc.compressor != gzip.Name {
			t.Fatalf("encoded for compressor %q", enc.compressor)
		}
		for i, slot := range chunks {
			if slot.p == nil {
				t.Fatalf("chunk %d of encoding %v was not encoded", i, enc)
			}
		}
	}
}

// TestGRPCOtherCodecGetsMessages: a stream of another codec than
// protobuf's is sent the chunks as messages, which its codec encodes,
// not the protobuf chunks shared between protobuf streams.
func TestGRPCOtherCodecGetsMessages(t *testing.T) {
	f := fleetOf(1201)
	h, client := hubOverGRPC(t, f)
	// Chunks the codec cannot write out arrive empty, never complete.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	stream, err := client.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{}, grpc.CallContentSubtype(jsonCodec{}.Name()))
	if err != nil {
		t.Fatalf("open a stream: %v", err)
	}
	got := recvSnapshot(t, stream)
	h.mu.Lock()
	s := h.snap
	h.mu.Unlock()
	want := s.messages(f)
	if len(got) != len(want) {
		t.Fatalf("read %d chunks, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("chunk %d in json is\n%v\nnot the chunk as a message\n%v", i, got[i], want[i])
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.encoded) != 0 {
		t.Fatalf("chunks encoded for a json stream: %v", s.encoded)
	}
}

// TestGRPCHeartbeatBatches: over gRPC, a flush's heartbeat batches, which
// protobuf streams are sent as the hub encoded them, decode to every
// node's latest heartbeat at the hub's revision, for a plain stream, a
// gzip stream and a stream of another codec alike.
func TestGRPCHeartbeatBatches(t *testing.T) {
	const nodes = heartbeatBatchSize + 200
	f := fleetOf(nodes)
	h, client := hubOverGRPC(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var streams []controlplanev1.ControlPlaneService_WatchFleetClient
	for _, opts := range [][]grpc.CallOption{nil, {grpc.UseCompressor(gzip.Name)}, {grpc.CallContentSubtype(jsonCodec{}.Name())}} {
		stream, err := client.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{}, opts...)
		if err != nil {
			t.Fatalf("open a stream: %v", err)
		}
		recvSnapshot(t, stream)
		streams = append(streams, stream)
	}
	for i, n := range f.nodes {
		f.beat(h, n.state.GetNodeId(), uint32(i%100))
	}
	h.Flush()
	for i, stream := range streams {
		got := map[string]uint32{}
		for len(got) < nodes {
			m, err := stream.Recv()
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			if m.GetHeartbeats() == nil {
				continue // the totals
			}
			if m.GetRevision() != h.Revision() {
				t.Fatalf("stream %d: heartbeats at revision %d, want %d", i, m.GetRevision(), h.Revision())
			}
			for _, hb := range m.GetHeartbeats().GetHeartbeats() {
				if _, twice := got[hb.GetNodeId()]; twice || hb.GetReachability() != online || len(hb.GetSamples()) != 1 {
					t.Fatalf("stream %d: entry %v", i, hb)
				}
				got[hb.GetNodeId()] = hb.GetSamples()[0].GetUtilizationGpuPercent()
			}
		}
		for j, n := range f.nodes {
			if u, ok := got[n.state.GetNodeId()]; !ok || u != uint32(j%100) {
				t.Fatalf("stream %d: %s's heartbeat carried %d (%v), want %d", i, n.state.GetNodeId(), u, ok, j%100)
			}
		}
	}
}

// TestGRPCCancelMidSnapshotEndsGoroutines: a client that goes away while
// its snapshot is being sent leaves no goroutine behind, neither its
// stream's nor the one encoding the next chunk.
func TestGRPCCancelMidSnapshotEndsGoroutines(t *testing.T) {
	// Far more than a stream's flow-control window, so that the server is
	// still sending when the client goes.
	f := fleetOf(50 * SnapshotChunk)
	h, client := hubOverGRPC(t, f)
	before := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	stream, err := client.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		t.Fatalf("open a stream: %v", err)
	}
	m, err := stream.Recv()
	if err != nil {
		t.Fatalf("receive the first chunk: %v", err)
	}
	if m.GetSnapshot().GetComplete() {
		t.Fatal("the first chunk is the last: the snapshot is too small to cancel midway")
	}
	cancel()
	testutil.Eventually(t, "the stream's watcher to leave", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.watchers) == 0
	})
	testutil.Eventually(t, fmt.Sprintf("goroutines back to %d", before), func() bool {
		return runtime.NumGoroutine() <= before
	})
}
