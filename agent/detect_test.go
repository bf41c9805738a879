package agent

import (
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent/gpu"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func reading(edit func(*fleetv1.GpuMetrics)) *gpu.Reading {
	m := &fleetv1.GpuMetrics{
		Time:               timestamppb.Now(),
		TemperatureCelsius: 60,
		Ecc:                &fleetv1.EccCounts{VolatileCorrected: 10},
		RowRemap:           &fleetv1.RowRemapState{},
		RetiredPages:       &fleetv1.RetiredPages{},
		PcieReplayCount:    5,
	}
	for l := range 4 {
		m.Nvlinks = append(m.Nvlinks, &fleetv1.NvLinkState{Link: uint32(l), Active: true})
	}
	if edit != nil {
		edit(m)
	}
	return &gpu.Reading{Metrics: m}
}

func TestDetect(t *testing.T) {
	g := &fleetv1.Gpu{Index: 3, Uuid: "GPU-3", SlowdownTemperatureCelsius: 87, NvlinkCount: 4}
	rows := []struct {
		name string
		cur  *gpu.Reading
		want []fleetv1.EventKind
	}{
		{"nothing", reading(nil), nil},
		{"ecc-dbe", reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileUncorrected = 1 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED}},
		{"sbe-burst", reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileCorrected = 200 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ECC_CORRECTED_RATE}},
		{"remap-pending", reading(func(m *fleetv1.GpuMetrics) { m.RowRemap.Pending = true }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING}},
		{"remap-failure", reading(func(m *fleetv1.GpuMetrics) { m.RowRemap.Failure = true }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE}},
		{"retired-pending", reading(func(m *fleetv1.GpuMetrics) { m.RetiredPages.Pending = true }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_PENDING}},
		{"thermal", reading(func(m *fleetv1.GpuMetrics) { m.TemperatureCelsius = 87 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_THERMAL}},
		{"hw-slowdown", reading(func(m *fleetv1.GpuMetrics) { m.ClockEventReasons = nvml.ClocksThrottleReasonHwSlowdown }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN}},
		{"sw-power-cap-is-fine", reading(func(m *fleetv1.GpuMetrics) { m.ClockEventReasons = nvml.ClocksEventReasonSwPowerCap }), nil},
		{"nvlink-down", reading(func(m *fleetv1.GpuMetrics) { m.Nvlinks[2].Active = false }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN}},
		{"pcie-replays", reading(func(m *fleetv1.GpuMetrics) { m.PcieReplayCount = 500 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY}},
		{"lost", &gpu.Reading{Lost: true, LostReason: "NVML: GPU is lost", Metrics: &fleetv1.GpuMetrics{}}, []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_GPU_LOST}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			evs := detect(g, reading(nil), row.cur)
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
	if evs := detect(g, nil, reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileCorrected = 1e6; m.PcieReplayCount = 1e6 })); len(evs) != 0 {
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

// TestDetectRates: a counter's rise is a rate only against a previous
// reading that had the counter, and only from the limit up.
func TestDetectRates(t *testing.T) {
	g := &fleetv1.Gpu{Index: 0, NvlinkCount: 4}
	tests := []struct {
		name string
		prev *gpu.Reading
		cur  *gpu.Reading
		want []fleetv1.EventKind
	}{
		{"ecc-below-limit", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileCorrected = 109 }), nil},
		{"ecc-at-limit", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileCorrected = 110 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_ECC_CORRECTED_RATE}},
		{"ecc-unread-before", reading(func(m *fleetv1.GpuMetrics) { m.Ecc = nil }), reading(func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileCorrected = 1e6 }), nil},
		{"pcie-at-limit", reading(nil), reading(func(m *fleetv1.GpuMetrics) { m.PcieReplayCount = 105 }), []fleetv1.EventKind{fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY}},
		{"pcie-counter-reset", reading(func(m *fleetv1.GpuMetrics) { m.PcieReplayCount = 1e6 }), reading(nil), nil},
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
