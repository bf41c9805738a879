package agent

import (
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent/gpu"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Thresholds for rate-based signals, per poll.
const (
	eccCorrectedBurst = 100 // corrected ECC errors
	pcieReplayBurst   = 100 // PCIe replays
)

// hwSlowdown are the clock-event reasons that mean hardware slowed the GPU.
const hwSlowdown = nvml.ClocksThrottleReasonHwSlowdown | nvml.ClocksThrottleReasonHwThermalSlowdown | nvml.ClocksThrottleReasonHwPowerBrakeSlowdown

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
	add := func(kind fleetv1.EventKind, value uint64, format string, args ...any) {
		out = append(out, &fleetv1.HealthEvent{
			Kind:     kind,
			GpuIndex: int32(g.GetIndex()),
			GpuUuid:  g.GetUuid(),
			Time:     cur.Metrics.GetTime(),
			Message:  fmt.Sprintf(format, args...),
			Value:    value,
		})
	}
	switch {
	case cur.Lost && !prev.Lost:
		add(fleetv1.EventKind_EVENT_KIND_GPU_LOST, 0, "%s", cur.LostReason)
		return out
	case !cur.Lost && prev.Lost:
		add(fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED, 0, "GPU answers NVML again")
	case cur.Lost:
		return nil
	}
	p, c := prev.Metrics, cur.Metrics
	if c.GetEcc() != nil {
		if n := c.GetEcc().GetVolatileUncorrected(); n > p.GetEcc().GetVolatileUncorrected() {
			add(fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED, n, "volatile uncorrected ECC errors: %d", n)
		}
		if prev.Metrics.GetEcc() != nil {
			if d := c.GetEcc().GetVolatileCorrected() - min(p.GetEcc().GetVolatileCorrected(), c.GetEcc().GetVolatileCorrected()); d >= eccCorrectedBurst {
				add(fleetv1.EventKind_EVENT_KIND_ECC_CORRECTED_RATE, d, "%d corrected ECC errors since the last poll", d)
			}
		}
	}
	if c.GetRowRemap().GetPending() && !p.GetRowRemap().GetPending() {
		add(fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING, uint64(c.GetRowRemap().GetUncorrectedRows()), "row remap pending (%d rows remapped for uncorrectable errors)", c.GetRowRemap().GetUncorrectedRows())
	}
	if c.GetRowRemap().GetFailure() && !p.GetRowRemap().GetFailure() {
		add(fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE, 0, "row remapping failed")
	}
	if c.GetRetiredPages().GetPending() && !p.GetRetiredPages().GetPending() {
		add(fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_PENDING, uint64(c.GetRetiredPages().GetDoubleBit()), "retired pages pending a GPU reset")
	}
	if slow := g.GetSlowdownTemperatureCelsius(); slow > 0 && c.GetTemperatureCelsius() >= slow && p.GetTemperatureCelsius() < slow {
		add(fleetv1.EventKind_EVENT_KIND_THERMAL, uint64(c.GetTemperatureCelsius()), "temperature %d°C at or past the slowdown threshold of %d°C", c.GetTemperatureCelsius(), slow)
	}
	if c.GetClockEventReasons()&hwSlowdown != 0 && p.GetClockEventReasons()&hwSlowdown == 0 {
		add(fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN, c.GetClockEventReasons(), "hardware slowdown clock event (reasons 0x%x)", c.GetClockEventReasons())
	}
	wasUp := make(map[uint32]bool)
	for _, l := range p.GetNvlinks() {
		wasUp[l.GetLink()] = l.GetActive()
	}
	var down []uint32
	for _, l := range c.GetNvlinks() {
		if wasUp[l.GetLink()] && !l.GetActive() {
			down = append(down, l.GetLink())
		}
	}
	if len(down) > 0 {
		add(fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN, uint64(len(down)), "NVLink links down: %v", down)
	}
	if p.GetTime() != nil {
		if d := c.GetPcieReplayCount() - min(p.GetPcieReplayCount(), c.GetPcieReplayCount()); d >= pcieReplayBurst {
			add(fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY, d, "%d PCIe replays since the last poll", d)
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
