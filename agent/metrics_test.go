package agent

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent/gpu"
	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// scrape is one gather of an agent's metrics, by family name.
type scrape map[string]*dto.MetricFamily

func gather(t *testing.T, a *Agent) scrape {
	t.Helper()
	mfs, err := a.Metrics().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	s := make(scrape)
	for _, mf := range mfs {
		s[mf.GetName()] = mf
	}
	return s
}

func labelsOf(m *dto.Metric) map[string]string {
	out := make(map[string]string)
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// series is the metric of family name whose labels include want.
func (s scrape) series(name string, want map[string]string) (*dto.Metric, bool) {
	for _, m := range s[name].GetMetric() {
		got := labelsOf(m)
		match := true
		for k, v := range want {
			match = match && got[k] == v
		}
		if match {
			return m, true
		}
	}
	return nil, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// gpuValue is the value of family name for the GPU with index i.
func (s scrape) gpuValue(t *testing.T, name string, i int) float64 {
	t.Helper()
	m, ok := s.series(name, map[string]string{"gpu": strconv.Itoa(i)})
	if !ok {
		t.Fatalf("no %s for GPU %d", name, i)
	}
	return value(m)
}

// families lists the families with a series for the GPU with index i.
func (s scrape) families(i int) []string {
	var out []string
	for name := range s {
		if _, ok := s.series(name, map[string]string{"gpu": strconv.Itoa(i)}); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func xidEventCount(cp *fakeCP) int {
	n := 0
	for _, e := range cp.events() {
		if e.GetKind() == fleetv1.EventKind_EVENT_KIND_XID {
			n++
		}
	}
	return n
}

// TestMetricsFromTheLatestReading scrapes a simulated node: every GPU's
// series under dcgm-exporter's names and labels with the values the
// simulation gives, the GPUs' health as the agent judges it, an XID counted
// under its code and shown as the last, and a lost GPU left with its
// health and XIDs alone.
func TestMetricsFromTheLatestReading(t *testing.T) {
	cp := newFakeCP(t)
	faults := []faultspec.Spec{
		{Kind: faultspec.Temp, Value: 95, GPU: 0}, // past the H100's slowdown at 87°C
		{Kind: faultspec.Temp, Value: 71, GPU: 1},
		{Kind: faultspec.ECCDBE, GPU: 2},
	}
	r := startAgent(t, cp, simnvml.Options{GPUs: 4, Faults: faults})
	testutil.Eventually(t, "first report", func() bool { return cp.reportCount() > 0 })
	cp.mu.Lock()
	inv := cp.registrations[0].GetGpus()
	cp.mu.Unlock()

	before := time.Now()
	for n, code := range []uint32{13, 13, 43} {
		r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: code, GPU: 1})
		testutil.Eventually(t, fmt.Sprintf("XID %d delivered", code), func() bool { return xidEventCount(cp) == n+1 })
	}
	after := time.Now()
	r.sim.Inject(faultspec.Spec{Kind: faultspec.GPULost, GPU: 3})
	var s scrape
	testutil.Eventually(t, "GPU 3 read as lost", func() bool {
		s = gather(t, r.a)
		_, read := s.series("DCGM_FI_DEV_GPU_TEMP", map[string]string{"gpu": "3"})
		return !read
	})

	for i, g := range inv[:3] {
		want := map[string]string{
			"gpu": strconv.Itoa(i), "UUID": g.GetUuid(), "device": fmt.Sprintf("nvidia%d", i),
			"modelName": g.GetName(), "Hostname": "host-a", "pci_bus_id": g.GetPciBusId(),
		}
		for _, name := range []string{"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED", "navarch_gpu_health", "DCGM_FI_DEV_XID_ERRORS"} {
			m, ok := s.series(name, map[string]string{"gpu": strconv.Itoa(i)})
			if !ok {
				t.Fatalf("no %s for GPU %d", name, i)
			}
			if got := labelsOf(m); !maps.Equal(got, want) {
				t.Errorf("%s labels %v, want %v", name, got, want)
			}
		}
	}
	if !strings.HasPrefix(inv[0].GetName(), "NVIDIA H100") || inv[0].GetPciBusId() == "" {
		t.Fatalf("inventory %v", inv[0])
	}
	totalMiB := float64(inv[0].GetMemoryTotalBytes() >> 20)
	// Idle simulated H100s: 70 W, 512 MiB in use, SM clock at 345 MHz (207
	// while the hot GPU slows down), memory 4°C above the core.
	for _, c := range []struct {
		name string
		want [3]float64
	}{
		{"DCGM_FI_DEV_GPU_TEMP", [3]float64{95, 71, 32}},
		{"DCGM_FI_DEV_MEMORY_TEMP", [3]float64{99, 75, 36}},
		{"DCGM_FI_DEV_POWER_USAGE", [3]float64{70, 70, 70}},
		{"DCGM_FI_DEV_GPU_UTIL", [3]float64{0, 0, 0}},
		{"DCGM_FI_DEV_FB_USED", [3]float64{512, 512, 512}},
		{"DCGM_FI_DEV_FB_FREE", [3]float64{totalMiB - 512, totalMiB - 512, totalMiB - 512}},
		{"DCGM_FI_DEV_SM_CLOCK", [3]float64{207, 345, 345}},
		{"DCGM_FI_DEV_MEM_CLOCK", [3]float64{2619, 2619, 2619}},
		{"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", [3]float64{0, 0, 1}},
		{"DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", [3]float64{0, 0, 1}},
		{"DCGM_FI_DEV_ROW_REMAP_FAILURE", [3]float64{0, 0, 0}},
		{"DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", [3]float64{0, 0, 0}},
		{"navarch_gpu_nvlinks_up", [3]float64{18, 18, 18}},
		{"navarch_gpu_health", [3]float64{gpuDegraded, gpuHealthy, gpuUnhealthy}},
		{"DCGM_FI_DEV_XID_ERRORS", [3]float64{0, 43, 0}},
	} {
		for i, want := range c.want {
			if got := s.gpuValue(t, c.name, i); got != want {
				t.Errorf("%s for GPU %d = %v, want %v", c.name, i, got, want)
			}
		}
	}

	for code, want := range map[string]float64{"13": 2, "43": 1} {
		m, ok := s.series("navarch_gpu_xid_errors_total", map[string]string{"gpu": "1", "xid": code, "UUID": inv[1].GetUuid()})
		if !ok || value(m) != want {
			t.Errorf("XID %s on GPU 1: %v, want %v", code, m, want)
		}
	}
	if n := len(s["navarch_gpu_xid_errors_total"].GetMetric()); n != 2 {
		t.Errorf("%d XID counters, want GPU 1's two", n)
	}
	// Every GPU's count of all codes is there, at 0 before its first XID.
	for i, want := range []float64{0, 3, 0, 0} {
		if got := s.gpuValue(t, "navarch_gpu_xid_events_total", i); got != want {
			t.Errorf("navarch_gpu_xid_events_total for GPU %d = %v, want %v", i, got, want)
		}
	}
	if typ := s["navarch_gpu_xid_events_total"].GetType(); typ != dto.MetricType_COUNTER {
		t.Errorf("navarch_gpu_xid_events_total is a %v", typ)
	}
	at := s.gpuValue(t, "navarch_gpu_last_xid_timestamp_seconds", 1)
	if at < float64(before.Unix()) || at > float64(after.Unix()+1) {
		t.Errorf("last XID at %v, want within %v–%v", at, before.Unix(), after.Unix())
	}
	if _, ok := s.series("navarch_gpu_last_xid_timestamp_seconds", map[string]string{"gpu": "0"}); ok {
		t.Error("a last-XID time for GPU 0, which had none")
	}

	// The lost GPU: its health and XIDs, nothing read.
	if got, want := s.families(3), []string{"DCGM_FI_DEV_XID_ERRORS", "navarch_gpu_health", "navarch_gpu_xid_events_total"}; !slices.Equal(got, want) {
		t.Errorf("lost GPU 3 has %v, want %v", got, want)
	}
	if got := s.gpuValue(t, "navarch_gpu_health", 3); got != gpuUnhealthy {
		t.Errorf("lost GPU 3's health %v", got)
	}
	if got := value(s["navarch_agent_gpus"].GetMetric()[0]); got != 3 {
		t.Errorf("navarch_agent_gpus %v, want 3", got)
	}
	if _, ok := s.series("navarch_agent_info", map[string]string{"node": "node-a"}); !ok {
		t.Error("no navarch_agent_info naming node-a")
	}
	lint(t, s)
}

// TestMetricsLeaveTheKernelLogBacklogUncounted: the XIDs the kernel log
// held from before the agent started, which it reads again at every start,
// are sent to the control plane and set the last XID, but are not counted
// again; an XID after the start is.
func TestMetricsLeaveTheKernelLogBacklogUncounted(t *testing.T) {
	cp := newFakeCP(t)
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	boot := start.Add(-time.Hour)
	klog := newFakeKernelLog()
	r := startAgent(t, cp, simnvml.Options{GPUs: 2}, func(o *Options) {
		o.Clock = clockwork.NewFakeClockAt(start)
		o.KernelLog = func() (io.ReadCloser, error) { return klog, nil }
		o.KernelBoot = func() (time.Time, error) { return boot, nil }
	})
	cp.mu.Lock()
	inv := cp.registrations[0].GetGpus()
	cp.mu.Unlock()
	line := func(seq int, at time.Time, g *fleetv1.Gpu, code int) string {
		return fmt.Sprintf("4,%d,%d,-;NVRM: Xid (%s): %d, pid='<unknown>', name=<unknown>, test\n",
			seq, at.Sub(boot).Microseconds(), kernelBus(t, g.GetPciBusId()), code)
	}
	klog.records <- line(10, boot.Add(10*time.Minute), inv[0], 31)
	klog.records <- line(11, boot.Add(20*time.Minute), inv[0], 43)
	klog.records <- line(12, start, inv[1], 13)
	testutil.Eventually(t, "the three XIDs sent", func() bool { return xidEventCount(cp) == 3 })

	s := gather(t, r.a)
	for i, want := range []float64{0, 1} {
		if got := s.gpuValue(t, "navarch_gpu_xid_events_total", i); got != want {
			t.Errorf("navarch_gpu_xid_events_total for GPU %d = %v, want %v", i, got, want)
		}
	}
	if ms := s["navarch_gpu_xid_errors_total"].GetMetric(); len(ms) != 1 || labelsOf(ms[0])["xid"] != "13" || value(ms[0]) != 1 {
		t.Errorf("navarch_gpu_xid_errors_total %v, want GPU 1's XID 13 alone", ms)
	}
	for i, want := range []struct {
		code float64
		at   time.Time
	}{{43, boot.Add(20 * time.Minute)}, {13, start}} {
		if got := s.gpuValue(t, "DCGM_FI_DEV_XID_ERRORS", i); got != want.code {
			t.Errorf("GPU %d's last XID %v, want %v", i, got, want.code)
		}
		if got := s.gpuValue(t, "navarch_gpu_last_xid_timestamp_seconds", i); got != float64(want.at.Unix()) {
			t.Errorf("GPU %d's last XID at %v, want %v", i, got, want.at.Unix())
		}
	}
}

func TestXIDTally(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	type xid struct {
		gpu  int32
		code uint32
		at   time.Duration // from the agent's start
	}
	tests := []struct {
		name string
		xids []xid
		want map[int32]*gpuXIDs
	}{
		{"at-the-start", []xid{{0, 13, 0}},
			map[int32]*gpuXIDs{0: {events: 1, byCode: map[uint32]uint64{13: 1}, last: 13, at: t0}}},
		{"backlog", []xid{{0, 31, -time.Minute}, {0, 43, -time.Second}},
			map[int32]*gpuXIDs{0: {byCode: map[uint32]uint64{}, last: 43, at: t0.Add(-time.Second)}}},
		{"backlog-older-than-known", []xid{{0, 43, -time.Second}, {0, 31, -time.Minute}},
			map[int32]*gpuXIDs{0: {byCode: map[uint32]uint64{}, last: 43, at: t0.Add(-time.Second)}}},
		{"backlog-then-new", []xid{{1, 31, -time.Minute}, {1, 13, time.Second}, {1, 13, 2 * time.Second}},
			map[int32]*gpuXIDs{1: {events: 2, byCode: map[uint32]uint64{13: 2}, last: 13, at: t0.Add(2 * time.Second)}}},
		{"held-nvml-xid-comes-late", []xid{{0, 79, 10 * time.Second}, {0, 13, 5 * time.Second}},
			map[int32]*gpuXIDs{0: {events: 2, byCode: map[uint32]uint64{79: 1, 13: 1}, last: 79, at: t0.Add(10 * time.Second)}}},
		{"no-gpu-of-the-node", []xid{{-1, 79, time.Second}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tally := xidTally{since: t0}
			for _, x := range tt.xids {
				tally.add(&fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: x.gpu, Xid: x.code, Time: timestamppb.New(t0.Add(x.at))})
			}
			if len(tally.gpus) != len(tt.want) {
				t.Fatalf("GPUs %v, want %v", tally.gpus, tt.want)
			}
			for g, want := range tt.want {
				got := tally.gpus[g]
				if got == nil || got.events != want.events || !maps.Equal(got.byCode, want.byCode) || got.last != want.last || !got.at.Equal(want.at) {
					t.Errorf("GPU %d: %+v, want %+v", g, got, want)
				}
			}
		})
	}
}

// lint fails on every problem promlint finds but one: the per-GPU series
// carry dcgm-exporter's camelCase modelName label, which dashboards written
// for it select by. Its upper-case names draw no complaint (promlint looks
// for camelCase and a lower-case _total), and they are gauges, as
// dcgm-exporter's counters without _total could not be.
func lint(t *testing.T, s scrape) {
	t.Helper()
	var mfs []*dto.MetricFamily
	for _, mf := range s {
		mfs = append(mfs, mf)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	perGPU := 0
	for _, p := range problems {
		_, gpuSeries := labelsOf(s[p.Metric].GetMetric()[0])["modelName"]
		if gpuSeries && p.Text == "label names should be written in 'snake_case' not 'camelCase'" {
			perGPU++
			continue
		}
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if perGPU == 0 {
		t.Error("promlint found no camelCase label: is modelName gone?")
	}
}

// TestMetricsBufferAndContact: while the control plane is away, the
// metrics show the events waiting, those dropped, the XIDs counted all the
// same, and the last contact before it went.
func TestMetricsBufferAndContact(t *testing.T) {
	cp := newFakeCP(t)
	start := time.Now()
	r := startAgent(t, cp, simnvml.Options{}, func(o *Options) { o.EventBuffer = 2 })
	testutil.Eventually(t, "first report", func() bool { return cp.reportCount() > 0 })
	cp.stop()
	stopped := time.Now()
	for i := range 3 {
		r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 31, GPU: 0})
		testutil.Eventually(t, "XID read", func() bool { return r.a.Pending()+int(r.a.Dropped()) == i+1 })
	}
	s := gather(t, r.a)
	for name, want := range map[string]float64{"navarch_agent_buffered_events": 2, "navarch_agent_dropped_events_total": 1} {
		if got := value(s[name].GetMetric()[0]); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if m, ok := s.series("navarch_gpu_xid_errors_total", map[string]string{"gpu": "0", "xid": "31"}); !ok || value(m) != 3 {
		t.Errorf("XID 31 counted %v, want 3", m)
	}
	// A call under way when the control plane stopped may still end well
	// just after: the last contact is at about the stop, and then stays.
	contact := func() float64 {
		return value(gather(t, r.a)["navarch_agent_last_contact_timestamp_seconds"].GetMetric()[0])
	}
	c := contact()
	if c < float64(start.UnixNano())/1e9 || c > float64(stopped.Add(5*time.Second).UnixNano())/1e9 {
		t.Errorf("last contact %v, want between the start %v and about the control plane stopping %v", c, start.Unix(), stopped.Unix())
	}
	testutil.Eventually(t, "the last contact to stay put with the control plane down", func() bool {
		before := contact()
		time.Sleep(300 * time.Millisecond)
		return contact() == before
	})
}

// noConn is a connection for agents that never call the control plane.
type noConn struct{ grpc.ClientConnInterface }

// readAgent is an agent that has read its GPUs once and runs no loop, so a
// test can set its inventory and readings.
func readAgent(t *testing.T, clock clockwork.Clock) *Agent {
	t.Helper()
	sim := simnvml.New(simnvml.Options{GPUs: 1, Idle: true})
	t.Cleanup(sim.Stop)
	a, err := New(Options{NodeID: "node-a", Conn: noConn{}, NVML: sim, Clock: clock, PollInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reader, err := gpu.Open(sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	inv, err := reader.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	a.reader, a.inv = reader, inv
	return a
}

// TestMetricsLeaveOutUnsupported: a metric NVML does not support on a GPU
// has no series for it, rather than a 0 that reads as a value.
func TestMetricsLeaveOutUnsupported(t *testing.T) {
	a := readAgent(t, clockwork.NewRealClock())
	a.latest = []gpu.Reading{{Metrics: &fleetv1.GpuMetrics{
		GpuIndex: 0, Time: timestamppb.Now(), TemperatureCelsius: 40, PowerUsageMilliwatts: 123_500,
		Unsupported: []string{gpu.GroupMemoryTemperature, gpu.GroupECC, gpu.GroupNVLinkErrors, gpu.GroupRetiredPages},
	}}}
	s := gather(t, a)
	for name, want := range map[string]float64{"DCGM_FI_DEV_GPU_TEMP": 40, "DCGM_FI_DEV_POWER_USAGE": 123.5} {
		if got := s.gpuValue(t, name, 0); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{
		"DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
		"DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
		"DCGM_FI_DEV_RETIRED_SBE", "DCGM_FI_DEV_RETIRED_PENDING",
	} {
		if _, ok := s[name]; ok {
			t.Errorf("%s is there, though the GPU does not support it", name)
		}
	}
}

func TestJudgeGPU(t *testing.T) {
	g := &fleetv1.Gpu{NvlinkCount: 2, SlowdownTemperatureCelsius: 87, MemoryMaxTemperatureCelsius: 95}
	links := func(up ...bool) []*fleetv1.NvLinkState {
		var out []*fleetv1.NvLinkState
		for i, u := range up {
			out = append(out, &fleetv1.NvLinkState{Link: uint32(i), Active: u})
		}
		return out
	}
	tests := []struct {
		name string
		m    *fleetv1.GpuMetrics
		lost bool
		want float64
	}{
		{"healthy", &fleetv1.GpuMetrics{TemperatureCelsius: 60, Nvlinks: links(true, true)}, false, gpuHealthy},
		{"lost", &fleetv1.GpuMetrics{}, true, gpuUnhealthy},
		{"hot", &fleetv1.GpuMetrics{TemperatureCelsius: 87, Nvlinks: links(true, true)}, false, gpuDegraded},
		{"memory-hot", &fleetv1.GpuMetrics{MemoryTemperatureCelsius: 95, Nvlinks: links(true, true)}, false, gpuDegraded},
		{"held-slowdown", &fleetv1.GpuMetrics{HwSlowdownSeconds: 60, Nvlinks: links(true, true)}, false, gpuDegraded},
		{"passing-slowdown", &fleetv1.GpuMetrics{HwSlowdownSeconds: 59, Nvlinks: links(true, true)}, false, gpuHealthy},
		{"power-brake", &fleetv1.GpuMetrics{PowerBrakeSeconds: 61, Nvlinks: links(true, true)}, false, gpuDegraded},
		{"ecc-uncorrected", &fleetv1.GpuMetrics{Ecc: &fleetv1.EccCounts{VolatileUncorrected: 1}, Nvlinks: links(true, true)}, false, gpuUnhealthy},
		{"ecc-corrected", &fleetv1.GpuMetrics{Ecc: &fleetv1.EccCounts{VolatileCorrected: 9}, Nvlinks: links(true, true)}, false, gpuHealthy},
		{"remap-pending", &fleetv1.GpuMetrics{RowRemap: &fleetv1.RowRemapState{Pending: true}, Nvlinks: links(true, true)}, false, gpuUnhealthy},
		{"remap-failure", &fleetv1.GpuMetrics{RowRemap: &fleetv1.RowRemapState{Failure: true}, Nvlinks: links(true, true)}, false, gpuUnhealthy},
		{"link-down", &fleetv1.GpuMetrics{Nvlinks: links(true, false)}, false, gpuUnhealthy},
		{"nvlink-unsupported", &fleetv1.GpuMetrics{Unsupported: []string{gpu.GroupNVLink}}, false, gpuHealthy},
		{"recovery-reset", &fleetv1.GpuMetrics{RecoveryAction: fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET, Nvlinks: links(true, true)}, false, gpuUnhealthy},
		{"recovery-none", &fleetv1.GpuMetrics{RecoveryAction: fleetv1.RecoveryAction_RECOVERY_ACTION_NONE, Nvlinks: links(true, true)}, false, gpuHealthy},
		{"unhealthy-and-hot", &fleetv1.GpuMetrics{TemperatureCelsius: 90, Nvlinks: links(false, false)}, false, gpuUnhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := judgeGPU(g, gpu.Reading{Metrics: tt.m, Lost: tt.lost}); got != tt.want {
				t.Errorf("judgeGPU = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	now := timestamppb.New(t0)
	answering := gpu.Reading{Metrics: &fleetv1.GpuMetrics{GpuIndex: 0, Time: now}}
	lost := gpu.Reading{Metrics: &fleetv1.GpuMetrics{GpuIndex: 1, Time: now}, Lost: true, LostReason: "NVML: GPU is lost"}
	tests := []struct {
		name     string
		readings []gpu.Reading
		age      time.Duration
		want     string // what the failure says; empty when healthy
	}{
		{"not-read-yet", nil, 0, "not been read yet"},
		{"no-gpu", []gpu.Reading{}, 0, "NVML sees no GPU"},
		{"every-gpu-lost", []gpu.Reading{lost}, 0, "no GPU answers NVML: GPU 1: NVML: GPU is lost"},
		{"one-answers", []gpu.Reading{lost, answering}, 0, ""},
		{"a-slow-poll", []gpu.Reading{answering}, 30 * time.Second, ""},
		{"nvml-hung", []gpu.Reading{answering}, 33 * time.Second, "NVML has not answered for 33s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := clockwork.NewFakeClockAt(t0)
			a := readAgent(t, clock)
			a.latest = tt.readings
			clock.Advance(tt.age)
			err := a.Healthz(context.Background())
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Healthz: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Healthz: %v, want %q", err, tt.want)
			}
		})
	}
}
