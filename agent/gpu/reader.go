// Package gpu reads a node's GPUs through NVML (github.com/NVIDIA/go-nvml),
// behind nvml.Interface so that the real driver and the simulated backend
// run the same code.
//
// A call the driver does not support (ERROR_NOT_SUPPORTED) marks that
// metric group unsupported for the GPU; it is never a fault. A GPU whose
// handle fails with ERROR_GPU_IS_LOST, or that fails every read, is lost.
package gpu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/navarch/navarch/internal/display"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"google.golang.org/protobuf/types/known/timestamppb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Metric groups, as named in GpuMetrics.unsupported.
const (
	GroupTemperature       = "temperature"
	GroupMemoryTemperature = "memory_temperature"
	GroupPower             = "power"
	GroupUtilization       = "utilization"
	GroupMemory            = "memory"
	GroupClocks            = "clocks"
	GroupClockEvents       = "clock_events"
	GroupECC               = "ecc"
	GroupRowRemap          = "row_remap"
	GroupRetiredPages      = "retired_pages"
	GroupNVLink            = "nvlink"
	GroupNVLinkErrors      = "nvlink_errors"
	GroupPCIeLink          = "pcie_link"
	GroupPCIeReplay        = "pcie_replay"
	GroupProcesses         = "processes"
	GroupRecoveryAction    = "recovery_action"
)

// ErrNoDriver wraps a failure to load or initialise NVML.
var ErrNoDriver = errors.New("NVIDIA driver not usable")

// Reader reads inventory and metrics from NVML. It is safe for concurrent
// use; NVML calls are serialised.
type Reader struct {
	lib nvml.Interface

	mu      sync.Mutex
	devices []nvml.Device // the GPUs that answered at Open
	index   []uint32      // each one's NVML index
	uuids   []string
	links   []int // NVLink links each one has (up or down at Open)
	history []*history
	absent  []Absent
}

// Absent is a GPU that NVML counts but that did not answer at Open: no
// handle or no UUID, as a GPU that fell off the bus answers.
type Absent struct {
	Index  uint32
	Reason string
}

// Open initialises NVML and finds the GPUs. A missing or broken driver is
// an error wrapping ErrNoDriver that says what NVML answered.
func Open(lib nvml.Interface) (*Reader, error) {
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("%w: nvmlInit returned %s (%s); is the NVIDIA driver installed and loaded?", ErrNoDriver, nvml.ErrorString(ret), retName(ret))
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		_ = lib.Shutdown()
		return nil, fmt.Errorf("%w: nvmlDeviceGetCount returned %s", ErrNoDriver, nvml.ErrorString(ret))
	}
	r := &Reader{lib: lib}
	for i := range n {
		// A GPU that does not answer is left out and listed as absent: the
		// others still need watching, and the control plane treats a GPU
		// missing from the inventory as lost.
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			r.absent = append(r.absent, Absent{uint32(i), "nvmlDeviceGetHandleByIndex: " + nvml.ErrorString(ret)})
			continue
		}
		uuid, ret := d.GetUUID()
		if ret != nvml.SUCCESS {
			r.absent = append(r.absent, Absent{uint32(i), "nvmlDeviceGetUUID: " + nvml.ErrorString(ret)})
			continue
		}
		r.devices = append(r.devices, d)
		r.index = append(r.index, uint32(i))
		r.uuids = append(r.uuids, cleanText(uuid))
		r.links = append(r.links, countLinks(d))
		r.history = append(r.history, newHistory())
	}
	if n > 0 && len(r.devices) == 0 {
		_ = lib.Shutdown()
		return nil, fmt.Errorf("none of the %d GPUs answered: GPU 0: %s", n, r.absent[0].Reason)
	}
	return r, nil
}

// Absent lists the GPUs that did not answer at Open.
func (r *Reader) Absent() []Absent { return r.absent }

func retName(r nvml.Return) string {
	switch r {
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return "libnvidia-ml.so not found"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "kernel driver not loaded"
	case nvml.ERROR_NO_PERMISSION:
		return "no permission"
	}
	return "code " + strconv.Itoa(int(r))
}

// Close shuts NVML down.
func (r *Reader) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.lib.Shutdown()
}

// Count is the number of GPUs that answered at Open.
func (r *Reader) Count() int { return len(r.devices) }

// countLinks counts the GPU's NVLink links, up or down, so a link already
// down at start is reported as down. A GPU with no link up at all is taken
// to have no NVLink in use (a PCIe card without bridges answers that way),
// since NVML cannot tell an unwired link from a dead one.
func countLinks(d nvml.Device) int {
	n, up := 0, 0
	for l := range nvml.NVLINK_MAX_LINKS {
		st, ret := d.GetNvLinkState(l)
		if ret != nvml.SUCCESS {
			// Links are numbered densely: the first link that is not there
			// ends the list, and NOT_SUPPORTED means there are none.
			break
		}
		n++
		if st == nvml.FEATURE_ENABLED {
			up++
		}
	}
	if up == 0 {
		return 0
	}
	return n
}

// Inventory is what a node registers with.
type Inventory struct {
	DriverVersion string
	CUDAVersion   string
	GPUs          []*fleetv1.Gpu
}

// Inventory reads the driver and every GPU's identity.
func (r *Reader) Inventory() (*Inventory, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	inv := &Inventory{}
	if v, ret := r.lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		inv.DriverVersion = cleanText(v)
	}
	if v, ret := r.lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS && v > 0 {
		inv.CUDAVersion = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
	}
	for i, d := range r.devices {
		g := &fleetv1.Gpu{Index: r.index[i], Uuid: r.uuids[i], NvlinkCount: uint32(r.links[i])}
		if v, ret := d.GetName(); ret == nvml.SUCCESS {
			g.Name = cleanText(v)
		}
		if v, ret := d.GetSerial(); ret == nvml.SUCCESS {
			g.Serial = cleanText(v)
		}
		if p, ret := d.GetPciInfo(); ret == nvml.SUCCESS {
			g.PciBusId = cleanText(cString(p.BusId[:]))
		}
		if m, ret := d.GetMemoryInfo(); ret == nvml.SUCCESS {
			g.MemoryTotalBytes = m.Total
		}
		if t, ret := d.GetTemperatureThreshold(nvml.TEMPERATURE_THRESHOLD_SLOWDOWN); ret == nvml.SUCCESS {
			g.SlowdownTemperatureCelsius = t
		}
		if t, ret := d.GetTemperatureThreshold(nvml.TEMPERATURE_THRESHOLD_MEM_MAX); ret == nvml.SUCCESS {
			g.MemoryMaxTemperatureCelsius = t
		}
		if p, ret := d.GetEnforcedPowerLimit(); ret == nvml.SUCCESS {
			g.PowerLimitMilliwatts = p
		}
		inv.GPUs = append(inv.GPUs, g)
	}
	return inv, nil
}

func cString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// Reading is one GPU's metrics from one pass.
type Reading struct {
	Metrics *fleetv1.GpuMetrics
	// Lost is set when the GPU did not answer: ERROR_GPU_IS_LOST, or every
	// read failed.
	Lost bool
	// LostReason says what NVML answered for a lost GPU.
	LostReason string
}

// Read reads every GPU's metrics. Some of them span readings (how long a
// slowdown has held, the PCIe replay rate), so Read is the agent's one
// poll: each call is a reading those count.
func (r *Reader) Read(now time.Time) []Reading {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Reading, len(r.devices))
	for i, d := range r.devices {
		out[i] = readDevice(d, r.index[i], r.history[i], now)
	}
	return out
}

// readDevice reads one GPU. Each metric group is read on its own, so one
// unsupported or failing call loses only that group.
func readDevice(d nvml.Device, index uint32, h *history, now time.Time) Reading {
	m := &fleetv1.GpuMetrics{GpuIndex: index, Time: timestamppb.New(now)}
	var failed, tried int
	lostReason := ""
	// check records a call's outcome and reports whether its value is good.
	check := func(group string, ret nvml.Return) bool {
		tried++
		switch ret {
		case nvml.SUCCESS:
			return true
		case nvml.ERROR_NOT_SUPPORTED:
			if !slices.Contains(m.Unsupported, group) {
				m.Unsupported = append(m.Unsupported, group)
			}
			return false
		case nvml.ERROR_GPU_IS_LOST:
			lostReason = "NVML: GPU is lost"
		}
		failed++
		return false
	}
	if v, ret := d.GetTemperature(nvml.TEMPERATURE_GPU); check(GroupTemperature, ret) {
		m.TemperatureCelsius = v
	}
	readFields(d, m, check)
	if v, ret := d.GetPowerUsage(); check(GroupPower, ret) {
		m.PowerUsageMilliwatts = v
	}
	if u, ret := d.GetUtilizationRates(); check(GroupUtilization, ret) {
		m.UtilizationGpuPercent = min(u.Gpu, 100)
		m.UtilizationMemoryPercent = min(u.Memory, 100)
	}
	if mem, ret := d.GetMemoryInfo(); check(GroupMemory, ret) {
		m.MemoryUsedBytes = mem.Used
	}
	if v, ret := d.GetClockInfo(nvml.CLOCK_SM); check(GroupClocks, ret) {
		m.SmClockMhz = v
	}
	if v, ret := d.GetClockInfo(nvml.CLOCK_MEM); check(GroupClocks, ret) {
		m.MemoryClockMhz = v
	}
	if v, ret := d.GetCurrentClocksEventReasons(); check(GroupClockEvents, ret) {
		m.ClockEventReasons = v
	}
	// A reading without the reasons breaks a streak: it does not show the
	// slowdown held.
	m.HwSlowdownSeconds = h.hwSlowdown.observe(HWSlowdown(m.ClockEventReasons), now)
	m.PowerBrakeSeconds = h.powerBrake.observe(PowerBrake(m.ClockEventReasons), now)
	ecc := &fleetv1.EccCounts{}
	eccOK := true
	for _, c := range []struct {
		typ nvml.MemoryErrorType
		cnt nvml.EccCounterType
		dst *uint64
	}{
		{nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.VOLATILE_ECC, &ecc.VolatileCorrected},
		{nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC, &ecc.VolatileUncorrected},
		{nvml.MEMORY_ERROR_TYPE_CORRECTED, nvml.AGGREGATE_ECC, &ecc.AggregateCorrected},
		{nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.AGGREGATE_ECC, &ecc.AggregateUncorrected},
	} {
		v, ret := d.GetTotalEccErrors(c.typ, c.cnt)
		if !check(GroupECC, ret) {
			eccOK = false
			break
		}
		*c.dst = v
	}
	if eccOK {
		m.Ecc = ecc
	}
	if corr, unc, pending, failure, ret := d.GetRemappedRows(); check(GroupRowRemap, ret) {
		m.RowRemap = &fleetv1.RowRemapState{CorrectedRows: uint32(corr), UncorrectedRows: uint32(unc), Pending: pending, Failure: failure}
	}
	m.RetiredPages = readRetiredPages(d, check, now)
	for l := range nvml.NVLINK_MAX_LINKS {
		st, ret := d.GetNvLinkState(l)
		if ret == nvml.ERROR_NOT_SUPPORTED && l == 0 {
			check(GroupNVLink, ret)
			break
		}
		if ret != nvml.SUCCESS {
			if ret == nvml.ERROR_GPU_IS_LOST {
				check(GroupNVLink, ret)
			}
			break
		}
		m.Nvlinks = append(m.Nvlinks, &fleetv1.NvLinkState{Link: uint32(l), Active: st == nvml.FEATURE_ENABLED})
	}
	readNvLinkErrors(d, m.Nvlinks, h, check)
	readPCIeLink(d, m, check)
	replays, ret := d.GetPcieReplayCounter()
	replaysOK := check(GroupPCIeReplay, ret)
	if replaysOK {
		m.PcieReplayCount = uint64(max(replays, 0))
	}
	m.PcieReplaysPerMinute = h.pcieReplays.observe(m.PcieReplayCount, replaysOK, now)
	if procs, ret := d.GetComputeRunningProcesses(); check(GroupProcesses, ret) {
		for _, p := range procs {
			m.Processes = append(m.Processes, &fleetv1.GpuProcess{Pid: p.Pid, UsedMemoryBytes: p.UsedGpuMemory, Name: processName(p.Pid)})
		}
	}
	rd := Reading{Metrics: m}
	if lostReason != "" || (tried > 0 && failed == tried) {
		rd.Lost = true
		rd.LostReason = lostReason
		if rd.LostReason == "" {
			rd.LostReason = "every NVML read failed"
		}
	}
	return rd
}

// processName reads a process's command name from /proc, best effort.
func processName(pid uint32) string {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/comm")
	if err != nil {
		return ""
	}
	return cleanText(strings.TrimSpace(string(b)))
}

// maxText is the longest string the reader reports; the control plane
// refuses longer names.
const maxText = 128

// cleanText makes a string from the driver or /proc safe to report: valid
// UTF-8, no control characters, at most maxText bytes. A process may name
// itself anything, and one bad name must not stop every report.
func cleanText(s string) string {
	return display.Cut(display.CleanText(s, ""), maxText, "")
}

// XIDEvent is one XID read from the NVML event set.
type XIDEvent struct {
	GPU  int
	UUID string
	XID  uint64
	Time time.Time
}

// WatchXIDs registers every GPU for XID critical errors and sends each XID
// as it arrives, until ctx ends. It returns an error only when the event
// set cannot be created at all; a GPU that cannot register is skipped and
// reported through skipped.
func (r *Reader) WatchXIDs(ctx context.Context, out chan<- XIDEvent, skipped func(gpu int, err error), now func() time.Time) error {
	r.mu.Lock()
	set, ret := r.lib.EventSetCreate()
	if ret != nvml.SUCCESS {
		r.mu.Unlock()
		return fmt.Errorf("nvmlEventSetCreate: %s", nvml.ErrorString(ret))
	}
	byDevice := make(map[nvml.Device]int)
	for i, d := range r.devices {
		byDevice[d] = i
		if ret := d.RegisterEvents(nvml.EventTypeXidCriticalError, set); ret != nvml.SUCCESS {
			skipped(int(r.index[i]), fmt.Errorf("nvmlDeviceRegisterEvents: %s", nvml.ErrorString(ret)))
		}
	}
	r.mu.Unlock()
	defer set.Free()
	for ctx.Err() == nil {
		// Wait is not serialised with the other reads: NVML allows it, and
		// an XID must not wait behind a slow metrics pass.
		data, ret := set.Wait(500)
		switch ret {
		case nvml.SUCCESS:
		case nvml.ERROR_TIMEOUT:
			continue
		default:
			// A GPU falling off the bus can make Wait fail; keep watching the
			// others without spinning.
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if data.EventType != nvml.EventTypeXidCriticalError {
			continue
		}
		idx, ok := byDevice[data.Device]
		if !ok {
			idx = -1
		}
		ev := XIDEvent{GPU: idx, XID: data.EventData, Time: now()}
		if idx >= 0 {
			ev.GPU, ev.UUID = int(r.index[idx]), r.uuids[idx]
		}
		select {
		case out <- ev:
		case <-ctx.Done():
		}
	}
	return nil
}

// Processes lists the compute processes of every GPU that answers.
func (r *Reader) Processes() ([]*fleetv1.GpuProcess, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*fleetv1.GpuProcess
	seen := make(map[uint32]bool)
	var errs []error
	for i, d := range r.devices {
		procs, ret := d.GetComputeRunningProcesses()
		if ret != nvml.SUCCESS {
			errs = append(errs, fmt.Errorf("GPU %d: %s", r.index[i], nvml.ErrorString(ret)))
			continue
		}
		for _, p := range procs {
			if !seen[p.Pid] {
				seen[p.Pid] = true
				out = append(out, &fleetv1.GpuProcess{Pid: p.Pid, UsedMemoryBytes: p.UsedGpuMemory, Name: processName(p.Pid)})
			}
		}
	}
	if len(errs) == len(r.devices) && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
