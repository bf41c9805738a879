package healthdelta

import (
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// BenchmarkKeptPerNode is the memory a control plane keeps per 8-GPU node
// for its latest snapshot (18 links and one process per GPU): the encoded
// report it kept before, and a Held now. Each GPU's ECC counts are the
// node's own in "distinct", so that no two GPUs' parts are equal.
func BenchmarkKeptPerNode(b *testing.B) {
	const nodes = 20000
	t0 := time.Unix(1_700_000_000, 0)
	snapshot := func(node int, distinct bool) []*fleetv1.GpuMetrics {
		return reading(t0, func(i int, m *fleetv1.GpuMetrics) {
			m.Unsupported = []string{"retired_pages"}
			if distinct {
				m.Ecc = &fleetv1.EccCounts{AggregateCorrected: uint64(node*8 + i + 1)}
			}
		})
	}
	for _, tt := range []struct {
		name     string
		distinct bool
		keep     func([]*fleetv1.GpuMetrics) any
	}{
		{"encoded-report", false, func(m []*fleetv1.GpuMetrics) any {
			b, _ := proto.Marshal(&nodev1.ReportHealthRequest{Metrics: m})
			return b
		}},
		{"held", false, func(m []*fleetv1.GpuMetrics) any { return Full(1, m) }},
		{"encoded-report-distinct", true, func(m []*fleetv1.GpuMetrics) any {
			b, _ := proto.Marshal(&nodev1.ReportHealthRequest{Metrics: m})
			return b
		}},
		{"held-distinct", true, func(m []*fleetv1.GpuMetrics) any { return Full(1, m) }},
	} {
		b.Run(tt.name, func(b *testing.B) {
			for b.Loop() {
				kept := make([]any, nodes)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := range kept {
					// The messages a report decodes into: what the held
					// state shares is counted, the rest is garbage.
					kept[i] = tt.keep(snapshot(i, tt.distinct))
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/nodes, "B/node")
				runtime.KeepAlive(kept)
			}
		})
	}
}
