package controlplane_test

import (
	"testing"

	"github.com/navarch/navarch/internal/fleettest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestNodeMetricsShowTheNewestSample checks that GetNode's GPU metrics are
// the newest the control plane heard, whether from a full report or a
// heartbeat, so the numbers agree with the sparklines drawn from the same
// heartbeats.
func TestNodeMetricsShowTheNewestSample(t *testing.T) {
	report := func(h *harness) {
		m := fleettest.CleanMetrics(0)
		m.TemperatureCelsius, m.UtilizationGpuPercent, m.PowerUsageMilliwatts, m.MemoryUsedBytes = 32, 10, 100_000, 1<<30
		m.Processes = []*fleetv1.GpuProcess{{Pid: 11}, {Pid: 12}}
		if _, err := h.node.ReportHealth(ctxT(h.t), &nodev1.ReportHealthRequest{NodeId: "n1", Metrics: []*fleetv1.GpuMetrics{m}, GpuCount: 1}); err != nil {
			h.t.Fatalf("report: %v", err)
		}
	}
	heartbeat := func(h *harness) {
		s := &fleetv1.GpuSample{GpuIndex: 0, TemperatureCelsius: 97, UtilizationGpuPercent: 99, PowerUsageMilliwatts: 650_000, MemoryUsedBytes: 70 << 30}
		if _, err := h.node.Heartbeat(ctxT(h.t), &nodev1.HeartbeatRequest{NodeId: "n1", Samples: []*fleetv1.GpuSample{s}}); err != nil {
			h.t.Fatalf("heartbeat: %v", err)
		}
	}
	type want struct {
		temp, util, power uint32
		mem               uint64
		procs             int
	}
	fromReport := want{temp: 32, util: 10, power: 100_000, mem: 1 << 30, procs: 2}
	fromHeartbeat := want{temp: 97, util: 99, power: 650_000, mem: 70 << 30, procs: 0}
	tests := []struct {
		name  string
		steps []func(*harness)
		want  want
	}{
		{name: "report-only", steps: []func(*harness){report}, want: fromReport},
		{name: "heartbeat-after-report", steps: []func(*harness){report, heartbeat}, want: fromHeartbeat},
		{name: "report-after-heartbeat", steps: []func(*harness){heartbeat, report}, want: fromReport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.register("n1", 1)
			for _, step := range tt.steps {
				step(h)
			}
			m := h.get("n1").GetNode().GetGpus()[0].GetMetrics()
			got := want{temp: m.GetTemperatureCelsius(), util: m.GetUtilizationGpuPercent(), power: m.GetPowerUsageMilliwatts(), mem: m.GetMemoryUsedBytes(), procs: len(m.GetProcesses())}
			if got != tt.want {
				t.Errorf("GetNode's metrics = %+v, want %+v", got, tt.want)
			}
			if len(m.GetNvlinks()) != 18 {
				t.Errorf("GetNode's metrics have %d NVLinks, want the report's 18", len(m.GetNvlinks()))
			}
		})
	}
}
