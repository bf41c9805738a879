package gpu

import (
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// TestSlowdownStreaks: hardware slowdown and the power brake are each
// timed from the first reading that shows them, on every reading since
// without a break; each is 0 on a reading that does not show it.
func TestSlowdownStreaks(t *testing.T) {
	const (
		hw      = nvml.ClocksThrottleReasonHwSlowdown
		thermal = nvml.ClocksThrottleReasonHwThermalSlowdown
		brake   = nvml.ClocksThrottleReasonHwPowerBrakeSlowdown
		swCap   = nvml.ClocksEventReasonSwPowerCap
	)
	type step struct {
		at          time.Duration // after now
		reasons     uint64
		failed      bool // the reasons cannot be read
		hwS, brakeS uint32
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"never", []step{{0, swCap, false, 0, 0}, {30 * time.Second, swCap, false, 0, 0}}},
		{"held", []step{{0, hw, false, 0, 0}, {20 * time.Second, hw, false, 20, 0}, {45 * time.Second, thermal, false, 45, 0}, {70 * time.Second, hw | thermal, false, 70, 0}}},
		{"broken", []step{{0, hw, false, 0, 0}, {30 * time.Second, swCap, false, 0, 0}, {40 * time.Second, hw, false, 0, 0}, {55 * time.Second, hw, false, 15, 0}}},
		{"failed-read-breaks", []step{{0, hw, false, 0, 0}, {30 * time.Second, 0, true, 0, 0}, {40 * time.Second, hw, false, 0, 0}}},
		{"power-brake", []step{{0, brake, false, 0, 0}, {61 * time.Second, brake, false, 0, 61}, {90 * time.Second, swCap, false, 0, 0}}},
		// NVML's generic HW-slowdown reason is set beside the power brake's:
		// then it is the brake's alone, and thermal slowdown is still thermal.
		{"brake-with-generic", []step{{0, brake | hw, false, 0, 0}, {30 * time.Second, brake | hw, false, 0, 30}}},
		{"apart", []step{{0, thermal, false, 0, 0}, {10 * time.Second, thermal | brake | hw, false, 10, 0}, {25 * time.Second, brake | hw, false, 0, 15}, {30 * time.Second, thermal | brake, false, 0, 20}}},
		{"generic-after-brake", []step{{0, brake | hw, false, 0, 0}, {20 * time.Second, hw, false, 0, 0}, {40 * time.Second, hw, false, 20, 0}}},
		{"clock-went-back", []step{{time.Minute, hw, false, 0, 0}, {0, hw, false, 0, 0}, {30 * time.Second, hw, false, 30, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := device("GPU-a")
			r, err := Open(library(d))
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				d.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) {
					if s.failed {
						return 0, nvml.ERROR_UNKNOWN
					}
					return s.reasons, nvml.SUCCESS
				}
				m := r.Read(now.Add(s.at))[0].Metrics
				if m.GetHwSlowdownSeconds() != s.hwS || m.GetPowerBrakeSeconds() != s.brakeS {
					t.Fatalf("reading %d: hw slowdown %ds, power brake %ds; want %ds, %ds",
						i, m.GetHwSlowdownSeconds(), m.GetPowerBrakeSeconds(), s.hwS, s.brakeS)
				}
			}
		})
	}
}

// TestPCIeReplayRate: the rate is the counter's rise over the readings of
// the last minute; a span shorter than a minute is not scaled up, a longer
// one (a slow poll) is scaled down to a minute.
func TestPCIeReplayRate(t *testing.T) {
	type step struct {
		at     time.Duration // after now
		count  int
		failed bool // the counter cannot be read
		rate   uint32
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first-reading", []step{{0, 500, false, 0}}},
		{"steady", []step{{0, 100, false, 0}, {15 * time.Second, 110, false, 10}, {30 * time.Second, 120, false, 20}, {60 * time.Second, 140, false, 40}}},
		{"quiet", []step{{0, 100, false, 0}, {30 * time.Second, 100, false, 0}, {60 * time.Second, 100, false, 0}}},
		// Only the last minute's readings count: the burst at 10s leaves the
		// window once it is more than a minute old.
		{"window-slides", []step{{0, 0, false, 0}, {10 * time.Second, 50, false, 50}, {40 * time.Second, 50, false, 50}, {70 * time.Second, 50, false, 0}, {80 * time.Second, 52, false, 2}}},
		{"counter-reset", []step{{0, 1000, false, 0}, {20 * time.Second, 1010, false, 10}, {40 * time.Second, 3, false, 0}, {60 * time.Second, 13, false, 10}}},
		{"failed-read-keeps-rate", []step{{0, 100, false, 0}, {30 * time.Second, 120, false, 20}, {45 * time.Second, 0, true, 20}, {60 * time.Second, 140, false, 40}}},
		{"long-interval", []step{{0, 100, false, 0}, {2 * time.Minute, 160, false, 30}, {4 * time.Minute, 160, false, 0}}},
		{"clock-went-back", []step{{time.Minute, 100, false, 0}, {0, 200, false, 0}, {30 * time.Second, 210, false, 10}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := device("GPU-a")
			r, err := Open(library(d))
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				d.GetPcieReplayCounterFunc = func() (int, nvml.Return) {
					if s.failed {
						return 0, nvml.ERROR_UNKNOWN
					}
					return s.count, nvml.SUCCESS
				}
				if got := r.Read(now.Add(s.at))[0].Metrics.GetPcieReplaysPerMinute(); got != s.rate {
					t.Fatalf("reading %d: %d replays/min, want %d", i, got, s.rate)
				}
			}
		})
	}
}
