package fleet

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/healthdelta"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// BenchmarkReportHealthWire is a periodic report of a quiet 8-GPU node
// (18 links per GPU) that changes nothing, decoded from its wire bytes as
// gRPC does and then taken by the fleet: a full snapshot, as agents sent
// every report before, and the delta they send now. The fleet does not
// check that sequences rise (the API does), so each node's one encoded
// delta, numbered as its base, is replayed.
func BenchmarkReportHealthWire(b *testing.B) {
	for _, kind := range []string{"full", "delta"} {
		b.Run(kind, func(b *testing.B) {
			f := benchFleet(b, 1000)
			ctx := context.Background()
			wires := make([][]byte, 1000)
			for i := range wires {
				id := fmt.Sprintf("node-%06d", i)
				full := report(id)
				full.Sequence = 2
				if _, err := f.ReportHealth(ctx, full); err != nil {
					b.Fatal(err)
				}
				req := report(id)
				if kind == "delta" {
					req = &nodev1.ReportHealthRequest{NodeId: id, GpuCount: 8, Sequence: 2, BaseSequence: 2,
						MetricChanges: healthdelta.Diff(healthdelta.Full(2, report(id).GetMetrics()), report(id).GetMetrics())}
				}
				w, err := proto.Marshal(req)
				if err != nil {
					b.Fatal(err)
				}
				wires[i] = w
			}
			b.ReportMetric(float64(len(wires[0])), "wire-bytes/op")
			parallel(b, func(ctx context.Context, i int) error {
				req := &nodev1.ReportHealthRequest{}
				if err := proto.Unmarshal(wires[i%len(wires)], req); err != nil {
					return err
				}
				resp, err := f.ReportHealth(ctx, req)
				if err == nil && resp.GetFullSnapshotWanted() {
					err = fmt.Errorf("report %d refused", i)
				}
				return err
			})
		})
	}
}
