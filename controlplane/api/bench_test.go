package api

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/watchclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	badgerstore "github.com/navarch/navarch/store/badger"
	"github.com/navarch/navarch/tui"
)

// benchSizes are the fleets the read benchmarks run on.
var benchSizes = []int{10000, 100000}

// benchFleets are the fleets built so far, by size, shared by the
// benchmarks of one run: building 100 000 nodes takes a while.
var benchFleets = struct {
	sync.Mutex
	by map[int]controlplanev1.ControlPlaneServiceClient
}{by: map[int]controlplanev1.ControlPlaneServiceClient{}}

// fleetClient is a ControlPlaneService client, over gRPC on loopback TCP
// with the server's codec, of a fleet of n eight-GPU nodes as the
// simulator registers them: labels, a full health report each, a
// heartbeat each, and an XID on one node in a hundred, which makes it
// UNHEALTHY and cordoned (the breaker holds back most of those).
func fleetClient(b testing.TB, n int) controlplanev1.ControlPlaneServiceClient {
	b.Helper()
	benchFleets.Lock()
	defer benchFleets.Unlock()
	if c, ok := benchFleets.by[n]; ok {
		return c
	}
	st, err := badgerstore.Open(badgerstore.Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	cfg := fleet.Config{
		HeartbeatInterval: 10 * time.Second, HealthReportInterval: 30 * time.Second, CommandPollTimeout: 30 * time.Second,
		CommandDelivery: nodev1.CommandDelivery_COMMAND_DELIVERY_LONG_POLL,
		StaleAfter:      30 * time.Second, OfflineAfter: 90 * time.Second, ProvisionTimeout: 5 * time.Minute,
		TerminatedRetention: time.Hour, AutoCordon: true, AutoCordonMaxFraction: 0.1, AutoCordonWindow: 5 * time.Minute,
		WatchBuffer: 65536, WatchReplay: 16384,
	}
	ctx := context.Background()
	f, err := fleet.New(ctx, fleet.Options{Config: cfg, Store: st, Clock: clockwork.NewFakeClock()})
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("node-%06d", i)
		if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{
			NodeId: id, Hostname: "gpu-" + id + ".dc1.example.com", Gpus: fleettest.GPUs(8),
			Labels:        map[string]string{"zone": fmt.Sprintf("zone-%d", i%4), "rack": fmt.Sprintf("r%03d", i/40), "sku": "h100"},
			DriverVersion: "550.54.15", CudaVersion: "12.4", AgentVersion: "0.18.0", BootId: "boot-1",
		}); err != nil {
			b.Fatal(err)
		}
		report := &nodev1.ReportHealthRequest{NodeId: id, GpuCount: 8}
		for g := range 8 {
			report.Metrics = append(report.Metrics, fleettest.CleanMetrics(uint32(g)))
		}
		if i%100 == 7 {
			report.Events = []*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: int32(i % 8)}}
		}
		if _, err := f.ReportHealth(ctx, report); err != nil {
			b.Fatal(err)
		}
		hb := &nodev1.HeartbeatRequest{NodeId: id}
		for g := range 8 {
			hb.Samples = append(hb.Samples, &fleetv1.GpuSample{GpuIndex: uint32(g), UtilizationGpuPercent: 90, TemperatureCelsius: 70, PowerUsageMilliwatts: 600000, MemoryUsedBytes: 60 << 30, ProcessCount: 1})
		}
		if _, err := f.Heartbeat(ctx, hb); err != nil {
			b.Fatal(err)
		}
	}
	codec := NewCodec()
	s := grpc.NewServer(grpc.ForceServerCodecV2(codec), grpc.ChainUnaryInterceptor((&Interceptors{Codec: codec}).Unary), grpc.ChainStreamInterceptor((&Interceptors{Codec: codec}).Stream))
	RegisterControlPlaneService(s, ControlPlaneOptions{Fleet: f, Power: f})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		b.Fatal(err)
	}
	// Kept for the rest of the run: the next benchmark reuses it.
	c := controlplanev1.NewControlPlaneServiceClient(conn)
	benchFleets.by[n] = c
	return c
}

// BenchmarkWatchSnapshot is a console's start: a WatchFleet stream opened
// after a change, so that it cannot share the last snapshot, read until
// its complete chunk arrives, over gRPC on loopback. With decode=full the
// client decodes every chunk on gRPC's reading goroutine, and with
// decode=cores on one goroutine a core, as a console does
// (internal/watchclient): the figure is the snapshot's time to a client.
// With decode=none it only counts the chunks, and the figure is the
// control plane's own: taking, encoding and sending the snapshot.
func BenchmarkWatchSnapshot(b *testing.B) {
	for _, n := range benchSizes {
		for _, decode := range []string{"full", "cores", "none"} {
			b.Run(fmt.Sprintf("nodes=%d/decode=%s", n, decode), func(b *testing.B) {
				c := fleetClient(b, n)
				ctx := context.Background()
				chunks := (n + 499) / 500
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					// A cordon is a change: the next stream takes a new snapshot.
					b.StopTimer()
					if _, err := c.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "node-000000", Reason: "bench"}); err != nil {
						b.Fatal(err)
					}
					if _, err := c.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: "node-000000", Reason: "bench"}); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					wctx, cancel := context.WithCancel(ctx)
					// recv returns how many nodes the next message carries, and
					// whether it completes the snapshot.
					var recv func() (int, bool, error)
					switch decode {
					case "cores":
						s, err := watchclient.Watch(wctx, c, &controlplanev1.WatchFleetRequest{}, tui.DecodeMessage)
						if err != nil {
							b.Fatal(err)
						}
						recv = func() (int, bool, error) {
							m, err := s.Recv()
							return m.SnapshotNodes(), m.SnapshotComplete(), err
						}
					default:
						var opts []grpc.CallOption
						if decode == "none" {
							opts = []grpc.CallOption{grpc.ForceCodecV2(countingCodec{})}
						}
						s, err := c.WatchFleet(wctx, &controlplanev1.WatchFleetRequest{}, opts...)
						if err != nil {
							b.Fatal(err)
						}
						recv = func() (int, bool, error) {
							m, err := s.Recv()
							return len(m.GetSnapshot().GetNodes()), m.GetSnapshot().GetComplete(), err
						}
					}
					nodes := 0
					for i := 0; ; i++ {
						got, complete, err := recv()
						if err != nil {
							b.Fatal(err)
						}
						nodes += got
						if complete || (decode == "none" && i == chunks-1) {
							break
						}
					}
					cancel()
					if decode != "none" && nodes != n {
						b.Fatalf("snapshot had %d nodes, want %d", nodes, n)
					}
				}
			})
		}
	}
}

// countingCodec encodes requests as protobuf and decodes nothing: a
// client that only counts the messages it is sent.
type countingCodec struct{}

func (countingCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(grpcproto.Name).Marshal(v)
}

func (countingCodec) Unmarshal(mem.BufferSlice, any) error { return nil }

func (countingCodec) Name() string { return grpcproto.Name }

// BenchmarkListNodes is one ListNodes page over gRPC on loopback: the
// first page, a page deep into the fleet (after half of it), and a page
// of the nodes one label selects.
func BenchmarkListNodes(b *testing.B) {
	for _, n := range benchSizes {
		for _, tc := range []struct {
			name string
			req  func() *controlplanev1.ListNodesRequest
		}{
			{"first-page", func() *controlplanev1.ListNodesRequest {
				return &controlplanev1.ListNodesRequest{PageSize: 100}
			}},
			{"middle-page", func() *controlplanev1.ListNodesRequest {
				return &controlplanev1.ListNodesRequest{PageSize: 100, PageToken: pageToken(fmt.Sprintf("node-%06d", n/2))}
			}},
			{"label-page", func() *controlplanev1.ListNodesRequest {
				return &controlplanev1.ListNodesRequest{PageSize: 100, LabelSelector: "zone=zone-1"}
			}},
			{"text-page", func() *controlplanev1.ListNodesRequest {
				return &controlplanev1.ListNodesRequest{PageSize: 100, Text: "R012"}
			}},
		} {
			b.Run(fmt.Sprintf("nodes=%d/%s", n, tc.name), func(b *testing.B) {
				c := fleetClient(b, n)
				ctx := context.Background()
				req := tc.req()
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					resp, err := c.ListNodes(ctx, req)
					if err != nil {
						b.Fatal(err)
					}
					if len(resp.GetNodes()) == 0 {
						b.Fatal("empty page")
					}
				}
			})
		}
	}
}

// TestListNodesPages: paging through a fleet with any page size and
// filter returns every matching node once, in id order, with the number of
// matches on every page, whatever order the fleet keeps its nodes in.
func TestListNodesPages(t *testing.T) {
	c := fleetClient(t, 300)
	ctx := context.Background()
	tests := []struct {
		name string
		req  *controlplanev1.ListNodesRequest
		want func(i int) bool
	}{
		{"all-by-one", &controlplanev1.ListNodesRequest{PageSize: 1}, func(int) bool { return true }},
		{"all-by-seven", &controlplanev1.ListNodesRequest{PageSize: 7}, func(int) bool { return true }},
		{"all-in-one", &controlplanev1.ListNodesRequest{PageSize: 1000}, func(int) bool { return true }},
		{"label", &controlplanev1.ListNodesRequest{PageSize: 9, LabelSelector: "zone=zone-1"}, func(i int) bool { return i%4 == 1 }},
		{"text-any-case", &controlplanev1.ListNodesRequest{PageSize: 11, Text: "R003"}, func(i int) bool { return i/40 == 3 }},
		{"text-across-a-label", &controlplanev1.ListNodesRequest{PageSize: 5, Text: "CK=R001"}, func(i int) bool { return i/40 == 1 }},
		{"unhealthy", &controlplanev1.ListNodesRequest{PageSize: 2, Health: []fleetv1.HealthStatus{fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY}}, func(i int) bool { return i%100 == 7 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			for i := range 300 {
				if tt.want(i) {
					want = append(want, fmt.Sprintf("node-%06d", i))
				}
			}
			var got []string
			req := tt.req
			for {
				resp, err := c.ListNodes(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				if int(resp.GetTotalSize()) != len(want) {
					t.Fatalf("total %d, want %d", resp.GetTotalSize(), len(want))
				}
				if len(resp.GetNodes()) > int(req.GetPageSize()) {
					t.Fatalf("page of %d nodes, asked for %d", len(resp.GetNodes()), req.GetPageSize())
				}
				for _, n := range resp.GetNodes() {
					got = append(got, n.GetNodeId())
				}
				if resp.GetNextPageToken() == "" {
					break
				}
				req = proto.CloneOf(req)
				req.PageToken = resp.GetNextPageToken()
			}
			if !slices.Equal(got, want) {
				t.Fatalf("paged %d nodes %v, want %d %v", len(got), got, len(want), want)
			}
		})
	}
}
