package fleet

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/fleettest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// benchFleet is a Fleet on a real Badger store with n registered 8-GPU
// nodes that have reported once; no gRPC, so the figures are the fleet's
// own work per call.
func benchFleet(b testing.TB, n int) *Fleet {
	b.Helper()
	f := newFleet(b, Options{Clock: clockwork.NewFakeClock()})
	b.Cleanup(f.Close)
	ctx := context.Background()
	for i := range n {
		id := fmt.Sprintf("node-%06d", i)
		if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: fleettest.GPUs(8)}); err != nil {
			b.Fatal(err)
		}
		if _, err := f.ReportHealth(ctx, report(id)); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

func report(id string) *nodev1.ReportHealthRequest {
	req := &nodev1.ReportHealthRequest{NodeId: id, GpuCount: 8}
	for i := range 8 {
		req.Metrics = append(req.Metrics, fleettest.CleanMetrics(uint32(i)))
	}
	return req
}

func heartbeat(id string) *nodev1.HeartbeatRequest {
	req := &nodev1.HeartbeatRequest{NodeId: id}
	for i := range 8 {
		req.Samples = append(req.Samples, &fleetv1.GpuSample{GpuIndex: uint32(i), UtilizationGpuPercent: 90, TemperatureCelsius: 70, PowerUsageMilliwatts: 600000})
	}
	return req
}

// BenchmarkHeartbeat is the fleet's work for one heartbeat, from many
// nodes at once.
func BenchmarkHeartbeat(b *testing.B) {
	f := benchFleet(b, 1000)
	parallel(b, func(ctx context.Context, i int) error {
		_, err := f.Heartbeat(ctx, heartbeats[i%len(heartbeats)])
		return err
	})
}

// Requests made once, for the benchmarks to replay.
var heartbeats, reports = func() (hb []*nodev1.HeartbeatRequest, rep []*nodev1.ReportHealthRequest) {
	for i := range 1000 {
		hb = append(hb, heartbeat(fmt.Sprintf("node-%06d", i)))
		rep = append(rep, report(fmt.Sprintf("node-%06d", i)))
	}
	return hb, rep
}()

// parallel runs call from every benchmark goroutine, with a counter of the
// calls each has made.
func parallel(b *testing.B, call func(ctx context.Context, i int) error) {
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if err := call(ctx, i); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkReportHealth is a periodic snapshot that changes nothing.
func BenchmarkReportHealth(b *testing.B) {
	f := benchFleet(b, 1000)
	parallel(b, func(ctx context.Context, i int) error {
		_, err := f.ReportHealth(ctx, reports[i%len(reports)])
		return err
	})
}

// BenchmarkReportXID is an XID event: judged, written to disk (synced),
// published.
func BenchmarkReportXID(b *testing.B) {
	f := benchFleet(b, 1000)
	parallel(b, func(ctx context.Context, i int) error {
		_, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: fmt.Sprintf("node-%06d", i%1000), Events: []*fleetv1.HealthEvent{
			{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13, GpuIndex: int32(i % 8)},
		}})
		return err
	})
}

// BenchmarkNodeHeartbeatEncoding is what a watching console's heartbeat
// flush encodes for one node that heartbeated: its id, reachability, time
// and eight GPU samples, 10 000 a second at 100 000 nodes.
func BenchmarkNodeHeartbeatEncoding(b *testing.B) {
	f := benchFleet(b, 1000)
	ctx := context.Background()
	nodes := make([]*nodeState, len(heartbeats))
	for i, hb := range heartbeats {
		if _, err := f.Heartbeat(ctx, hb); err != nil {
			b.Fatal(err)
		}
		nodes[i] = f.get(hb.GetNodeId())
	}
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		var ok bool
		if buf, ok = nodes[i%len(nodes)].AppendHeartbeat(buf[:0]); !ok || len(buf) < 8*10 {
			b.Fatalf("heartbeat data %x", buf)
		}
	}
}

// BenchmarkNodeMemory is what the fleet keeps for each 8-GPU node once
// the node has registered (its own GPU UUIDs, serials and bus ids,
// labels and versions, decoded from the wire), sent a full report and 30 heartbeats (a full
// history) and been taken into a snapshot (its kept encoding): the heap
// and the number of heap objects a node, which is what the collector
// marks on every cycle. At 100 000 nodes this is the fleet's part of the
// control plane's memory, beside gRPC's. The watch hub's replay of recent
// changes, whose size is bounded whatever the fleet's, is kept small and
// filled before the count starts, so that it is not counted.
func BenchmarkNodeMemory(b *testing.B) {
	const warm, nodes = 100, 2000
	for b.Loop() {
		cfg := testConfig()
		cfg.WatchReplay = 64
		f := newFleet(b, Options{Config: cfg, Clock: clockwork.NewFakeClock()})
		ctx := context.Background()
		add := func(n int) {
			id := fmt.Sprintf("node-%06d", n)
			gpus := fleettest.GPUs(8)
			for i, g := range gpus {
				g.Uuid = fmt.Sprintf("GPU-%08x-%04x-4a5b-8c9d-%012x", n, i, n*8+i)
				g.Serial = fmt.Sprintf("1654%09d", n*8+i)
				g.PciBusId = fmt.Sprintf("00000000:%02X:00.0", 0x18+i*0x10)
			}
			// Decoded from its encoding, as gRPC hands it over: every
			// string of its own.
			wire, err := proto.Marshal(&nodev1.RegisterNodeRequest{
				NodeId: id, Hostname: "gpu-" + id + ".dc1.example.com", Gpus: gpus,
				Labels:        map[string]string{"zone": fmt.Sprintf("zone-%d", n%4), "rack": fmt.Sprintf("r%03d", n/40), "sku": "h100"},
				DriverVersion: "550.54.15", CudaVersion: "12.4", AgentVersion: "0.18.0", BootId: "boot-1",
			})
			if err != nil {
				b.Fatal(err)
			}
			req := &nodev1.RegisterNodeRequest{}
			if err := proto.Unmarshal(wire, req); err != nil {
				b.Fatal(err)
			}
			if _, err := f.Register(ctx, req); err != nil {
				b.Fatal(err)
			}
			if _, err := f.ReportHealth(ctx, report(id)); err != nil {
				b.Fatal(err)
			}
			for range historyLen {
				if _, err := f.Heartbeat(ctx, heartbeat(id)); err != nil {
					b.Fatal(err)
				}
			}
			ns := f.get(id)
			if _, err := ns.AppendView(nil, ns.node.Load(), ns.reachability()); err != nil {
				b.Fatal(err)
			}
		}
		for n := range warm {
			add(n)
		}
		heapBefore, objectsBefore := heapAfterGC()
		for n := range nodes {
			add(warm + n)
		}
		heap, objects := heapAfterGC()
		b.ReportMetric(float64(heap-heapBefore)/nodes, "heap-B/node")
		b.ReportMetric(float64(objects-objectsBefore)/nodes, "objects/node")
		runtime.KeepAlive(f)
		f.Close()
	}
}

// heapAfterGC is the live heap in bytes and objects once the collector
// has run.
func heapAfterGC() (bytes, objects int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.HeapObjects)
}
