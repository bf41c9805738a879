package api

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// reportNodes is the fleet as NodeService sees it; it counts the reports
// that got past the checks.
type reportNodes struct {
	Nodes
	reports int
}

func (f *reportNodes) ReportHealth(context.Context, *nodev1.ReportHealthRequest) (*nodev1.ReportHealthResponse, error) {
	f.reports++
	return &nodev1.ReportHealthResponse{}, nil
}

// delta is a valid delta of n GPUs on base 10, each entry replacing ECC.
func delta(n int) *nodev1.ReportHealthRequest {
	req := &nodev1.ReportHealthRequest{NodeId: "n1", Sequence: 11, BaseSequence: 10}
	for i := range n {
		req.MetricChanges = append(req.MetricChanges, &nodev1.GpuMetricsDelta{
			Metrics: &fleetv1.GpuMetrics{
				GpuIndex: uint32(i), Time: timestamppb.New(time.Unix(1_700_000_000, 0)),
				Ecc:     &fleetv1.EccCounts{VolatileCorrected: 1},
				Nvlinks: []*fleetv1.NvLinkState{{Link: 0}, {Link: 17}},
			},
			Replaced: []nodev1.GpuMetricsPart{nodev1.GpuMetricsPart_GPU_METRICS_PART_ECC},
		})
	}
	return req
}

// TestReportMetrics: a report's metrics are a full snapshot or a delta on
// a named base, one entry per GPU, each in range and sending only the
// parts it names, or the report is refused naming the field.
func TestReportMetrics(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *nodev1.ReportHealthRequest)
		field  string // empty: accepted
	}{
		{"valid-delta", func(*nodev1.ReportHealthRequest) {}, ""},
		{"full-and-delta", func(r *nodev1.ReportHealthRequest) { r.Metrics = []*fleetv1.GpuMetrics{{}} }, "metric_changes"},
		{"too-many", func(r *nodev1.ReportHealthRequest) { r.MetricChanges = delta(MaxGPUs + 1).MetricChanges }, "metric_changes"},
		{"no-base", func(r *nodev1.ReportHealthRequest) { r.BaseSequence = 0 }, "base_sequence"},
		{"base-without-delta", func(r *nodev1.ReportHealthRequest) { r.MetricChanges = nil }, "base_sequence"},
		{"sequence-not-above-base", func(r *nodev1.ReportHealthRequest) { r.Sequence = 10 }, "sequence"},
		{"no-metrics", func(r *nodev1.ReportHealthRequest) { r.MetricChanges[1].Metrics = nil }, "metric_changes[1].metrics"},
		{"duplicate-gpu", func(r *nodev1.ReportHealthRequest) { r.MetricChanges[2].Metrics.GpuIndex = 0 }, "metric_changes[2].metrics.gpu_index"},
		{"gpu-past-limit", func(r *nodev1.ReportHealthRequest) { r.MetricChanges[0].Metrics.GpuIndex = MaxGPUs }, "metric_changes[0].metrics.gpu_index"},
		{"link-past-limit", func(r *nodev1.ReportHealthRequest) { r.MetricChanges[1].Metrics.Nvlinks[1].Link = 64 }, "metric_changes[1].metrics.nvlinks[1].link"},
		{"duplicate-link", func(r *nodev1.ReportHealthRequest) { r.MetricChanges[1].Metrics.Nvlinks[1].Link = 0 }, "metric_changes[1].metrics.nvlinks[1].link"},
		{"unknown-part", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges[0].Replaced = append(r.MetricChanges[0].Replaced, 99)
		}, "metric_changes[0].replaced[1]"},
		{"unspecified-part", func(r *nodev1.ReportHealthRequest) { r.MetricChanges[0].Replaced[0] = 0 }, "metric_changes[0].replaced[0]"},
		{"ecc-not-named", func(r *nodev1.ReportHealthRequest) { r.MetricChanges[2].Replaced = nil }, "metric_changes[2].metrics.ecc"},
		{"row-remap-not-named", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges[0].Metrics.RowRemap = &fleetv1.RowRemapState{}
		}, "metric_changes[0].metrics.row_remap"},
		{"retired-pages-not-named", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges[0].Metrics.RetiredPages = &fleetv1.RetiredPages{}
		}, "metric_changes[0].metrics.retired_pages"},
		{"processes-not-named", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges[1].Metrics.Processes = []*fleetv1.GpuProcess{{Pid: 1}}
		}, "metric_changes[1].metrics.processes"},
		{"unsupported-not-named", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges[1].Metrics.Unsupported = []string{"ecc"}
		}, "metric_changes[1].metrics.unsupported"},
		{"process-name-not-utf8", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges[1].Metrics.Processes = []*fleetv1.GpuProcess{{Pid: 1, Name: "python"}, {Pid: 2, Name: "bad \xff"}}
			r.MetricChanges[1].Replaced = append(r.MetricChanges[1].Replaced, nodev1.GpuMetricsPart_GPU_METRICS_PART_PROCESSES)
		}, "metric_changes[1].metrics.processes[1].name"},
		{"unsupported-too-long", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges[3].Metrics.Unsupported = []string{strings.Repeat("x", 65)}
			r.MetricChanges[3].Replaced = append(r.MetricChanges[3].Replaced, nodev1.GpuMetricsPart_GPU_METRICS_PART_UNSUPPORTED)
		}, "metric_changes[3].metrics.unsupported[0]"},
		{"time-out-of-range", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges[2].Metrics.Time = &timestamppb.Timestamp{Seconds: -1 << 62}
		}, "metric_changes[2].metrics.time"},
		{"full-entry-utilization", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges, r.BaseSequence = nil, 0
			r.Metrics = []*fleetv1.GpuMetrics{{GpuIndex: 0}, {GpuIndex: 1, UtilizationGpuPercent: 101}}
		}, "metrics[1].utilization_gpu_percent"},
		{"full-entry-duplicate-gpu", func(r *nodev1.ReportHealthRequest) {
			r.MetricChanges, r.BaseSequence = nil, 0
			r.Metrics = []*fleetv1.GpuMetrics{{GpuIndex: 0}, {GpuIndex: 0}}
		}, "metrics[1].gpu_index"},
		{"every-part-named", func(r *nodev1.ReportHealthRequest) {
			m := r.MetricChanges[1].Metrics
			m.RowRemap, m.RetiredPages, m.Processes, m.Unsupported = &fleetv1.RowRemapState{}, &fleetv1.RetiredPages{}, []*fleetv1.GpuProcess{{Pid: 1}}, []string{"ecc"}
			r.MetricChanges[1].Replaced = []nodev1.GpuMetricsPart{
				nodev1.GpuMetricsPart_GPU_METRICS_PART_ECC, nodev1.GpuMetricsPart_GPU_METRICS_PART_ROW_REMAP,
				nodev1.GpuMetricsPart_GPU_METRICS_PART_RETIRED_PAGES, nodev1.GpuMetricsPart_GPU_METRICS_PART_PROCESSES,
				nodev1.GpuMetricsPart_GPU_METRICS_PART_UNSUPPORTED,
			}
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fleet := &reportNodes{}
			svc := &nodeService{fleet: fleet}
			req := delta(4)
			tt.change(req)
			_, err := svc.ReportHealth(context.Background(), req)
			if tt.field == "" {
				if err != nil || fleet.reports != 1 {
					t.Fatalf("got %v with %d reports taken, want it taken", err, fleet.reports)
				}
				return
			}
			if field, _ := apierr.Field(err); status.Code(err) != codes.InvalidArgument || field != tt.field {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, tt.field)
			}
			if fleet.reports != 0 {
				t.Fatal("a refused report reached the fleet")
			}
		})
	}
}

// BenchmarkCheckReportMetrics: validating the usual delta of an 8-GPU
// node (each GPU's scalars, one part replaced) and a full snapshot with
// 18 NVLink links, a process and an unsupported group per GPU. A valid
// report builds no field names.
func BenchmarkCheckReportMetrics(b *testing.B) {
	full := &nodev1.ReportHealthRequest{NodeId: "n1", Sequence: 1}
	for i := range 8 {
		m := &fleetv1.GpuMetrics{GpuIndex: uint32(i), Time: timestamppb.New(time.Unix(1_700_000_000, 0)),
			Ecc: &fleetv1.EccCounts{}, Processes: []*fleetv1.GpuProcess{{Pid: 7, Name: "python"}}, Unsupported: []string{"retired_pages"}}
		for l := range 18 {
			m.Nvlinks = append(m.Nvlinks, &fleetv1.NvLinkState{Link: uint32(l)})
		}
		full.Metrics = append(full.Metrics, m)
	}
	for _, bc := range []struct {
		name string
		req  *nodev1.ReportHealthRequest
	}{{"delta", delta(8)}, {"full", full}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := checkReportMetrics(bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
