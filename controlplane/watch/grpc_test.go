package watch

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

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
// share one encoding, a gzip stream gets its own, and every stream reads
// the same snapshot, the chunks a stream in this process is sent.
func TestGRPCSharesEncodedChunks(t *testing.T) {
	f := fleetOf(1201)
	h := newHub(t, f, Options{Buffer: 64, Replay: 64})
	lis := bufconn.Listen(1 << 20)
	serveGRPC(t, h, lis)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := controlplanev1.NewControlPlaneServiceClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var snapshots [][]*controlplanev1.WatchFleetResponse
	for _, opts := range [][]grpc.CallOption{nil, nil, {grpc.UseCompressor(gzip.Name)}} {
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
