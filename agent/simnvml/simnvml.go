// Package simnvml is a simulated NVML: an nvml.Interface built on go-nvml's
// whole-server mock (pkg/nvml/mock/server with H100 GPUs, as in
// mock/dgxh100), so a simulated node runs exactly the agent code a real one
// does. Telemetry follows a simulated workload, and faults are injected on a
// schedule (--sim-fault) or at random (chaos).
//
// The per-poll calls are methods of this package's own Device type rather
// than the mock's function fields: go-nvml's mocks record every call they
// receive, which would grow a long-running simulated agent's memory without
// bound.
package simnvml

import (
	"math"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/simload"
)

// H100 figures the simulation uses.
const (
	slowdownTemp   = 87 // °C
	shutdownTemp   = 92 // °C
	nvlinkCount    = 18
	smClockMax     = 1980
	smClockIdle    = 345
	memClock       = 2619
	memoryPerJobGB = 64
)

// Options configures New.
type Options struct {
	// GPUs is the number of GPUs, 1–64; 0 means 8.
	GPUs int
	// Faults are injected at their delay after New.
	Faults []faultspec.Spec
	// ChaosInterval is the mean time between random faults; 0 means none.
	ChaosInterval time.Duration
	// Clock drives the workload and the fault schedule; nil means real time.
	Clock clockwork.Clock
	// Seed makes the workload and chaos repeatable; 0 picks one.
	Seed uint64
	// Idle keeps the GPUs idle instead of running a simulated workload.
	Idle bool
	// Jobs runs a real process (sleep) on each GPU for each busy phase of
	// the workload, listed as the GPU's compute process: a drain waits for
	// it, and a forced drain signals it. A GPU whose job ends goes idle.
	// No new job starts while SetSchedulable(false) is in force.
	Jobs bool
}

// Backend is the simulated NVML library.
type Backend struct {
	*server.Server
	clock   clockwork.Clock
	devices []*Device

	mu      sync.Mutex
	rng     *rand.Rand
	sets    []*eventSet
	timers  []clockwork.Timer
	stopped bool

	// jobBin is the program a simulated job runs; empty without jobs.
	jobBin      string
	schedulable atomic.Bool
}

// SetSchedulable says whether new jobs may start, as a scheduler that
// honours cordons would: the agent clears it when the node is cordoned,
// draining or drained. Running jobs carry on.
func (b *Backend) SetSchedulable(ok bool) { b.schedulable.Store(ok) }

// Schedulable reports whether new jobs may start.
func (b *Backend) Schedulable() bool { return b.schedulable.Load() }

// New builds a simulated node and schedules its faults.
func New(o Options) *Backend {
	if o.GPUs <= 0 {
		o.GPUs = 8
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	srv, _ := server.New(
		server.WithGPUs(gpus.Multiple(o.GPUs, gpus.H100_SXM5_80GB)...),
		server.WithDriverVersion("550.54.15"),
		server.WithNVMLVersion("12.550.54.15"),
		server.WithCUDADriverVersion(12040),
	)
	b := &Backend{Server: srv, clock: o.Clock, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	b.schedulable.Store(true)
	if o.Jobs && !o.Idle {
		// Without a sleep program the GPUs run their workload with no
		// process to show for it.
		b.jobBin, _ = exec.LookPath("sleep")
	}
	now := o.Clock.Now()
	for i, d := range srv.Devices {
		dev := &Device{Device: d.(*server.Device), backend: b, index: i}
		dev.links = make([]bool, nvlinkCount)
		for l := range dev.links {
			dev.links[l] = true
		}
		dev.serial = serialOf(i, seed)
		if b.jobBin != "" {
			dev.load.Allow = b.schedulable.Load
		}
		dev.load.Start(b.rng, now, o.Idle)
		b.devices = append(b.devices, dev)
		srv.Devices[i] = dev
	}
	srv.DeviceGetHandleByUUIDFunc = func(uuid string) (nvml.Device, nvml.Return) {
		for _, d := range b.devices {
			if d.UUID == uuid {
				return d, nvml.SUCCESS
			}
		}
		return nil, nvml.ERROR_NOT_FOUND
	}
	srv.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) {
		s := &eventSet{ch: make(chan nvml.EventData, 256), backend: b}
		b.mu.Lock()
		b.sets = append(b.sets, s)
		b.mu.Unlock()
		return s, nvml.SUCCESS
	}
	for _, f := range o.Faults {
		b.Schedule(f)
	}
	if o.ChaosInterval > 0 {
		b.scheduleChaos(o.ChaosInterval)
	}
	return b
}

func serialOf(i int, seed uint64) string {
	const digits = "0123456789"
	b := []byte("1654322")
	r := rand.New(rand.NewPCG(seed, uint64(i)))
	for range 6 {
		b = append(b, digits[r.IntN(10)])
	}
	return string(b)
}

// Stop cancels pending faults and chaos and ends the simulated jobs.
func (b *Backend) Stop() {
	b.mu.Lock()
	b.stopped = true
	for _, t := range b.timers {
		t.Stop()
	}
	b.timers = nil
	b.mu.Unlock()
	// Then the jobs; a device's lock comes before the backend's.
	for _, d := range b.devices {
		d.mu.Lock()
		d.stopJob()
		d.mu.Unlock()
	}
}

// Device returns simulated GPU i, for tests that steer it directly.
func (b *Backend) Device(i int) *Device { return b.devices[i] }

// Schedule injects a fault after its delay. A condition without a delay
// (a lost GPU, a link down, a hot GPU…) is there from the start, before
// anything reads the GPUs; an XID is an event and always comes later, to
// whoever listens by then. A fault for a GPU the node does not have is
// ignored.
func (b *Backend) Schedule(f faultspec.Spec) {
	if f.GPU >= len(b.devices) {
		return
	}
	if f.Delay <= 0 && f.Kind != faultspec.XID {
		b.Inject(f)
		return
	}
	b.after(f.Delay, func() { b.Inject(f) })
}

func (b *Backend) after(d time.Duration, fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.timers = append(b.timers, b.clock.AfterFunc(d, fn))
}

// Inject applies a fault now.
func (b *Backend) Inject(f faultspec.Spec) {
	if f.GPU >= len(b.devices) {
		return
	}
	d := b.devices[f.GPU]
	switch f.Kind {
	case faultspec.XID:
		b.emitXID(d, uint64(f.Value))
	case faultspec.Temp:
		d.mu.Lock()
		d.forcedTemp = float64(f.Value)
		d.mu.Unlock()
	case faultspec.ECCDBE:
		d.mu.Lock()
		d.eccVolatileUnc++
		d.eccAggregateUnc++
		d.mu.Unlock()
	case faultspec.RowRemapPending:
		d.mu.Lock()
		d.remapPending = true
		d.remapUncorrected++
		d.mu.Unlock()
	case faultspec.RowRemapFailure:
		d.mu.Lock()
		d.remapFailure = true
		d.mu.Unlock()
	case faultspec.NVLinkDown:
		d.mu.Lock()
		for l := range d.links {
			if d.links[l] {
				d.links[l] = false
				break
			}
		}
		d.mu.Unlock()
	case faultspec.GPULost:
		d.mu.Lock()
		d.lost = true
		// Its job dies with it.
		d.stopJob()
		d.mu.Unlock()
	}
}

// Heal clears a thermal fault and brings a lost GPU back, as a cooled rack
// or a reseated GPU would.
func (b *Backend) Heal(gpu int) {
	if gpu >= len(b.devices) {
		return
	}
	d := b.devices[gpu]
	d.mu.Lock()
	d.forcedTemp = 0
	d.lost = false
	d.mu.Unlock()
}

func (b *Backend) emitXID(d *Device, xid uint64) {
	d.mu.Lock()
	sets := slices.Clone(d.eventSets)
	d.mu.Unlock()
	for _, s := range sets {
		select {
		case s.ch <- nvml.EventData{Device: d, EventType: nvml.EventTypeXidCriticalError, EventData: xid}:
		default:
			// A full event queue drops the XID, as a driver's would.
		}
	}
}

// scheduleChaos injects a random fault after an exponentially distributed
// wait, then schedules the next.
func (b *Backend) scheduleChaos(mean time.Duration) {
	b.mu.Lock()
	wait := time.Duration(b.rng.ExpFloat64() * float64(mean))
	b.mu.Unlock()
	b.after(wait, func() {
		b.chaos()
		b.scheduleChaos(mean)
	})
}

func (b *Backend) chaos() {
	b.mu.Lock()
	gpu := b.rng.IntN(len(b.devices))
	roll := b.rng.Float64()
	xid := simload.ChaosXIDs[b.rng.IntN(len(simload.ChaosXIDs))]
	heal := time.Duration(60+b.rng.IntN(120)) * time.Second
	b.mu.Unlock()
	// About one fault in twelve takes a GPU out of service.
	switch {
	case roll < 0.865:
		b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: xid, GPU: gpu})
	case roll < 0.965:
		b.Inject(faultspec.Spec{Kind: faultspec.Temp, Value: slowdownTemp + 5, GPU: gpu})
		b.after(heal, func() { b.Heal(gpu) })
	case roll < 0.975:
		b.Inject(faultspec.Spec{Kind: faultspec.ECCDBE, GPU: gpu})
	case roll < 0.985:
		b.Inject(faultspec.Spec{Kind: faultspec.RowRemapPending, GPU: gpu})
	case roll < 0.995:
		b.Inject(faultspec.Spec{Kind: faultspec.NVLinkDown, GPU: gpu})
	default:
		b.Inject(faultspec.Spec{Kind: faultspec.GPULost, GPU: gpu})
	}
}

// Device is one simulated GPU.
type Device struct {
	*server.Device
	backend *Backend
	index   int

	mu         sync.Mutex
	eventSets  []*eventSet
	serial     string
	load       simload.GPU
	forcedTemp float64 // °C; 0 when no thermal fault
	lost       bool

	eccVolatileCorr, eccVolatileUnc   uint64
	eccAggregateCorr, eccAggregateUnc uint64
	remapCorrected, remapUncorrected  int
	remapPending, remapFailure        bool
	links                             []bool
	pcieReplays                       int
	pids                              []uint32
	job                               *simJob
}

// simJob is the process standing in for the job of a busy phase.
type simJob struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and been reaped
}

// AttachProcess reports pid as a compute process on this GPU for as long as
// the process lives. Tests use real child processes to stand in for jobs.
func (d *Device) AttachProcess(pid uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pids = append(d.pids, pid)
}

// advance moves the workload on to now. The caller holds d.mu.
func (d *Device) advance() {
	now := d.backend.clock.Now()
	d.backend.mu.Lock()
	jobs := d.backend.jobBin != ""
	if jobs {
		// A job that ended stops the GPU's work before time moves on.
		d.reapJob(now)
	}
	dt := d.load.Advance(d.backend.rng, now)
	if jobs {
		d.startJob(now)
	}
	d.backend.mu.Unlock()
	// A busy GPU sees a corrected ECC error every ten minutes or so.
	if d.load.Util > 50 && rand.Float64() < dt/600 {
		d.eccVolatileCorr++
		d.eccAggregateCorr++
	}
}

// Jobs: each busy phase of the workload runs one job process. reapJob ends
// the phase when its job ended (finished, or signalled by a drain) and the
// job when its phase ended; startJob starts one for a busy phase that has
// none, if the node takes work. The caller holds d.mu and the backend's
// lock.

func (d *Device) reapJob(now time.Time) {
	if d.job == nil {
		return
	}
	switch {
	case !alive(d.job.pid()):
		d.stopJob()
		if d.load.Busy() {
			d.load.Rest(d.backend.rng, now)
		}
	case !d.load.Busy() || d.load.Remaining(now) <= 0:
		d.stopJob()
	}
}

func (d *Device) startJob(now time.Time) {
	b := d.backend
	if d.job != nil || !d.load.Busy() || b.stopped {
		return
	}
	if !b.schedulable.Load() {
		d.load.Rest(b.rng, now)
		return
	}
	secs := int(d.load.Remaining(now).Seconds()) + 1
	cmd := exec.Command(b.jobBin, strconv.Itoa(secs))
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		d.load.Rest(b.rng, now)
		return
	}
	j := &simJob{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(j.done)
	}()
	d.job = j
	d.pids = append(d.pids, uint32(cmd.Process.Pid))
}

func (j *simJob) pid() uint32 { return uint32(j.cmd.Process.Pid) }

// stopJob kills the device's job, if any, and forgets its pid at once, so
// that a pid the kernel hands out again is never taken for it. The caller
// holds d.mu.
func (d *Device) stopJob() {
	if d.job == nil {
		return
	}
	_ = d.job.cmd.Process.Kill()
	<-d.job.done
	pid := d.job.pid()
	d.pids = slices.DeleteFunc(d.pids, func(p uint32) bool { return p == pid })
	d.job = nil
}

// alive reports whether pid runs: it exists and has not exited.
func alive(pid uint32) bool {
	err := syscall.Kill(int(pid), 0)
	return (err == nil || err == syscall.EPERM) && !zombie(pid)
}

func (d *Device) livePIDs() []uint32 {
	kept := d.pids[:0]
	for _, pid := range d.pids {
		if alive(pid) {
			kept = append(kept, pid)
		}
	}
	d.pids = kept
	return kept
}

// read runs fn with the device advanced and locked, or reports a lost GPU.
func (d *Device) read(fn func()) nvml.Return {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lost {
		return nvml.ERROR_GPU_IS_LOST
	}
	d.advance()
	fn()
	return nvml.SUCCESS
}

func (d *Device) currentTemp() uint32 {
	if d.forcedTemp > 0 {
		return uint32(d.forcedTemp)
	}
	return uint32(math.Round(float64(d.load.Temp)))
}

// GetUUID returns the GPU's UUID.
func (d *Device) GetUUID() (string, nvml.Return) {
	var v string
	ret := d.read(func() { v = d.UUID })
	return v, ret
}

// GetName returns the product name.
func (d *Device) GetName() (string, nvml.Return) {
	var v string
	ret := d.read(func() { v = d.Config.Name })
	return v, ret
}

// GetSerial returns the board serial.
func (d *Device) GetSerial() (string, nvml.Return) {
	var v string
	ret := d.read(func() { v = d.serial })
	return v, ret
}

// GetPciInfo returns the PCI identity with the bus id filled in.
func (d *Device) GetPciInfo() (nvml.PciInfo, nvml.Return) {
	var p nvml.PciInfo
	ret := d.read(func() {
		p.PciDeviceId = d.Config.PciDeviceId
		p.Bus = uint32(0x18 + d.index*0x10)
		for i, c := range []byte(d.PciBusID) {
			if i < len(p.BusId)-1 {
				p.BusId[i] = int8(c)
			}
		}
	})
	return p, ret
}

// GetMemoryInfo returns the framebuffer size and use.
func (d *Device) GetMemoryInfo() (nvml.Memory, nvml.Return) {
	var m nvml.Memory
	ret := d.read(func() {
		m.Total = d.MemoryInfo.Total
		used := uint64(0)
		if d.load.Util > 10 {
			used = min(uint64(memoryPerJobGB<<30)+uint64(d.load.Util)*(64<<20), m.Total)
		}
		m.Used = used + 512<<20
		m.Free = m.Total - m.Used
	})
	return m, ret
}

// GetTemperature returns the core temperature.
func (d *Device) GetTemperature(nvml.TemperatureSensors) (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() { v = d.currentTemp() })
	return v, ret
}

// GetTemperatureThreshold returns the slowdown or shutdown threshold.
func (d *Device) GetTemperatureThreshold(t nvml.TemperatureThresholds) (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() {
		v = slowdownTemp
		if t == nvml.TEMPERATURE_THRESHOLD_SHUTDOWN {
			v = shutdownTemp
		}
	})
	return v, ret
}

// GetPowerUsage returns the power draw in milliwatts.
func (d *Device) GetPowerUsage() (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() { v = d.load.PowerMilliwatts() })
	return v, ret
}

// GetEnforcedPowerLimit returns the power limit in milliwatts.
func (d *Device) GetEnforcedPowerLimit() (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() { v = simload.PowerLimitMilliwatts })
	return v, ret
}

// GetUtilizationRates returns GPU and memory utilisation.
func (d *Device) GetUtilizationRates() (nvml.Utilization, nvml.Return) {
	var u nvml.Utilization
	ret := d.read(func() {
		u.Gpu = uint32(math.Round(float64(min(d.load.Util, 100))))
		u.Memory = uint32(math.Round(float64(min(d.load.Util*0.6, 100))))
	})
	return u, ret
}

// GetClockInfo returns the SM or memory clock in MHz.
func (d *Device) GetClockInfo(t nvml.ClockType) (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() {
		switch t {
		case nvml.CLOCK_MEM:
			v = memClock
		default:
			v = uint32(smClockIdle + (smClockMax-smClockIdle)*min(d.load.Util/60, 1))
			if d.forcedTemp >= slowdownTemp {
				v = v * 6 / 10
			}
		}
	})
	return v, ret
}

// GetCurrentClocksEventReasons returns the clock-event reason bitmask.
func (d *Device) GetCurrentClocksEventReasons() (uint64, nvml.Return) {
	var v uint64
	ret := d.read(func() {
		if d.load.Util < 5 {
			v |= nvml.ClocksEventReasonGpuIdle
		}
		if d.forcedTemp >= slowdownTemp {
			v |= nvml.ClocksThrottleReasonHwSlowdown | nvml.ClocksThrottleReasonHwThermalSlowdown
		}
	})
	return v, ret
}

// GetTotalEccErrors returns an ECC counter.
func (d *Device) GetTotalEccErrors(t nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
	var v uint64
	ret := d.read(func() {
		switch {
		case t == nvml.MEMORY_ERROR_TYPE_CORRECTED && c == nvml.VOLATILE_ECC:
			v = d.eccVolatileCorr
		case t == nvml.MEMORY_ERROR_TYPE_UNCORRECTED && c == nvml.VOLATILE_ECC:
			v = d.eccVolatileUnc
		case t == nvml.MEMORY_ERROR_TYPE_CORRECTED:
			v = d.eccAggregateCorr
		default:
			v = d.eccAggregateUnc
		}
	})
	return v, ret
}

// GetRemappedRows returns the remapped-row state.
func (d *Device) GetRemappedRows() (int, int, bool, bool, nvml.Return) {
	var corr, unc int
	var pending, failure bool
	ret := d.read(func() {
		corr, unc, pending, failure = d.remapCorrected, d.remapUncorrected, d.remapPending, d.remapFailure
	})
	return corr, unc, pending, failure, ret
}

// GetRetiredPages is unsupported on H100, which remaps rows instead.
func (d *Device) GetRetiredPages(nvml.PageRetirementCause) ([]uint64, nvml.Return) {
	if ret := d.read(func() {}); ret != nvml.SUCCESS {
		return nil, ret
	}
	return nil, nvml.ERROR_NOT_SUPPORTED
}

// GetRetiredPagesPendingStatus is unsupported on H100.
func (d *Device) GetRetiredPagesPendingStatus() (nvml.EnableState, nvml.Return) {
	if ret := d.read(func() {}); ret != nvml.SUCCESS {
		return 0, ret
	}
	return 0, nvml.ERROR_NOT_SUPPORTED
}

// GetNvLinkState returns one link's state.
func (d *Device) GetNvLinkState(link int) (nvml.EnableState, nvml.Return) {
	var st nvml.EnableState
	inRange := true
	ret := d.read(func() {
		if link < 0 || link >= len(d.links) {
			inRange = false
			return
		}
		if d.links[link] {
			st = nvml.FEATURE_ENABLED
		}
	})
	if ret == nvml.SUCCESS && !inRange {
		return 0, nvml.ERROR_INVALID_ARGUMENT
	}
	return st, ret
}

// GetPcieReplayCounter returns the PCIe replay counter.
func (d *Device) GetPcieReplayCounter() (int, nvml.Return) {
	var v int
	ret := d.read(func() { v = d.pcieReplays })
	return v, ret
}

// GetComputeRunningProcesses returns the attached processes that still run.
func (d *Device) GetComputeRunningProcesses() ([]nvml.ProcessInfo, nvml.Return) {
	var out []nvml.ProcessInfo
	ret := d.read(func() {
		for _, pid := range d.livePIDs() {
			out = append(out, nvml.ProcessInfo{Pid: pid, UsedGpuMemory: 8 << 30})
		}
	})
	return out, ret
}

// RegisterEvents subscribes an event set to this GPU's XIDs.
func (d *Device) RegisterEvents(types uint64, set nvml.EventSet) nvml.Return {
	s, ok := set.(*eventSet)
	if !ok {
		return nvml.ERROR_INVALID_ARGUMENT
	}
	if types&nvml.EventTypeXidCriticalError == 0 {
		return nvml.SUCCESS
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lost {
		return nvml.ERROR_GPU_IS_LOST
	}
	d.eventSets = append(d.eventSets, s)
	return nvml.SUCCESS
}

// eventSet delivers simulated XIDs to Wait.
type eventSet struct {
	mock.EventSet
	ch      chan nvml.EventData
	backend *Backend
}

// Wait returns the next XID, or ERROR_TIMEOUT after timeoutMs.
func (s *eventSet) Wait(timeoutMs uint32) (nvml.EventData, nvml.Return) {
	t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
	defer t.Stop()
	select {
	case e := <-s.ch:
		return e, nvml.SUCCESS
	case <-t.C:
		return nvml.EventData{}, nvml.ERROR_TIMEOUT
	}
}

// Free releases the event set.
func (s *eventSet) Free() nvml.Return { return nvml.SUCCESS }
