package agent

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent/gpu"
	"github.com/navarch/navarch/internal/health"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// condition is how the agent sees one fault signal start between two
// readings of a GPU. The control plane's policy judges what it means and,
// for a level condition, re-checks it on every snapshot against the same
// thresholds: the GPU's own, which the agent reports at registration
// (slowdown and memory temperature, NVLink links), and the shared ones in
// internal/health (sustained slowdown, retired pages, PCIe replay rate).
// Burst thresholds, a rise between two readings that no snapshot shows,
// are the agent's alone and are written here.
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
		kind: fleetv1.EventKind_EVENT_KIND_MEMORY_THERMAL,
		began: became(func(g *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool {
			limit, t := g.GetMemoryMaxTemperatureCelsius(), m.GetMemoryTemperatureCelsius()
			return limit > 0 && t >= limit
		}),
		describe: func(g *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			t := cur.GetMemoryTemperatureCelsius()
			return uint64(t), fmt.Sprintf("memory temperature %d°C at or past its limit of %d°C", t, g.GetMemoryMaxTemperatureCelsius())
		},
	},
	{
		// The power brake has its own row below (gpu.HWSlowdown leaves it
		// out): it says check the power supply, not the cooling.
		kind:  fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN,
		began: became(func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool { return gpu.HWSlowdown(m.GetClockEventReasons()) }),
		describe: func(_ *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			r := cur.GetClockEventReasons()
			return r, fmt.Sprintf("hardware slowdown clock event (reasons 0x%x)", r)
		},
	},
	sustained(fleetv1.EventKind_EVENT_KIND_HW_SLOWDOWN_SUSTAINED, "hardware slowdown",
		func(m *fleetv1.GpuMetrics) uint32 { return m.GetHwSlowdownSeconds() }),
	sustained(fleetv1.EventKind_EVENT_KIND_POWER_BRAKE, "the power brake",
		func(m *fleetv1.GpuMetrics) uint32 { return m.GetPowerBrakeSeconds() }),
	{
		kind: fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN,
		// Each link that goes down is news, beside others already down.
		began: func(_ *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) bool { return len(linksDown(prev, cur)) > 0 },
		describe: func(_ *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) (uint64, string) {
			down := linksDown(prev, cur)
			return uint64(len(down)), fmt.Sprintf("NVLink links down: %v", down)
		},
	},
	{
		kind: fleetv1.EventKind_EVENT_KIND_NVLINK_ERRORS,
		began: func(_ *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) bool {
			recovery, crcReplay, _ := nvlinkErrorRise(prev, cur)
			return recovery > 0 || crcReplay >= nvlinkErrorBurst
		},
		describe: func(_ *fleetv1.Gpu, prev, cur *fleetv1.GpuMetrics) (uint64, string) {
			recovery, crcReplay, links := nvlinkErrorRise(prev, cur)
			return recovery + crcReplay, "NVLink errors since the last poll: " + strings.Join(links, "; ")
		},
	},
	{
		kind: fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY,
		began: became(func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool {
			return m.GetPcieReplaysPerMinute() >= health.PCIeReplayLimit(m.GetPcieLinkGeneration(), m.GetPcieLinkWidth())
		}),
		describe: func(_ *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			gen, width, rate := cur.GetPcieLinkGeneration(), cur.GetPcieLinkWidth(), cur.GetPcieReplaysPerMinute()
			return uint64(rate), fmt.Sprintf("PCIe replays %d/min on %s (limit %d/min)",
				rate, gpu.PCIeLinkWords(gen, width), health.PCIeReplayLimit(gen, width))
		},
	},
	{
		kind: fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_LIMIT,
		began: became(func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool {
			return health.RetiredPagesExceeded(m.GetRetiredPages())
		}),
		describe: func(_ *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			rp := cur.GetRetiredPages()
			return uint64(rp.GetSingleBit() + rp.GetDoubleBit()), fmt.Sprintf(
				"retired pages past the replacement limit: %d for single-bit errors, %d for double-bit errors (%d in the last week)",
				rp.GetSingleBit(), rp.GetDoubleBit(), rp.GetDoubleBitLastWeek())
		},
	},
	recovery(fleetv1.EventKind_EVENT_KIND_RECOVERY_RESET,
		fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET, fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET),
	recovery(fleetv1.EventKind_EVENT_KIND_RECOVERY_REBOOT, fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT),
	recovery(fleetv1.EventKind_EVENT_KIND_RECOVERY_DRAIN_P2P, fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_P2P),
}

// nvlinkErrorBurst is the rise of NVLink CRC and replay errors, summed over
// a GPU's links, between two readings that makes an event. Any recovery
// (a link that retrained) makes one at once.
const nvlinkErrorBurst = 100

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

// sustained is a condition that starts when a slowdown, timed by the
// reader, has held the clocks down for health.SustainedSlowdown.
func sustained(kind fleetv1.EventKind, what string, seconds func(*fleetv1.GpuMetrics) uint32) condition {
	limit := uint32(health.SustainedSlowdown / time.Second)
	return condition{
		kind:  kind,
		began: became(func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool { return seconds(m) >= limit }),
		describe: func(_ *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			s := seconds(cur)
			return uint64(s), fmt.Sprintf("%s has held the clocks down for %ds (reasons 0x%x)", what, s, cur.GetClockEventReasons())
		},
	}
}

// recovery is a condition that starts when the driver's recovery action
// turns to one of actions.
func recovery(kind fleetv1.EventKind, actions ...fleetv1.RecoveryAction) condition {
	return condition{
		kind: kind,
		began: became(func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool {
			return slices.Contains(actions, m.GetRecoveryAction())
		}),
		describe: func(_ *fleetv1.Gpu, _, cur *fleetv1.GpuMetrics) (uint64, string) {
			a := cur.GetRecoveryAction()
			return uint64(a), gpu.RecoveryActionWords(a)
		},
	}
}

// nvlinkErrorRise is how far the NVLink error counters rose from prev to
// cur: recoveries, and CRC plus replay errors, summed over the links both
// readings have, with a description of each link that rose. As for a
// burst, counters are no rate on a first reading, nor where a reading
// lacks them, and a counter that went down (a driver reload) did not rise.
func nvlinkErrorRise(prev, cur *fleetv1.GpuMetrics) (recovery, crcReplay uint64, links []string) {
	if prev.GetTime() == nil || slices.Contains(prev.GetUnsupported(), gpu.GroupNVLinkErrors) ||
		slices.Contains(cur.GetUnsupported(), gpu.GroupNVLinkErrors) {
		return 0, 0, nil
	}
	rise := func(p, c uint64) uint64 { return c - min(p, c) }
	for _, c := range cur.GetNvlinks() {
		i := slices.IndexFunc(prev.GetNvlinks(), func(p *fleetv1.NvLinkState) bool { return p.GetLink() == c.GetLink() })
		if i < 0 {
			continue
		}
		p := prev.GetNvlinks()[i]
		rec, crc, replay := rise(p.GetRecoveryErrors(), c.GetRecoveryErrors()), rise(p.GetCrcErrors(), c.GetCrcErrors()), rise(p.GetReplayErrors(), c.GetReplayErrors())
		if rec+crc+replay == 0 {
			continue
		}
		recovery += rec
		crcReplay += crc + replay
		var rose []string
		for _, n := range []struct {
			name string
			by   uint64
		}{{"recoveries", rec}, {"CRC errors", crc}, {"replays", replay}} {
			if n.by > 0 {
				rose = append(rose, fmt.Sprintf("%s +%d", n.name, n.by))
			}
		}
		links = append(links, fmt.Sprintf("link %d: %s", c.GetLink(), strings.Join(rose, ", ")))
	}
	return recovery, crcReplay, links
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
