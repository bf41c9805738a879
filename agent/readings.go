package agent

import (
	"context"
	"time"

	"github.com/navarch/navarch/agent/gpu"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// pollLoop reads the GPUs on its own schedule, so NVML never waits on the
// network and the network never waits on NVML.
func (a *Agent) pollLoop(ctx context.Context) {
	t := a.clock.NewTicker(a.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
			a.poll(a.clock.Now())
		}
	}
}

// poll reads every GPU, keeps the reading, and pushes an event for every
// condition that started since the last poll.
func (a *Agent) poll(now time.Time) {
	// One poll at a time: each compares its reading with the one before.
	a.pollMu.Lock()
	defer a.pollMu.Unlock()
	readings := a.reader.Read(now)
	a.mu.Lock()
	prev := a.latest
	a.latest = readings
	a.mu.Unlock()
	for i := range readings {
		var p *gpu.Reading
		if prev != nil {
			p = &prev[i]
		}
		evs := detect(a.inv.GPUs[i], p, &readings[i])
		for _, e := range evs {
			a.log.Warn("GPU condition", "gpu", i, "kind", e.GetKind(), "detail", e.GetMessage())
		}
		a.buf.push(evs...)
	}
}

func (a *Agent) samples() []*fleetv1.GpuSample {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*fleetv1.GpuSample, 0, len(a.latest))
	for _, r := range a.latest {
		if r.Lost {
			continue
		}
		out = append(out, sampleOf(r.Metrics))
	}
	return out
}

func (a *Agent) snapshot() ([]*fleetv1.GpuMetrics, uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*fleetv1.GpuMetrics
	for _, r := range a.latest {
		if !r.Lost {
			out = append(out, r.Metrics)
		}
	}
	return out, uint32(len(out))
}

// Readings no GPU can show, the bounds docs/api.md gives for heartbeat
// samples: the control plane refuses a heartbeat that carries one, so one
// glitched sensor read would cost the node its heartbeat.
const (
	maxSaneTemperature = 200        // °C
	maxSanePower       = 10_000_000 // mW
	maxSaneProcesses   = 4096
)

// sampleOf is a GPU's heartbeat sample. A reading past what a GPU can show
// goes as 0, not read, rather than as a value the control plane refuses.
func sampleOf(m *fleetv1.GpuMetrics) *fleetv1.GpuSample {
	s := &fleetv1.GpuSample{
		GpuIndex:              m.GetGpuIndex(),
		UtilizationGpuPercent: min(m.GetUtilizationGpuPercent(), 100),
		TemperatureCelsius:    m.GetTemperatureCelsius(),
		PowerUsageMilliwatts:  m.GetPowerUsageMilliwatts(),
		MemoryUsedBytes:       m.GetMemoryUsedBytes(),
		ProcessCount:          uint32(min(len(m.GetProcesses()), maxSaneProcesses)),
	}
	if s.TemperatureCelsius > maxSaneTemperature {
		s.TemperatureCelsius = 0
	}
	if s.PowerUsageMilliwatts > maxSanePower {
		s.PowerUsageMilliwatts = 0
	}
	return s
}
