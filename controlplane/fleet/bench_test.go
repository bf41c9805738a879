package fleet

import (
	"context"
	"fmt"
	"testing"

	"github.com/jonboulle/clockwork"

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
