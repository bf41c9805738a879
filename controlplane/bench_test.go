package controlplane

import (
	"context"
	"fmt"
	"testing"

	"github.com/jonboulle/clockwork"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	badgerstore "github.com/navarch/navarch/store/badger"
)

// benchFleet is a Fleet on a real Badger store with n registered 8-GPU
// nodes that have reported once; no gRPC, so the figures are the fleet's
// own work per call.
func benchFleet(b *testing.B, n int) *Fleet {
	b.Helper()
	st, err := badgerstore.Open(badgerstore.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	cfg := Defaults()
	cfg.DataDir = b.TempDir()
	f, err := NewFleet(context.Background(), FleetOptions{Config: cfg, Store: st, Clock: clockwork.NewFakeClock()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	ctx := context.Background()
	for i := range n {
		id := fmt.Sprintf("node-%06d", i)
		if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: gpus(8)}); err != nil {
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
		req.Metrics = append(req.Metrics, cleanMetrics(uint32(i)))
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

// BenchmarkWatchFanOut publishes one change to 100 watchers.
func BenchmarkWatchFanOut(b *testing.B) {
	f := benchFleet(b, 10)
	for range 100 {
		w, _, _ := f.hub.subscribe(0, f.all)
		go func() {
			for {
				ch, lagged := f.hub.queue(w)
				select {
				case <-ch:
				case <-lagged:
					f.hub.resync(w, f.all)
				case <-f.hub.done:
					return
				}
			}
		}()
	}
	n := f.view(f.get("node-000000"))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f.hub.publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: n}})
		})
	}
}

// BenchmarkSnapshot builds the views of a 10 000-node snapshot.
func BenchmarkSnapshot(b *testing.B) {
	f := benchFleet(b, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		w, st, _ := f.hub.subscribe(0, f.all)
		for _, e := range st.snapshot {
			_ = e.ns.viewOf(e.node, e.reach, false)
		}
		f.hub.unsubscribe(w)
	}
}
