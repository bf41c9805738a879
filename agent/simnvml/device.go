package simnvml

import (
	"math"
	"math/rand/v2"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/navarch/navarch/internal/simload"
)

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
