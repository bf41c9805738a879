// Package simnvml is a simulated NVML: an nvml.Interface built on go-nvml's
// whole-server mock (pkg/nvml/mock/server with H100 GPUs, as in
// mock/dgxh100), so a simulated node runs exactly the agent code a real one
// does. Telemetry follows a simulated workload, and faults are injected on a
// schedule (--sim-fault) or at random (chaos); a control directory can steer
// the workload and inject faults while the node runs. Faults behave as on real
// hardware: an XID is also written to a simulated kernel log as the driver
// writes it, XID 79 takes the GPU off the bus, and a simulated GPU reset
// (ResetGPU) or reboot (Reboot) clears what a real one clears. A node keeps
// its GPUs' UUIDs across agent restarts, and its boot id and kernel log
// too, in the agent's state directory, until it reboots.
//
// The per-poll calls are methods of this package's own Device type rather
// than the mock's function fields: go-nvml's mocks record every call they
// receive, which would grow a long-running simulated agent's memory without
// bound.
package simnvml

import (
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"strings"
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
	memoryMaxTemp  = 95 // °C, the HBM's
	pcieLinkWidth  = 16
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
	// Clock drives the workload, the fault schedule and the kernel log's
	// timestamps; nil means real time.
	Clock clockwork.Clock
	// NodeID and Seed make the GPUs' identity (UUIDs, serials): the same
	// for the same node id and seed, in every process. Without a node id
	// each Backend is a node of its own.
	NodeID string
	// Seed also makes the workload and chaos repeatable; 0 picks a random
	// seed for those, and leaves the identity to the node id.
	Seed uint64
	// StateDir is the agent's state directory, where the simulated node
	// keeps its boot id and kernel log across agent restarts; created if
	// missing. Empty, or not writable (see StateError), the boot id is
	// derived from the node id and seed and the kernel log lives in memory.
	StateDir string
	// Idle keeps the GPUs idle instead of running a simulated workload.
	Idle bool
	// Jobs runs a real process (sleep) on each GPU for each busy phase of
	// the workload, listed as the GPU's compute process: a drain waits for
	// it, and a forced drain signals it. A GPU whose job ends goes idle.
	// No new job starts while SetSchedulable(false) is in force.
	Jobs bool
	// ControlDir, when set, is a directory read every ControlInterval,
	// from New on, to steer the node from outside: its utilization file
	// and the node's faults file (see UtilizationFile and FaultsSuffix).
	ControlDir string
	// Logger hears what the control directory changed, and what in it
	// was ignored; nil discards it.
	Logger *slog.Logger
}

// Backend is the simulated NVML library.
type Backend struct {
	*server.Server
	clock   clockwork.Clock
	devices []*Device
	klog    *kernelLog

	// The node's identity, and where its boot is kept.
	node     string
	idSeed   uint64
	stateDir string

	mu       sync.Mutex
	rng      *rand.Rand
	sets     []*eventSet
	timers   []clockwork.Timer
	stopped  bool
	bootID   string
	stateErr error

	// jobBin is the program a simulated job runs; empty without jobs.
	jobBin      string
	schedulable atomic.Bool

	// stopControl ends the goroutine following the control directory,
	// and controlDone is closed once it has; both nil without one.
	stopControl chan struct{}
	controlDone chan struct{}
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
	node := o.NodeID
	if node == "" {
		// A random name: a node of its own.
		node = randomBootID()
	}
	srv, _ := server.New(
		server.WithGPUs(gpus.Multiple(o.GPUs, gpus.H100_SXM5_80GB)...),
		server.WithDriverVersion("550.54.15"),
		server.WithNVMLVersion("12.550.54.15"),
		server.WithCUDADriverVersion(12040),
	)
	b := &Backend{
		Server: srv, clock: o.Clock, klog: newKernelLog(),
		node: node, idSeed: o.Seed, stateDir: o.StateDir,
		rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
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
		dev.nvlinkErrors = make([][nvlinkCounterKinds]uint64, nvlinkCount)
		dev.UUID = gpuUUID(node, o.Seed, i)
		dev.serial = gpuSerial(node, o.Seed, i)
		dev.PciBusID = nvmlBusID(i)
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
	srv.DeviceGetHandleByPciBusIdFunc = func(busID string) (nvml.Device, nvml.Return) {
		for i, d := range b.devices {
			if strings.EqualFold(busID, d.PciBusID) || strings.EqualFold(busID, nvmlBusID(i)[4:]) {
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
	b.openBoot(now)
	for _, f := range o.Faults {
		b.Schedule(f)
	}
	if o.ChaosInterval > 0 {
		b.scheduleChaos(o.ChaosInterval)
	}
	if o.ControlDir != "" {
		b.followControl(o.ControlDir, o.Logger)
	}
	return b
}

// followControl reads the control directory once, so that the first reads
// of the GPUs see it, then every ControlInterval until Stop.
func (b *Backend) followControl(dir string, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := newControl(b, dir, log)
	c.check()
	b.stopControl, b.controlDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(b.controlDone)
		c.follow(b.stopControl)
	}()
}

// Stop stops following the control directory, cancels pending faults and
// chaos and ends the simulated jobs.
func (b *Backend) Stop() {
	b.mu.Lock()
	stopControl := b.stopControl
	b.stopControl = nil
	b.mu.Unlock()
	if stopControl != nil {
		close(stopControl)
		<-b.controlDone
	}
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
