package agent

import (
	"fmt"
	"slices"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent/gpu"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// condition is how the agent sees one fault signal start between two
// readings of a GPU. The control plane's policy judges what it means and,
// for a level condition, re-checks it on every snapshot against the same
// thresholds: the GPU's own, which the agent reports at registration
// (slowdown temperature, NVLink links). Rate thresholds are the agent's
// alone and are written here.
type condition struct {
	kind fleetv1.EventKind
	// began reports whether the condition started between prev and cur.
	began func(g *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) bool
	// describe gives the started condition's event value and message.
	describe func(g *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) (uint64, string)
}

// conditions is every non-XID signal read from a GPU's metrics, in the
// order detect reports them. A lost GPU is told from the reading itself,
// not its metrics.
var conditions = []condition{
	{
		kind: fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED,
		// Every rise is news, not only the first error.
		began: func(_ *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) bool {
			return cur.GetEcc().GetVolatileUncorrected() > prev.GetEcc().GetVolatileUncorrected()
		},
		describe: func(_ *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			n := cur.GetEcc().GetVolatileUncorrected()
			return n, fmt.Sprintf("volatile uncorrected ECC errors: %d", n)
		},
	},
	burst(fleetv1.EventKind_EVENT_KIND_ECC_CORRECTED_RATE, 100, "%d corrected ECC errors since the last poll",
		func(m *fleetv1.GpuMetrics) (uint64, bool) {
			return m.GetEcc().GetVolatileCorrected(), m.GetEcc() != nil
		}),
	{
		kind:  fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING,
		began: became(func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool { return m.GetRowRemap().GetPending() }),
		describe: func(_ *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			n := cur.GetRowRemap().GetUncorrectedRows()
			return uint64(n), fmt.Sprintf("row remap pending (%d rows remapped for uncorrectable errors)", n)
		},
	},
	{
		kind:  fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE,
		began: became(func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool { return m.GetRowRemap().GetFailure() }),
		describe: func(*fleetv1.Gpu, *fleetv1.GpuMetrics, *fleetv1.GpuMetrics) (uint64, string) {
			return 0, "row remapping failed"
		},
	},
	{
		kind:  fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_PENDING,
		began: became(func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool { return m.GetRetiredPages().GetPending() }),
		describe: func(_ *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			return uint64(cur.GetRetiredPages().GetDoubleBit()), "retired pages pending a GPU reset"
		},
	},
	{
		kind: fleetv1.EventKind_EVENT_KIND_THERMAL,
		began: became(func(g *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool {
			slow := g.GetSlowdownTemperatureCelsius()
			return slow > 0 && m.GetTemperatureCelsius() >= slow
		}),
		describe: func(g *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			t := cur.GetTemperatureCelsius()
			return uint64(t), fmt.Sprintf("temperature %d°C at or past the slowdown threshold of %d°C", t, g.GetSlowdownTemperatureCelsius())
		},
	},
	{
		kind:  fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN,
		began: became(func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool { return m.GetClockEventReasons()&hwSlowdown != 0 }),
		describe: func(_ *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			r := cur.GetClockEventReasons()
			return r, fmt.Sprintf("hardware slowdown clock event (reasons 0x%x)", r)
		},
	},
	{
		kind: fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN,
		// Each link that goes down is news, beside others already down.
		began: func(_ *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) bool { return len(linksDown(prev, cur)) > 0 },
		describe: func(_ *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) (uint64, string) {
			down := linksDown(prev, cur)
			return uint64(len(down)), fmt.Sprintf("NVLink links down: %v", down)
		},
	},
	burst(fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY, 100, "%d PCIe replays since the last poll",
		func(m *fleetv1.GpuMetrics) (uint64, bool) { return m.GetPcieReplayCount(), true }),
}

// hwSlowdown are the clock-event reasons that mean hardware slowed the GPU.
const hwSlowdown = nvml.ClocksThrottleReasonHwSlowdown | nvml.ClocksThrottleReasonHwThermalSlowdown | nvml.ClocksThrottleReasonHwPowerBrakeSlowdown

// became is a condition that starts when shows turns true.
func became(shows func(g *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool) func(g *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) bool {
	return func(g *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) bool { return shows(g, cur) && !shows(g, prev) }
}

// burst is a rate condition: counter rose by at least limit since the
// previous reading. A counter is no rate on the first reading, which has
// no previous one, nor where a reading lacks it.
func burst(kind fleetv1.EventKind, limit uint64, format string, counter func(*fleetv1.GpuMetrics) (uint64, bool)) condition {
	rise := func(prev, cur *fleetv1.GpuMetrics) uint64 {
		p, pok := counter(prev)
		c, cok := counter(cur)
		if prev.GetTime() == nil || !pok || !cok {
			return 0
		}
		return c - min(p, c)
	}
	return condition{
		kind:  kind,
		began: func(_ *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) bool { return rise(prev, cur) >= limit },
		describe: func(_ *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) (uint64, string) {
			d := rise(prev, cur)
			return d, fmt.Sprintf(format, d)
		},
	}
}

// linksDown lists the NVLink links up in prev and down in cur.
func linksDown(prev, cur *fleetv1.GpuMetrics) []uint32 {
	var down []uint32
	for _, l := range cur.GetNvlinks() {
		if l.GetActive() {
			continue
		}
		if slices.ContainsFunc(prev.GetNvlinks(), func(p *fleetv1.NvLinkState) bool { return p.GetLink() == l.GetLink() && p.GetActive() }) {
			down = append(down, l.GetLink())
		}
	}
	return down
}

// detect compares one GPU's reading with the previous one and returns an
// event for every condition that started (or, for a lost GPU, ended). The
// agent pushes these at once rather than waiting for the next report. prev
// is nil for the first reading, which is compared with a healthy GPU.
func detect(g *fleetv1.Gpu, prev, cur *gpu.Reading) []*fleetv1.HealthEvent {
	if prev == nil {
		prev = &gpu.Reading{Metrics: &fleetv1.GpuMetrics{}}
		for l := range g.GetNvlinkCount() {
			prev.Metrics.Nvlinks = append(prev.Metrics.Nvlinks, &fleetv1.NvLinkState{Link: l, Active: true})
		}
	}
	var out []*fleetv1.HealthEvent
	add := func(kind fleetv1.EventKind, value uint64, message string) {
		out = append(out, &fleetv1.HealthEvent{
			Kind:     kind,
			GpuIndex: int32(g.GetIndex()),
			GpuUuid:  g.GetUuid(),
			Time:     cur.Metrics.GetTime(),
			Message:  message,
			Value:    value,
		})
	}
	switch {
	case cur.Lost && !prev.Lost:
		add(fleetv1.EventKind_EVENT_KIND_GPU_LOST, 0, cur.LostReason)
		return out
	case !cur.Lost && prev.Lost:
		add(fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED, 0, "GPU answers NVML again")
	case cur.Lost:
		return nil
	}
	for _, c := range conditions {
		if c.began(g, prev.Metrics, cur.Metrics) {
			value, message := c.describe(g, prev.Metrics, cur.Metrics)
			add(c.kind, value, message)
		}
	}
	return out
}

func xidEvent(e gpu.XIDEvent) *fleetv1.HealthEvent {
	return &fleetv1.HealthEvent{
		Kind:     fleetv1.EventKind_EVENT_KIND_XID,
		GpuIndex: int32(e.GPU),
		GpuUuid:  e.UUID,
		Xid:      uint32(e.XID),
		Time:     timestamppb.New(e.Time),
		Message:  fmt.Sprintf("XID %d reported by the driver", e.XID),
	}
}
