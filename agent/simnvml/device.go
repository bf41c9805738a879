package simnvml

import (
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/navarch/navarch/internal/simload"
)

// Device is one simulated GPU.
type Device struct {
	*server.Device
	backend *Backend
	index   int

	mu        sync.Mutex
	now       time.Time // when the simulation last moved on, for the reads
	eventSets []*eventSet
	serial    string
	load      simload.GPU
	lost      bool

	// Held conditions: a forced core or memory temperature, the power
	// brake and hardware slowdown.
	forcedTemp, forcedMemTemp float64 // °C
	hot, hotMemory            held
	powerBrake, hwSlowdown    held

	eccVolatileCorr, eccVolatileUnc   uint64
	eccAggregateCorr, eccAggregateUnc uint64
	remapCorrected, remapUncorrected  int
	remapPending, remapFailure        bool
	links                             []bool
	nvlinkErrors                      [][nvlinkCounterKinds]uint64 // per link, by nvml.NvLinkErrorCounter
	pcie                              pcieReplays
	retired                           [2][]retiredPage // by nvml.PageRetirementCause
	retiredPending                    bool
	recovery                          nvml.DeviceGpuRecoveryAction
	pids                              []uint32
	job                               *simJob
}

// nvlinkCounterKinds counts the NVLink error counters kept: replay,
// recovery, flit CRC and data CRC.
const nvlinkCounterKinds = 4

// held is a condition that lasts until a time, or until it is cleared
// when until is zero.
type held struct {
	on    bool
	until time.Time
}

// holdFor holds a condition from now for d; 0 holds it until cleared.
func holdFor(now time.Time, d time.Duration) held {
	h := held{on: true}
	if d > 0 {
		h.until = now.Add(d)
	}
	return h
}

func (h held) active(now time.Time) bool {
	return h.on && (h.until.IsZero() || now.Before(h.until))
}

// pcieReplays is the PCIe replay counter: replays counted so far, and those
// a rate adds from a time until another (or for good, when zero).
type pcieReplays struct {
	count    int
	rate     float64 // per minute
	from, to time.Time
}

// at is the counter's value at now.
func (p pcieReplays) at(now time.Time) int {
	if p.rate == 0 {
		return p.count
	}
	end := now
	if !p.to.IsZero() && p.to.Before(end) {
		end = p.to
	}
	if !end.After(p.from) {
		return p.count
	}
	return p.count + int(p.rate*end.Sub(p.from).Minutes())
}

// retiredPage is one page retired, with when.
type retiredPage struct {
	addr uint64
	at   time.Time
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
	d.now = now
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

// memoryAboveCore is how much warmer the HBM runs than the core.
const memoryAboveCore = 4 // °C

func (d *Device) currentTemp() uint32 {
	if d.hot.active(d.now) {
		return uint32(d.forcedTemp)
	}
	return uint32(math.Round(float64(d.load.Temp)))
}

// memoryTemp is the HBM temperature: a few degrees above the core, unless
// a fault holds it.
func (d *Device) memoryTemp() uint32 {
	if d.hotMemory.active(d.now) {
		return uint32(d.forcedMemTemp)
	}
	return d.currentTemp() + memoryAboveCore
}

// thermalSlowdown reports whether the core is hot enough for the hardware
// to slow it.
func (d *Device) thermalSlowdown() bool { return d.currentTemp() >= slowdownTemp }

// reset does what a GPU reset does to the GPU's state: volatile ECC counts
// cleared, a pending row remap and pending page retirements applied, the
// recovery action none and held slowdowns stopped. The caller holds d.mu.
func (d *Device) reset() {
	d.eccVolatileCorr, d.eccVolatileUnc = 0, 0
	d.remapPending = false
	d.retiredPending = false
	d.recovery = nvml.GPU_RECOVERY_ACTION_NONE
	d.powerBrake, d.hwSlowdown = held{}, held{}
}

// powerCycle does what a reboot does: the GPU back on the bus with no
// process, reset, its counters since the driver loaded cleared, its links
// up and every held condition over. The caller holds d.mu.
func (d *Device) powerCycle() {
	d.stopJob()
	d.pids = nil
	d.lost = false
	d.reset()
	d.hot, d.hotMemory = held{}, held{}
	d.pcie = pcieReplays{}
	for l := range d.links {
		d.links[l] = true
		d.nvlinkErrors[l] = [nvlinkCounterKinds]uint64{}
	}
}
