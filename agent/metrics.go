package agent

// The agent's Prometheus metrics: each GPU under dcgm-exporter's names and
// labels, so that dashboards built for dcgm-exporter work on a node
// without DCGM, and Navarch's own beside them. Every scrape reads the
// agent's latest poll; nothing here reads NVML or runs on its own.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/navarch/navarch/agent/gpu"
	"github.com/navarch/navarch/internal/health"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// gpuLabels are the labels dcgm-exporter puts on each GPU's series, in its
// spelling: dashboards and alert rules written for it select by them.
var gpuLabels = []string{"gpu", "UUID", "device", "modelName", "Hostname", "pci_bus_id"}

const mib = 1 << 20

// gpuSeries is one per-GPU series read from a GPU's latest metrics.
type gpuSeries struct {
	desc *prometheus.Desc
	// groups are the metric groups the value is read from: a GPU whose
	// reading lists one as unsupported has no such series, rather than a
	// 0 that looks like a reading.
	groups []string
	// value reads the series; ok is false where the reading lacks it.
	value func(g *fleetv1.Gpu, m *fleetv1.GpuMetrics) (v float64, ok bool)
}

func series(name, help string, groups []string, value func(*fleetv1.Gpu, *fleetv1.GpuMetrics) (float64, bool)) gpuSeries {
	return gpuSeries{desc: prometheus.NewDesc(name, help, gpuLabels, nil), groups: groups, value: value}
}

// read is a value every reading of its group has.
func read(f func(m *fleetv1.GpuMetrics) float64) func(*fleetv1.Gpu, *fleetv1.GpuMetrics) (float64, bool) {
	return func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) (float64, bool) { return f(m), true }
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// gpuTable is every per-GPU series but the XIDs'. The help follows
// dcgm-exporter's default counters file where it has the field. Every
// series is a gauge, counts too: a counter's name must end in _total, which
// dcgm-exporter's names cannot be made to, and queries select by name alone.
var gpuTable = []gpuSeries{
	series("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", []string{gpu.GroupTemperature},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetTemperatureCelsius()) })),
	series("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).", []string{gpu.GroupMemoryTemperature},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetMemoryTemperatureCelsius()) })),
	series("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", []string{gpu.GroupPower},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetPowerUsageMilliwatts()) / 1000 })),
	series("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", []string{gpu.GroupUtilization},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetUtilizationGpuPercent()) })),
	series("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", []string{gpu.GroupUtilization},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetUtilizationMemoryPercent()) })),
	series("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", []string{gpu.GroupMemory},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetMemoryUsedBytes() / mib) })),
	// NVML's free memory is its total less what is used, and the total
	// is the inventory's.
	series("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", []string{gpu.GroupMemory},
		func(g *fleetv1.Gpu, m *fleetv1.GpuMetrics) (float64, bool) {
			total := g.GetMemoryTotalBytes()
			return float64((total - min(m.GetMemoryUsedBytes(), total)) / mib), total > 0
		}),
	series("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", []string{gpu.GroupClocks},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetSmClockMhz()) })),
	series("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", []string{gpu.GroupClocks},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetMemoryClockMhz()) })),
	series("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "Total number of PCIe retries.", []string{gpu.GroupPCIeReplay},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetPcieReplayCount()) })),
	ecc("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Total number of single-bit volatile ECC errors.", (*fleetv1.EccCounts).GetVolatileCorrected),
	ecc("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Total number of double-bit volatile ECC errors.", (*fleetv1.EccCounts).GetVolatileUncorrected),
	ecc("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "Total number of single-bit persistent ECC errors.", (*fleetv1.EccCounts).GetAggregateCorrected),
	ecc("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "Total number of double-bit persistent ECC errors.", (*fleetv1.EccCounts).GetAggregateUncorrected),
	retired("DCGM_FI_DEV_RETIRED_SBE", "Total number of retired pages due to single-bit errors.",
		func(rp *fleetv1.RetiredPages) float64 { return float64(rp.GetSingleBit()) }),
	retired("DCGM_FI_DEV_RETIRED_DBE", "Total number of retired pages due to double-bit errors.",
		func(rp *fleetv1.RetiredPages) float64 { return float64(rp.GetDoubleBit()) }),
	// NVML says whether pages wait for retirement, not how many.
	retired("DCGM_FI_DEV_RETIRED_PENDING", "Whether pages are pending retirement (1) or not (0).",
		func(rp *fleetv1.RetiredPages) float64 { return boolValue(rp.GetPending()) }),
	rowRemap("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for uncorrectable errors.",
		func(rr *fleetv1.RowRemapState) float64 { return float64(rr.GetUncorrectedRows()) }),
	rowRemap("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "Number of remapped rows for correctable errors.",
		func(rr *fleetv1.RowRemapState) float64 { return float64(rr.GetCorrectedRows()) }),
	rowRemap("DCGM_FI_DEV_ROW_REMAP_FAILURE", "Whether remapping of rows has failed.",
		func(rr *fleetv1.RowRemapState) float64 { return boolValue(rr.GetFailure()) }),
	rowRemap("DCGM_FI_DEV_ROW_REMAP_PENDING", "Whether a row remap waits for a GPU reset.",
		func(rr *fleetv1.RowRemapState) float64 { return boolValue(rr.GetPending()) }),
	nvlinkErrors("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "Total number of NVLink CRC errors (flow-control and data), all links.",
		(*fleetv1.NvLinkState).GetCrcErrors),
	nvlinkErrors("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "Total number of NVLink retries, all links.",
		(*fleetv1.NvLinkState).GetReplayErrors),
	nvlinkErrors("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "Total number of NVLink recovery errors, all links.",
		(*fleetv1.NvLinkState).GetRecoveryErrors),
	series("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Current clock event (throttle) reasons, NVML's bitmask.",
		[]string{gpu.GroupClockEvents},
		read(func(m *fleetv1.GpuMetrics) float64 { return float64(m.GetClockEventReasons()) })),
	series("navarch_gpu_nvlinks_up", "NVLink links up on the GPU.", []string{gpu.GroupNVLink},
		read(func(m *fleetv1.GpuMetrics) float64 {
			up := 0
			for _, l := range m.GetNvlinks() {
				if l.GetActive() {
					up++
				}
			}
			return float64(up)
		})),
}

func ecc(name, help string, count func(*fleetv1.EccCounts) uint64) gpuSeries {
	return series(name, help, []string{gpu.GroupECC}, func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) (float64, bool) {
		return float64(count(m.GetEcc())), m.GetEcc() != nil
	})
}

func retired(name, help string, value func(*fleetv1.RetiredPages) float64) gpuSeries {
	return series(name, help, []string{gpu.GroupRetiredPages}, func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) (float64, bool) {
		return value(m.GetRetiredPages()), m.GetRetiredPages() != nil
	})
}

func rowRemap(name, help string, value func(*fleetv1.RowRemapState) float64) gpuSeries {
	return series(name, help, []string{gpu.GroupRowRemap}, func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) (float64, bool) {
		return value(m.GetRowRemap()), m.GetRowRemap() != nil
	})
}

// nvlinkErrors sums a link error counter over the GPU's links; a GPU
// without NVLink has none to count.
func nvlinkErrors(name, help string, count func(*fleetv1.NvLinkState) uint64) gpuSeries {
	return series(name, help, []string{gpu.GroupNVLink, gpu.GroupNVLinkErrors}, read(func(m *fleetv1.GpuMetrics) float64 {
		var n uint64
		for _, l := range m.GetNvlinks() {
			n += count(l)
		}
		return float64(n)
	}))
}

// The GPU's health as the agent judges it from its latest reading, the
// value of navarch_gpu_health.
const (
	gpuHealthy   = health.MetricHealthy
	gpuDegraded  = health.MetricDegraded
	gpuUnhealthy = health.MetricUnhealthy
)

var (
	gpuHealthDesc = prometheus.NewDesc("navarch_gpu_health",
		"The GPU's health as the agent judges it from its latest reading: 1 healthy, 2 degraded (a held slowdown, hot), "+
			"3 unhealthy (lost, uncorrected ECC errors, a row remap pending or failed, NVLink links down, a recovery action asked for).",
		gpuLabels, nil)
	lastXIDDesc = prometheus.NewDesc("DCGM_FI_DEV_XID_ERRORS",
		"Value of the last XID error encountered (0 before any), the kernel log's backlog included.", gpuLabels, nil)
	xidCountDesc = prometheus.NewDesc("navarch_gpu_xid_errors_total",
		"XIDs the GPU raised since the agent started, by code; a code's series appears at its first XID. "+
			"XIDs from before the start, in the kernel log's backlog, are not counted.",
		append(slices.Clone(gpuLabels), "xid"), nil)
	xidEventsDesc = prometheus.NewDesc("navarch_gpu_xid_events_total",
		"XIDs the GPU raised since the agent started, all codes; 0 from the first scrape, so increase() sees the first XID. "+
			"XIDs from before the start, in the kernel log's backlog, are not counted.",
		gpuLabels, nil)
	lastXIDTimeDesc = prometheus.NewDesc("navarch_gpu_last_xid_timestamp_seconds",
		"When the GPU's last XID came, in Unix seconds, the kernel log's backlog included; absent before any.", gpuLabels, nil)
	bufferedDesc = prometheus.NewDesc("navarch_agent_buffered_events",
		"Health events waiting to be sent to the control plane.", nil, nil)
	droppedDesc = prometheus.NewDesc("navarch_agent_dropped_events_total",
		"Health events dropped because the buffer overflowed while the control plane was unreachable.", nil, nil)
	lastContactDesc = prometheus.NewDesc("navarch_agent_last_contact_timestamp_seconds",
		"When a call to the control plane last succeeded, in Unix seconds (0 before the first).", nil, nil)
	gpusDesc = prometheus.NewDesc("navarch_agent_gpus",
		"GPUs answering NVML at the latest reading.", nil, nil)
	infoDesc = prometheus.NewDesc("navarch_agent_info",
		"Always 1: the node this agent runs as, so its series join the control plane's navarch_node_health{node}.",
		[]string{"node", "version"}, nil)
)

// judgeGPU is a GPU's health as its reading shows it. The conditions are
// those of the fault catalog's level conditions, judged from the reading
// alone: what a node's own dashboard can show without the control plane.
func judgeGPU(g *fleetv1.Gpu, r gpu.Reading) float64 {
	if r.Lost {
		return gpuUnhealthy
	}
	m := r.Metrics
	has := func(group string) bool { return !slices.Contains(m.GetUnsupported(), group) }
	up := 0
	for _, l := range m.GetNvlinks() {
		if l.GetActive() {
			up++
		}
	}
	switch a := m.GetRecoveryAction(); {
	case has(gpu.GroupECC) && m.GetEcc().GetVolatileUncorrected() > 0,
		has(gpu.GroupRowRemap) && (m.GetRowRemap().GetPending() || m.GetRowRemap().GetFailure()),
		has(gpu.GroupNVLink) && up < int(g.GetNvlinkCount()),
		has(gpu.GroupRecoveryAction) && a != fleetv1.RecoveryAction_RECOVERY_ACTION_UNSPECIFIED && a != fleetv1.RecoveryAction_RECOVERY_ACTION_NONE:
		return gpuUnhealthy
	}
	held := uint32(health.SustainedSlowdown / time.Second)
	slow, memMax := g.GetSlowdownTemperatureCelsius(), g.GetMemoryMaxTemperatureCelsius()
	switch {
	case m.GetHwSlowdownSeconds() >= held, m.GetPowerBrakeSeconds() >= held,
		has(gpu.GroupTemperature) && slow > 0 && m.GetTemperatureCelsius() >= slow,
		has(gpu.GroupMemoryTemperature) && memMax > 0 && m.GetMemoryTemperatureCelsius() >= memMax:
		return gpuDegraded
	}
	return gpuHealthy
}

// collector emits the agent's metrics from its latest poll at each scrape.
type collector struct{ a *Agent }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range gpuTable {
		ch <- s.desc
	}
	for _, d := range []*prometheus.Desc{gpuHealthDesc, lastXIDDesc, xidCountDesc, xidEventsDesc, lastXIDTimeDesc, bufferedDesc, droppedDesc, lastContactDesc, gpusDesc, infoDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	// A poll replaces the readings whole and never changes one it kept,
	// so they are read here without the lock.
	a.mu.Lock()
	readings := a.latest
	var gpus []*fleetv1.Gpu
	var absent []gpu.Absent
	if a.inv != nil {
		gpus, absent = a.inv.GPUs, a.reader.Absent()
	}
	a.mu.Unlock()
	answering := 0
	for i, g := range gpus[:min(len(gpus), len(readings))] {
		r := readings[i]
		labels := a.gpuLabelValues(g.GetIndex(), g)
		ch <- prometheus.MustNewConstMetric(gpuHealthDesc, prometheus.GaugeValue, judgeGPU(g, r), labels...)
		a.xids.collect(ch, int32(g.GetIndex()), labels)
		if r.Lost {
			continue
		}
		answering++
		for _, s := range gpuTable {
			if slices.ContainsFunc(s.groups, func(group string) bool { return slices.Contains(r.Metrics.GetUnsupported(), group) }) {
				continue
			}
			if v, ok := s.value(g, r.Metrics); ok {
				ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, v, labels...)
			}
		}
	}
	// A GPU that did not answer at start is lost: it has no identity but
	// its index.
	for _, ab := range absent {
		ch <- prometheus.MustNewConstMetric(gpuHealthDesc, prometheus.GaugeValue, gpuUnhealthy, a.gpuLabelValues(ab.Index, nil)...)
	}
	ch <- prometheus.MustNewConstMetric(bufferedDesc, prometheus.GaugeValue, float64(a.Pending()))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(a.Dropped()))
	var contact float64
	if ns := a.contact.Load(); ns != 0 {
		contact = float64(ns) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(lastContactDesc, prometheus.GaugeValue, contact)
	ch <- prometheus.MustNewConstMetric(gpusDesc, prometheus.GaugeValue, float64(answering))
	ch <- prometheus.MustNewConstMetric(infoDesc, prometheus.GaugeValue, 1, a.o.NodeID, a.o.Version)
}

// gpuLabelValues are a GPU's values of gpuLabels; g is nil for a GPU that
// did not answer at start.
func (a *Agent) gpuLabelValues(index uint32, g *fleetv1.Gpu) []string {
	host := a.o.Hostname
	if host == "" {
		host = a.o.NodeID
	}
	i := strconv.FormatUint(uint64(index), 10)
	return []string{i, g.GetUuid(), "nvidia" + i, g.GetName(), host, g.GetPciBusId()}
}

// newMetrics is the registry of the agent's own series. The Go runtime's
// and the process's are the metrics listener's (cmd/navarch-agent), which
// serves them from before the agent exists. XIDs count from now: those
// older, in the kernel log's backlog, were counted by the agent that ran
// before.
func newMetrics(a *Agent) *prometheus.Registry {
	a.xids.since = a.clock.Now()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{a})
	return reg
}

// Metrics is the agent's own series: each GPU's, its XIDs, its event
// buffer and its contact with the control plane.
func (a *Agent) Metrics() prometheus.Gatherer { return a.metrics }

// xidTally counts the XIDs the agent reports, by GPU and code. A count only
// grows, so an XID never sticks the way dcgm-exporter's last-XID gauge
// does; the last code and its time are kept beside it.
type xidTally struct {
	// since is when the agent started. An XID older than that comes from
	// the kernel log's backlog, read again at every start: counting it
	// would count it again after each restart, so it only sets the last
	// code and time.
	since time.Time

	mu   sync.Mutex
	gpus map[int32]*gpuXIDs
}

type gpuXIDs struct {
	events uint64
	byCode map[uint32]uint64
	last   uint32
	at     time.Time
}

// add counts an XID event and keeps it as the last when it is the newest.
// One that names no GPU of the inventory (a kernel-log line for a bus id
// the node lacks) has no series to count in.
func (t *xidTally) add(e *fleetv1.HealthEvent) {
	if e.GetKind() != fleetv1.EventKind_EVENT_KIND_XID || e.GetGpuIndex() < 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gpus == nil {
		t.gpus = make(map[int32]*gpuXIDs)
	}
	x := t.gpus[e.GetGpuIndex()]
	if x == nil {
		x = &gpuXIDs{byCode: make(map[uint32]uint64)}
		t.gpus[e.GetGpuIndex()] = x
	}
	at := e.GetTime().AsTime()
	if !at.Before(t.since) {
		x.events++
		x.byCode[e.GetXid()]++
	}
	// An XID from NVML waits for its kernel-log line, so one may come
	// after a later one.
	if !at.Before(x.at) {
		x.last, x.at = e.GetXid(), at
	}
}

// collect emits a GPU's XID series; the count of all codes is there from
// the first scrape.
func (t *xidTally) collect(ch chan<- prometheus.Metric, index int32, labels []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	x := t.gpus[index]
	if x == nil {
		ch <- prometheus.MustNewConstMetric(lastXIDDesc, prometheus.GaugeValue, 0, labels...)
		ch <- prometheus.MustNewConstMetric(xidEventsDesc, prometheus.CounterValue, 0, labels...)
		return
	}
	ch <- prometheus.MustNewConstMetric(lastXIDDesc, prometheus.GaugeValue, float64(x.last), labels...)
	ch <- prometheus.MustNewConstMetric(lastXIDTimeDesc, prometheus.GaugeValue, float64(x.at.UnixNano())/1e9, labels...)
	ch <- prometheus.MustNewConstMetric(xidEventsDesc, prometheus.CounterValue, float64(x.events), labels...)
	for code, n := range x.byCode {
		ch <- prometheus.MustNewConstMetric(xidCountDesc, prometheus.CounterValue, float64(n), append(slices.Clone(labels), strconv.FormatUint(uint64(code), 10))...)
	}
}

// contactConn notes every call to the control plane that succeeds: the
// metrics show when the last one did.
type contactConn struct {
	grpc.ClientConnInterface
	ok func()
}

func (c contactConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	err := c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
	if err == nil {
		c.ok()
	}
	return err
}

func (a *Agent) contacted() { a.contact.Store(a.clock.Now().UnixNano()) }

// nvmlStaleGrace is how much longer than two poll intervals the latest
// reading may be before NVML counts as not answering: reading every GPU of
// a loaded node can take seconds, and one slow pass is not a hung driver.
const nvmlStaleGrace = 30 * time.Second

// Healthz says whether the agent can watch its GPUs: it fails before the
// first reading, when NVML has not finished one for a while, when NVML
// sees no GPU, and when none answers.
func (a *Agent) Healthz(context.Context) error {
	a.mu.Lock()
	readings := a.latest
	a.mu.Unlock()
	switch {
	case readings == nil:
		return errors.New("the GPUs have not been read yet")
	case len(readings) == 0:
		return errors.New("NVML sees no GPU")
	}
	at := readings[0].Metrics.GetTime().AsTime()
	if age := a.clock.Now().Sub(at); age > 2*a.o.PollInterval+nvmlStaleGrace {
		return fmt.Errorf("NVML has not answered for %s", age.Round(time.Second))
	}
	i := slices.IndexFunc(readings, func(r gpu.Reading) bool { return !r.Lost })
	if i < 0 {
		return fmt.Errorf("no GPU answers NVML: GPU %d: %s", readings[0].Metrics.GetGpuIndex(), readings[0].LostReason)
	}
	return nil
}
