package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestConditions checks each non-XID rule, raised by an agent event and by a
// snapshot, and cleared by a snapshot that no longer shows it.
func TestConditions(t *testing.T) {
	p := Default()
	rows := []struct {
		name   string
		kind   fleetv1.EventKind
		bad    func(*fleetv1.GpuMetrics)
		health fleetv1.HealthStatus
		remedy fleetv1.Remedy
		level  bool
	}{
		{"ecc-uncorrected", fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED, func(m *fleetv1.GpuMetrics) { m.Ecc.VolatileUncorrected = 1 }, unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, true},
		{"row-remap-pending", fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING, func(m *fleetv1.GpuMetrics) { m.RowRemap.Pending = true }, degraded, fleetv1.Remedy_REMEDY_RESET_GPU, true},
		{"row-remap-failure", fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE, func(m *fleetv1.GpuMetrics) { m.RowRemap.Failure = true }, unhealthy, fleetv1.Remedy_REMEDY_REPLACE_GPU, true},
		{"thermal", fleetv1.EventKind_EVENT_KIND_THERMAL, func(m *fleetv1.GpuMetrics) { m.TemperatureCelsius = 90 }, degraded, fleetv1.Remedy_REMEDY_CHECK_COOLING, true},
		{"nvlink-down", fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN, func(m *fleetv1.GpuMetrics) { m.Nvlinks[3].Active = false }, unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, true},
		{"retired-pages-pending", fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_PENDING, func(m *fleetv1.GpuMetrics) { m.RetiredPages.Pending = true }, degraded, fleetv1.Remedy_REMEDY_RESET_GPU, true},
		{"retired-pages-limit", fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_LIMIT, func(m *fleetv1.GpuMetrics) { m.RetiredPages.SingleBit = 63 }, unhealthy, fleetv1.Remedy_REMEDY_REPLACE_GPU, true},
		{"memory-thermal", fleetv1.EventKind_EVENT_KIND_MEMORY_THERMAL, func(m *fleetv1.GpuMetrics) { m.MemoryTemperatureCelsius = 96 }, degraded, fleetv1.Remedy_REMEDY_CHECK_COOLING, true},
		{"hw-slowdown-sustained", fleetv1.EventKind_EVENT_KIND_HW_SLOWDOWN_SUSTAINED, func(m *fleetv1.GpuMetrics) { m.HwSlowdownSeconds = 60 }, degraded, fleetv1.Remedy_REMEDY_CHECK_COOLING, true},
		{"power-brake", fleetv1.EventKind_EVENT_KIND_POWER_BRAKE, func(m *fleetv1.GpuMetrics) { m.PowerBrakeSeconds = 90 }, degraded, fleetv1.Remedy_REMEDY_CHECK_POWER, true},
		{"recovery-reset", fleetv1.EventKind_EVENT_KIND_RECOVERY_RESET, func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET }, unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, true},
		{"recovery-drain-and-reset", fleetv1.EventKind_EVENT_KIND_RECOVERY_RESET, func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET }, unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, true},
		{"recovery-reboot", fleetv1.EventKind_EVENT_KIND_RECOVERY_REBOOT, func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT }, unhealthy, fleetv1.Remedy_REMEDY_REBOOT_NODE, true},
		{"recovery-drain-p2p", fleetv1.EventKind_EVENT_KIND_RECOVERY_DRAIN_P2P, func(m *fleetv1.GpuMetrics) { m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_P2P }, degraded, fleetv1.Remedy_REMEDY_RESTART_APPLICATION, true},
		{"gpu-lost", fleetv1.EventKind_EVENT_KIND_GPU_LOST, nil, unhealthy, fleetv1.Remedy_REMEDY_REBOOT_NODE, false},
		{"nvlink-errors", fleetv1.EventKind_EVENT_KIND_NVLINK_ERRORS, nil, degraded, fleetv1.Remedy_REMEDY_WATCH, false},
		{"ecc-corrected-rate", fleetv1.EventKind_EVENT_KIND_ECC_CORRECTED_RATE, nil, degraded, fleetv1.Remedy_REMEDY_WATCH, false},
		{"pcie-replay", fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY, nil, degraded, fleetv1.Remedy_REMEDY_WATCH, false},
	}
	for _, row := range rows {
		t.Run(row.name+"/event", func(t *testing.T) {
			g := newGPU()
			ev := &fleetv1.HealthEvent{Kind: row.kind}
			p.Judge(g, ev, &Repeats{}, t0)
			if ev.GetHealth() != row.health || ev.GetRemedy() != row.remedy || g.GetHealth() != row.health {
				t.Fatalf("judged %s/%s, GPU %s; want %s/%s", ev.GetHealth(), ev.GetRemedy(), g.GetHealth(), row.health, row.remedy)
			}
			if row.level {
				if evs := p.Observe(g, metrics(), t0.Add(time.Minute)); len(evs) != 1 || g.GetHealth() != healthy {
					t.Fatalf("clean snapshot: events %v, GPU %s", evs, g.GetHealth())
				}
			}
		})
		if row.bad == nil {
			continue
		}
		t.Run(row.name+"/snapshot", func(t *testing.T) {
			g := newGPU()
			m := metrics()
			row.bad(m)
			evs := p.Observe(g, m, t0)
			if len(evs) != 1 || evs[0].GetKind() != row.kind || g.GetHealth() != row.health || g.GetRemedy() != row.remedy {
				t.Fatalf("snapshot raised %v, GPU %s/%s; want %s %s/%s", evs, g.GetHealth(), g.GetRemedy(), row.kind, row.health, row.remedy)
			}
			if evs := p.Observe(g, m, t0.Add(time.Second)); len(evs) != 0 {
				t.Fatalf("the same snapshot raised again: %v", evs)
			}
		})
	}
}

func TestUnsupportedIsNotAFault(t *testing.T) {
	p := Default()
	g := newGPU()
	m := &fleetv1.GpuMetrics{
		TemperatureCelsius: 50, MemoryTemperatureCelsius: 120, HwSlowdownSeconds: 600, PowerBrakeSeconds: 600,
		RecoveryAction: fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT,
		Unsupported:    []string{"ecc", "row_remap", "retired_pages", "nvlink", "memory_temperature", "clock_events", "recovery_action"},
	}
	if evs := p.Observe(g, m, t0); len(evs) != 0 || g.GetHealth() != healthy {
		t.Fatalf("unsupported metrics raised %v, GPU %s", evs, g.GetHealth())
	}
}

func TestThermalHysteresis(t *testing.T) {
	p := Default()
	g := newGPU()
	m := metrics()
	m.TemperatureCelsius = 87
	p.Observe(g, m, t0)
	if g.GetHealth() != degraded {
		t.Fatalf("at the threshold: %s", g.GetHealth())
	}
	m.TemperatureCelsius = 85
	if p.Observe(g, m, t0); g.GetHealth() != degraded {
		t.Fatal("cleared within the hysteresis")
	}
	m.TemperatureCelsius = 83
	if p.Observe(g, m, t0); g.GetHealth() != healthy {
		t.Fatal("did not clear after cooling")
	}
}

// TestRecoveryActionUnreadIsNothing: a driver without the recovery-action
// field (a reading that leaves it unset) neither raises nor clears.
func TestRecoveryActionUnreadIsNothing(t *testing.T) {
	p := Default()
	g := newGPU()
	m := metrics()
	m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT
	p.Observe(g, m, t0)
	m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_UNSPECIFIED
	if evs := p.Observe(g, m, t0.Add(time.Second)); len(evs) != 0 || g.GetRemedy() != fleetv1.Remedy_REMEDY_REBOOT_NODE {
		t.Fatalf("a reading without the field: %v, remedy %s", evs, g.GetRemedy())
	}
	m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_NONE
	if evs := p.Observe(g, m, t0.Add(2*time.Second)); len(evs) != 1 || g.GetHealth() != healthy {
		t.Fatalf("the driver says none: %v, health %s", evs, g.GetHealth())
	}
}

func TestClockSlowdownRepeats(t *testing.T) {
	p := Default()
	g := newGPU()
	rep := &Repeats{}
	for i := range 3 {
		ev := &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN}
		p.Judge(g, ev, rep, t0.Add(time.Duration(i)*time.Minute))
	}
	if g.GetHealth() != degraded {
		t.Fatalf("three slowdowns in 10m: %s", g.GetHealth())
	}
}

func BenchmarkObserveCleanSnapshot(b *testing.B) {
	p := Default()
	g := newGPU()
	m := metrics()
	b.ReportAllocs()
	for range b.N {
		if p.Changes(g, m) {
			b.Fatal("a clean snapshot changes the GPU")
		}
	}
}

// TestEveryEventKindHasOneCondition: a fault signal added to the API
// without its row in the conditions table fails here.
func TestEveryEventKindHasOneCondition(t *testing.T) {
	notConditions := map[fleetv1.EventKind]bool{
		fleetv1.EventKind_EVENT_KIND_UNSPECIFIED:   true,
		fleetv1.EventKind_EVENT_KIND_XID:           true, // judged by the XID rules
		fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED: true, // clears faults, raises none
	}
	p := Default()
	printed, err := decode(DefaultYAML())
	if err != nil {
		t.Fatalf("decode the printed default policy: %v", err)
	}
	for v, name := range fleetv1.EventKind_name {
		kind := fleetv1.EventKind(v)
		t.Run(strings.ToLower(strings.TrimPrefix(name, "EVENT_KIND_")), func(t *testing.T) {
			var rows []condition
			for _, c := range conditions {
				if c.kind == kind {
					rows = append(rows, c)
				}
			}
			if notConditions[kind] {
				if len(rows) != 0 {
					t.Fatalf("%s is not a condition but has rows %v", kind, rows)
				}
				return
			}
			if len(rows) != 1 {
				t.Fatalf("%s has %d condition rows, want 1", kind, len(rows))
			}
			if _, ok := p.ConditionRule(kind); !ok {
				t.Errorf("the default policy has no rule for %s", kind)
			}
			if printed.Conditions[rows[0].name] == nil {
				t.Errorf("the printed default policy has no conditions.%s", rows[0].name)
			}
		})
	}
	if names := conditionNames(); len(slices.Compact(names)) != len(conditions) {
		t.Errorf("condition names are not unique: %v", conditionNames())
	}
}

// TestLevelConditions: exactly the conditions a snapshot shows are level
// conditions, which snapshots clear and a reboot keeps.
func TestLevelConditions(t *testing.T) {
	rows := []struct {
		name  string
		level bool
	}{
		{"ecc_uncorrected", true},
		{"row_remap_pending", true},
		{"row_remap_failure", true},
		{"thermal", true},
		{"clock_slowdown", false},
		{"nvlink_down", true},
		{"gpu_lost", false},
		{"ecc_corrected_rate", false},
		{"pcie_replay", false},
		{"retired_pages_pending", true},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			c := conditionNamed(row.name)
			if c == nil {
				t.Fatalf("no condition %q", row.name)
			}
			if isLevel(c.kind) != row.level {
				t.Fatalf("level = %t, want %t", isLevel(c.kind), row.level)
			}
		})
	}
}
