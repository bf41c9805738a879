package agent

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent/gpu"
	"github.com/navarch/navarch/internal/health"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func reading(edit func(*fleetv1.GpuMetrics)) *gpu.Reading {
	m := &fleetv1.GpuMetrics{
		Time:                     timestamppb.Now(),
		TemperatureCelsius:       60,
		MemoryTemperatureCelsius: 70,
		Ecc:                      &fleetv1.EccCounts{VolatileCorrected: 10},
		RowRemap:                 &fleetv1.RowRemapState{},
		RetiredPages:             &fleetv1.RetiredPages{SingleBit: 2, DoubleBit: 1},
		PcieReplayCount:          5,
		PcieLinkGeneration:       4,
		PcieLinkWidth:            16,
		RecoveryAction:           fleetv1.RecoveryAction_RECOVERY_ACTION_NONE,
	}
	for l := range 4 {
		m.Nvlinks = append(m.Nvlinks, &fleetv1.NvLinkState{Link: uint32(l), Active: true, CrcErrors: 50, ReplayErrors: 20, RecoveryErrors: 1})
	}
	if edit != nil {
		edit(m)
	}
	return &gpu.Reading{Metrics: m}
}

// detectGPU is the GPU the detect tests read: an H100's thresholds.
var detectGPU = &fleetv1.Gpu{Index: 3, Uuid: "GPU-3", SlowdownTemperatureCelsius: 87, MemoryMaxTemperatureCelsius: 95, NvlinkCount: 4}

// held is a slowdown of reasons held for seconds as of the reading.
func held(reasons uint64, seconds uint32) func(*fleetv1.GpuMetrics) {
	return func(m *fleetv1.GpuMetrics) {
		m.ClockEventReasons = reasons
		if gpu.HWSlowdown(reasons) {
			m.HwSlowdownSeconds = seconds
		}
		if gpu.PowerBrake(reasons) {
			m.PowerBrakeSeconds = seconds
		}
	}
}

// brakeWithGeneric is what NVML reports while the power brake is engaged.
const brakeWithGeneric = nvml.ClocksThrottleReasonHwPowerBrakeSlowdown | nvml.ClocksThrottleReasonHwSlowdown

func TestDetect(t *testing.T) {
	g := detectGPU
	sustained := uint32(health.SustainedSlowdown / time.Second)
	rows := []struct {
		name string
		prev *gpu.Reading // reading(nil) when nil
		cur  *gpu.Reading
		want []fleetv1.EventKind
	}{
		{"nothing", nil, reading(nil), nil},
		{"ecc-dbe", nil, reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileUncorrected = 1 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED}},
		{"sbe-burst", nil, reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileCorrected = 200 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ECC_CORRECTED_RATE}},
		{"remap-pending", nil, reading(func(m *fleetv1.GpuMetrics) { m.RowRemap.Pending = true }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING}},
		{"remap-failure", nil, reading(func(m *fleetv1.GpuMetrics) { m.RowRemap.Failure = true }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE}},
		{"retired-pending", nil, reading(func(m *fleetv1.GpuMetrics) { m.RetiredPages.Pending = true }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_PENDING}},
		{"thermal", nil, reading(func(m *fleetv1.GpuMetrics) { m.TemperatureCelsius = 87 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_THERMAL}},
		{"memory-thermal", nil, reading(func(m *fleetv1.GpuMetrics) { m.MemoryTemperatureCelsius = 95 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_MEMORY_THERMAL}},
		{"memory-below-limit", nil, reading(func(m *fleetv1.GpuMetrics) { m.MemoryTemperatureCelsius = 94 }), nil},
		{"hw-slowdown", nil, reading(func(m *fleetv1.GpuMetrics) { m.ClockEventReasons = nvml.ClocksThrottleReasonHwSlowdown }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN}},
		{"hw-thermal-slowdown", nil, reading(func(m *fleetv1.GpuMetrics) { m.ClockEventReasons = nvml.ClocksThrottleReasonHwThermalSlowdown }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN}},
		{"power-brake-is-no-clock-slowdown", nil, reading(held(nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, 0)), nil},
		// NVML sets its generic HW-slowdown reason beside the power brake's.
		{"power-brake-with-hw-slowdown", nil, reading(held(brakeWithGeneric, 0)), nil},
		{"power-brake-and-thermal", nil, reading(held(brakeWithGeneric|nvml.ClocksThrottleReasonHwThermalSlowdown, 0)), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN}},
		{"hw-slowdown-sustained", reading(held(nvml.ClocksThrottleReasonHwSlowdown, sustained-5)), reading(held(nvml.ClocksThrottleReasonHwSlowdown, sustained)), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_HW_SLOWDOWN_SUSTAINED}},
		{"hw-slowdown-not-yet", reading(held(nvml.ClocksThrottleReasonHwSlowdown, sustained-10)), reading(held(nvml.ClocksThrottleReasonHwSlowdown, sustained-1)), nil},
		{"power-brake", reading(held(brakeWithGeneric, sustained-5)), reading(held(brakeWithGeneric, sustained+3)), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_POWER_BRAKE}},
		{"hw-slowdown-held-longer", reading(held(nvml.ClocksThrottleReasonHwSlowdown, sustained)), reading(held(nvml.ClocksThrottleReasonHwSlowdown, sustained+30)), nil},
		{"power-brake-not-yet", reading(held(nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, sustained-10)), reading(held(nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, sustained-1)), nil},
		{"sw-power-cap-is-fine", nil, reading(func(m *fleetv1.GpuMetrics) { m.ClockEventReasons = nvml.ClocksEventReasonSwPowerCap }), nil},
		{"nvlink-down", nil, reading(func(m *fleetv1.GpuMetrics) { m.Nvlinks[2].Active = false }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN}},
		{"nvlink-errors", nil, reading(func(m *fleetv1.GpuMetrics) { m.Nvlinks[1].CrcErrors += 100 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_NVLINK_ERRORS}},
		{"pcie-replays", nil, reading(func(m *fleetv1.GpuMetrics) { m.PcieReplaysPerMinute = 40 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY}},
		{"pcie-replays-still-high", reading(func(m *fleetv1.GpuMetrics) { m.PcieReplaysPerMinute = 40 }), reading(func(m *fleetv1.GpuMetrics) { m.PcieReplaysPerMinute = 60 }), nil},
		{"pcie-replay-count-alone", nil, reading(func(m *fleetv1.GpuMetrics) { m.PcieReplayCount = 500 }), nil},
		{"retired-pages-total", nil, reading(func(m *fleetv1.GpuMetrics) { m.RetiredPages.SingleBit = health.RetiredPagesLimit - 1 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_LIMIT}},
		{"retired-pages-recent-double-bit", nil, reading(func(m *fleetv1.GpuMetrics) {
			m.RetiredPages.DoubleBit, m.RetiredPages.DoubleBitLastWeek = health.RetiredDoubleBitLimit+1, 2
		}), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_LIMIT}},
		{"retired-pages-old-double-bit", nil, reading(func(m *fleetv1.GpuMetrics) {
			m.RetiredPages.DoubleBit, m.RetiredPages.DoubleBitLastWeek = health.RetiredDoubleBitLimit+1, 1
		}), nil},
		{"recovery-reset", nil, reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_RECOVERY_RESET}},
		{"recovery-drain-and-reset", nil, reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_RECOVERY_RESET}},
		{"recovery-reboot", nil, reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_RECOVERY_REBOOT}},
		{"recovery-drain-p2p", nil, reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_P2P }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_RECOVERY_DRAIN_P2P}},
		{"recovery-reset-then-reboot",
			reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET }),
			reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT }),
			[]fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_RECOVERY_REBOOT}},
		{"recovery-reset-then-drain-and-reset",
			reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET }),
			reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET }),
			nil},
		{"lost", nil, &gpu.Reading{Lost: true, LostReason: "NVML: GPU is lost", Metrics: &fleetv1.GpuMetrics{}}, []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_GPU_LOST}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			prev := row.prev
			if prev == nil {
				prev = reading(nil)
			}
			evs := detect(g, prev, row.cur)
			var kinds []fleetv1.EventKind
			for _, e := range evs {
				kinds = append(kinds, e.GetKind())
				if e.GetGpuIndex() != 3 || e.GetGpuUuid() != "GPU-3" || e.GetMessage() == "" {
					t.Errorf("event %v lacks its GPU or detail", e)
				}
			}
			if len(kinds) != len(row.want) {
				t.Fatalf("detected %v, want %v", kinds, row.want)
			}
			for i := range kinds {
				if kinds[i] != row.want[i] {
					t.Fatalf("detected %v, want %v", kinds, row.want)
				}
			}
			// The same condition on the next poll is not news.
			if again := detect(g, row.cur, row.cur); len(again) != 0 {
				t.Fatalf("reported again: %v", again)
			}
		})
	}
}

func TestDetectFirstReading(t *testing.T) {
	g := &fleetv1.Gpu{Index: 0, SlowdownTemperatureCelsius: 87, NvlinkCount: 4}
	// A node that starts with a pending remap and a link down says so at once.
	cur := reading(func(m *fleetv1.GpuMetrics) { m.RowRemap.Pending = true; m.Nvlinks[0].Active = false })
	if evs := detect(g, nil, cur); len(evs) != 2 {
		t.Fatalf("first reading: %v", evs)
	}
	// But counters are not rates on the first reading.
	counters := reading(func(m *fleetv1.GpuMetrics) {
		m.Ecc.VolatileCorrected, m.PcieReplayCount = 1e6, 1e6
		m.Nvlinks[0].RecoveryErrors, m.Nvlinks[1].CrcErrors = 9, 1e6
	})
	if evs := detect(g, nil, counters); len(evs) != 0 {
		t.Fatalf("first reading counted rates: %v", evs)
	}
	lost := &gpu.Reading{Lost: true, Metrics: &fleetv1.GpuMetrics{}}
	if evs := detect(g, lost, reading(nil)); len(evs) != 1 || evs[0].GetKind() != fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED {
		t.Fatalf("recovery: %v", evs)
	}
}

func TestEventBuffer(t *testing.T) {
	b := newEventBuffer(3)
	ev := func(x uint32) *fleetv1.HealthEvent { return &fleetv1.HealthEvent{Xid: x} }
	b.push(ev(1), ev(2))
	first := b.peek(10)
	b.push(ev(3), ev(4), ev(5)) // 1 and 2 are dropped while 1, 2 are in flight
	b.remove(first)             // delivered anyway: nothing else goes
	got := b.peek(10)
	if len(got) != 3 || got[0].GetXid() != 3 || b.droppedCount() != 2 {
		t.Fatalf("buffer %v dropped %d", got, b.droppedCount())
	}
}

// TestEveryMetricConditionHasOneRow: a fault signal added to the API
// without its row in the agent's conditions table fails here.
func TestEveryMetricConditionHasOneRow(t *testing.T) {
	notFromMetrics := map[fleetv1.EventKind]bool{
		fleetv1.EventKind_EVENT_KIND_UNSPECIFIED:   true,
		fleetv1.EventKind_EVENT_KIND_XID:           true, // from the NVML event set
		fleetv1.EventKind_EVENT_KIND_GPU_LOST:      true, // from the reading: the GPU did not answer
		fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED: true,
	}
	for v, name := range fleetv1.EventKind_name {
		kind := fleetv1.EventKind(v)
		t.Run(strings.ToLower(strings.TrimPrefix(name, "EVENT_KIND_")), func(t *testing.T) {
			n := 0
			for _, c := range conditions {
				if c.kind == kind {
					n++
				}
			}
			want := 1
			if notFromMetrics[kind] {
				want = 0
			}
			if n != want {
				t.Fatalf("%s has %d rows, want %d", kind, n, want)
			}
		})
	}
}

// replayRate is a reading whose PCIe link replays at rate on a link of
// this generation and width.
func replayRate(gen, width, rate uint32) *gpu.Reading {
	return reading(func(m *fleetv1.GpuMetrics) {
		m.PcieLinkGeneration, m.PcieLinkWidth, m.PcieReplaysPerMinute = gen, width, rate
	})
}

// nvlinkRise is a reading whose NVLink counters rose from reading(nil)'s:
// recoveries on link 0, CRC errors on link 1 and replays on link 3.
func nvlinkRise(recoveries, crc, replays uint64) *gpu.Reading {
	return reading(func(m *fleetv1.GpuMetrics) {
		m.Nvlinks[0].RecoveryErrors += recoveries
		m.Nvlinks[1].CrcErrors += crc
		m.Nvlinks[3].ReplayErrors += replays
	})
}

// TestDetectRates: a counter's rise is a rate only against a previous
// reading that had the counter, and only from the limit up.
func TestDetectRates(t *testing.T) {
	g := &fleetv1.Gpu{Index: 0, NvlinkCount: 4}
	gen4x16 := health.PCIeReplayLimit(4, 16)
	tests := []struct {
		name string
		prev *gpu.Reading
		cur  *gpu.Reading
		want []fleetv1.EventKind
	}{
		{"ecc-below-limit", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileCorrected = 109 }), nil},
		{"ecc-at-limit", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileCorrected = 110 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ECC_CORRECTED_RATE}},
		{"ecc-unread-before", reading(func(m *fleetv1.GpuMetrics) { m.Ecc = nil }), reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileCorrected = 1e6 }), nil},
		{"pcie-below-limit", reading(nil), replayRate(4, 16, gen4x16-1), nil},
		{"pcie-at-limit", reading(nil), replayRate(4, 16, gen4x16), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY}},
		// A slower link sends fewer packets, so fewer replays are too many.
		{"pcie-slow-link-at-its-limit", reading(nil), replayRate(3, 4, health.PCIeReplayLimit(3, 4)), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY}},
		{"pcie-slow-link-below", reading(nil), replayRate(3, 4, health.PCIeReplayLimit(3, 4)-1), nil},
		{"nvlink-crc-replay-below-limit", reading(nil), nvlinkRise(0, 59, 40), nil},
		{"nvlink-crc-replay-at-limit", reading(nil), nvlinkRise(0, 60, 40), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_NVLINK_ERRORS}},
		{"nvlink-one-recovery", reading(nil), nvlinkRise(1, 0, 0), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_NVLINK_ERRORS}},
		{"nvlink-counters-reset", nvlinkRise(5, 1000, 1000), reading(nil), nil},
		{"nvlink-unread-before", reading(func(m *fleetv1.GpuMetrics) { m.Time = nil }), nvlinkRise(5, 1000, 1000), nil},
		{"nvlink-unsupported-before", reading(func(m *fleetv1.GpuMetrics) {
			m.Unsupported = []string{gpu.GroupNVLinkErrors}
			for _, l := range m.Nvlinks {
				l.CrcErrors, l.ReplayErrors, l.RecoveryErrors = 0, 0, 0
			}
		}), reading(nil), nil},
		// A link the previous reading lacks has no rise to compare.
		{"nvlink-link-new", reading(func(m *fleetv1.GpuMetrics) { m.Nvlinks = m.Nvlinks[:2] }), reading(func(m *fleetv1.GpuMetrics) { m.Nvlinks[3].CrcErrors = 5000 }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kinds []fleetv1.EventKind
			for _, e := range detect(g, tt.prev, tt.cur) {
				kinds = append(kinds, e.GetKind())
			}
			if !slices.Equal(kinds, tt.want) {
				t.Fatalf("detected %v, want %v", kinds, tt.want)
			}
		})
	}
}

// TestSampleOfDropsImpossibleReadings: one glitched sensor read must not
// cost the node its heartbeat, which the control plane would refuse.
func TestSampleOfDropsImpossibleReadings(t *testing.T) {
	s := sampleOf(&fleetv1.GpuMetrics{GpuIndex: 2, UtilizationGpuPercent: 255, TemperatureCelsius: 4095, PowerUsageMilliwatts: 1 << 31})
	if s.GetGpuIndex() != 2 || s.GetUtilizationGpuPercent() != 100 || s.GetTemperatureCelsius() != 0 || s.GetPowerUsageMilliwatts() != 0 {
		t.Fatalf("sample %v", s)
	}
	s = sampleOf(&fleetv1.GpuMetrics{UtilizationGpuPercent: 80, TemperatureCelsius: 71, PowerUsageMilliwatts: 650_000})
	if s.GetUtilizationGpuPercent() != 80 || s.GetTemperatureCelsius() != 71 || s.GetPowerUsageMilliwatts() != 650_000 {
		t.Fatalf("a sane reading changed: %v", s)
	}
}

// TestDetectMessages: an event says what the agent saw in words an
// operator can act on, and carries its value.
func TestDetectMessages(t *testing.T) {
	sustained := uint32(health.SustainedSlowdown / time.Second)
	tests := []struct {
		name      string
		prev, cur *gpu.Reading
		kind      fleetv1.EventKind
		value     uint64
		message   string
	}{
		{"pcie-replay", reading(nil), replayRate(4, 16, 40), fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY, 40,
			fmt.Sprintf("PCIe replays 40/min on a Gen4 x16 link (limit %d/min)", health.PCIeReplayLimit(4, 16))},
		{"pcie-replay-unknown-link", reading(nil), replayRate(0, 0, 40), fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY, 40,
			fmt.Sprintf("PCIe replays 40/min on a link of unknown generation and width (limit %d/min)", health.PCIeReplayLimit(0, 0))},
		{"nvlink-errors", reading(nil), nvlinkRise(2, 70, 30), fleetv1.EventKind_EVENT_KIND_NVLINK_ERRORS, 102,
			"NVLink errors since the last poll: link 0: recoveries +2; link 1: CRC errors +70; link 3: replays +30"},
		{"hw-slowdown-sustained", reading(held(nvml.ClocksThrottleReasonHwThermalSlowdown, sustained-5)), reading(held(nvml.ClocksThrottleReasonHwThermalSlowdown, sustained+2)),
			fleetv1.EventKind_EVENT_KIND_HW_SLOWDOWN_SUSTAINED, uint64(sustained + 2),
			fmt.Sprintf("hardware slowdown has held the clocks down for %ds (reasons 0x40)", sustained+2)},
		{"power-brake", reading(held(nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, sustained-5)), reading(held(nvml.ClocksThrottleReasonHwPowerBrakeSlowdown, sustained)),
			fleetv1.EventKind_EVENT_KIND_POWER_BRAKE, uint64(sustained),
			fmt.Sprintf("the power brake has held the clocks down for %ds (reasons 0x80)", sustained)},
		{"memory-thermal", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.MemoryTemperatureCelsius = 97 }), fleetv1.EventKind_EVENT_KIND_MEMORY_THERMAL, 97,
			"memory temperature 97°C at or past its limit of 95°C"},
		{"retired-pages-limit", reading(nil), reading(func(m *fleetv1.GpuMetrics) {
			m.RetiredPages = &fleetv1.RetiredPages{SingleBit: 40, DoubleBit: 23, DoubleBitLastWeek: 3}
		}), fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_LIMIT, 63,
			"retired pages past the replacement limit: 40 for single-bit errors, 23 for double-bit errors (3 in the last week)"},
		{"recovery-reset", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET }),
			fleetv1.EventKind_EVENT_KIND_RECOVERY_RESET, uint64(fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET), "the driver asks for a GPU reset"},
		{"recovery-drain-and-reset", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET }),
			fleetv1.EventKind_EVENT_KIND_RECOVERY_RESET, uint64(fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET), "the driver asks to drain the GPU, then reset it"},
		{"recovery-reboot", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT }),
			fleetv1.EventKind_EVENT_KIND_RECOVERY_REBOOT, uint64(fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT), "the driver asks for a node reboot"},
		{"recovery-drain-p2p", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_P2P }),
			fleetv1.EventKind_EVENT_KIND_RECOVERY_DRAIN_P2P, uint64(fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_P2P),
			"the driver asks for the processes using peer-to-peer traffic to stop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs := detect(detectGPU, tt.prev, tt.cur)
			if len(evs) != 1 || evs[0].GetKind() != tt.kind {
				t.Fatalf("detected %v, want one %v", evs, tt.kind)
			}
			if evs[0].GetValue() != tt.value || evs[0].GetMessage() != tt.message {
				t.Fatalf("value %d, message %q; want %d, %q", evs[0].GetValue(), evs[0].GetMessage(), tt.value, tt.message)
			}
		})
	}
}
