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
	"math/rand/v2"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/internal/faultspec"
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
