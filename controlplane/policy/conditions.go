package policy

import (
	"slices"
	"time"

	"github.com/navarch/navarch/internal/health"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// condition is one fault signal other than an XID: its name in policy
// files, its event kind, its default rule and, for a level condition, how
// a metrics snapshot shows it. Adding a condition is an EventKind in the
// API, the agent's reading of it and its row in the agent's table, and one
// row here (docs/fault-policy.md, "Adding a condition").
type condition struct {
	name string
	kind fleetv1.EventKind
	// about says what the signal is, in the default policy's comments.
	about string
	// level, when set, makes this a level condition: re-checked on every
	// snapshot and cleared when the snapshot no longer shows it. Without
	// it the condition is raised by the agent's events alone.
	level *level
	// rule is the default rule; a policy file's conditions section may
	// replace it.
	rule Rule
}

// level is how a metrics snapshot shows a level condition.
type level struct {
	// group is the metric group the condition is read from: a snapshot
	// that lists it in GpuMetrics.unsupported tells nothing about it.
	group string
	// check reads the condition from a snapshot. The thresholds it
	// compares with are the GPU's own, reported by its agent, so the agent
	// and the control plane judge by the same ones.
	check func(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading
}

// levelReading is one level condition as a snapshot shows it.
type levelReading struct {
	// known is false where the GPU cannot show the condition: no slowdown
	// threshold, no NVLink in use.
	known   bool
	present bool
	// value is what the event raising or clearing the fault carries.
	value uint64
}

// thermalHysteresis is how far below the slowdown threshold a GPU must cool,
// in degrees Celsius, before a thermal fault clears.
const thermalHysteresis = 3

const (
	healthy   = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
	degraded  = fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED
	unhealthy = fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
)

// conditions is every non-XID fault signal, in the order the default
// policy lists them and snapshots are checked.
var conditions = []condition{
	{
		name:  "ecc_uncorrected",
		kind:  fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED,
		about: "volatile uncorrected ECC count above zero",
		level: &level{group: "ecc", check: func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
			n := m.GetEcc().GetVolatileUncorrected()
			return levelReading{known: true, present: n > 0, value: n}
		}},
		rule: Rule{Meaning: "uncorrected (double-bit) ECC errors since the driver loaded", Health: unhealthy, Remedy: fleetv1.Remedy_REMEDY_RESET_GPU},
	},
	{
		name:  "row_remap_pending",
		kind:  fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING,
		about: "a row remap waits for a GPU reset",
		level: &level{group: "row_remap", check: func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
			return levelReading{known: true, present: m.GetRowRemap().GetPending()}
		}},
		// NVIDIA's memory-error guidance: running work is unaffected and new
		// work may start; reset the GPU when convenient.
		rule: Rule{Meaning: "row remap pending; reset the GPU when convenient", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_RESET_GPU},
	},
	{
		name:  "row_remap_failure",
		kind:  fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE,
		about: "no spare rows left",
		level: &level{group: "row_remap", check: func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
			return levelReading{known: true, present: m.GetRowRemap().GetFailure()}
		}},
		rule: Rule{Meaning: "row remapping failed; the GPU has no spare rows left", Health: unhealthy, Remedy: fleetv1.Remedy_REMEDY_REPLACE_GPU},
	},
	{
		name:  "thermal",
		kind:  fleetv1.EventKind_EVENT_KIND_THERMAL,
		about: "temperature at or past the slowdown threshold",
		level: &level{group: "temperature", check: thermal},
		rule:  Rule{Meaning: "temperature at or past the GPU's slowdown threshold", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_CHECK_COOLING},
	},
	{
		name:  "memory_thermal",
		kind:  fleetv1.EventKind_EVENT_KIND_MEMORY_THERMAL,
		about: "memory (HBM) temperature at or past its limit",
		level: &level{group: "memory_temperature", check: memoryThermal},
		rule:  Rule{Meaning: "memory temperature at or past the GPU's memory limit", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_CHECK_COOLING},
	},
	{
		name:  "hw_slowdown_sustained",
		kind:  fleetv1.EventKind_EVENT_KIND_HW_SLOWDOWN_SUSTAINED,
		about: "hardware slowdown held without a break",
		level: held((*fleetv1.GpuMetrics).GetHwSlowdownSeconds),
		rule:  Rule{Meaning: "hardware slowdown holding the clocks down", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_CHECK_COOLING},
	},
	{
		name:  "power_brake",
		kind:  fleetv1.EventKind_EVENT_KIND_POWER_BRAKE,
		about: "power-brake slowdown held without a break",
		level: held((*fleetv1.GpuMetrics).GetPowerBrakeSeconds),
		rule:  Rule{Meaning: "power brake holding the clocks down (the system's power, not cooling)", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_CHECK_POWER},
	},
	{
		name:  "clock_slowdown",
		kind:  fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN,
		about: "hardware slowdown clock events",
		rule: Rule{
			Meaning: "hardware slowdown clock events", Health: healthy, Remedy: fleetv1.Remedy_REMEDY_CHECK_COOLING,
			Repeat: &Repeat{Count: 3, Window: 10 * time.Minute, Health: degraded},
		},
	},
	{
		name:  "nvlink_down",
		kind:  fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN,
		about: "fewer NVLink links up than the GPU has",
		level: &level{group: "nvlink", check: nvlinkDown},
		rule:  Rule{Meaning: "NVLink link down", Health: unhealthy, Remedy: fleetv1.Remedy_REMEDY_RESET_GPU},
	},
	{
		name:  "nvlink_errors",
		kind:  fleetv1.EventKind_EVENT_KIND_NVLINK_ERRORS,
		about: "NVLink CRC, replay or recovery errors rising",
		rule:  Rule{Meaning: "NVLink errors rising (link integrity)", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_WATCH},
	},
	{
		name:  "recovery_reset",
		kind:  fleetv1.EventKind_EVENT_KIND_RECOVERY_RESET,
		about: "the driver asks for a GPU reset",
		level: recoveryLevel(fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET, fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET),
		rule:  Rule{Meaning: "the driver asks for a GPU reset", Health: unhealthy, Remedy: fleetv1.Remedy_REMEDY_RESET_GPU},
	},
	{
		name:  "recovery_reboot",
		kind:  fleetv1.EventKind_EVENT_KIND_RECOVERY_REBOOT,
		about: "the driver asks for a node reboot",
		level: recoveryLevel(fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT),
		rule:  Rule{Meaning: "the driver asks for a node reboot", Health: unhealthy, Remedy: fleetv1.Remedy_REMEDY_REBOOT_NODE},
	},
	{
		name:  "recovery_drain_p2p",
		kind:  fleetv1.EventKind_EVENT_KIND_RECOVERY_DRAIN_P2P,
		about: "the driver asks peer-to-peer work to stop",
		level: recoveryLevel(fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_P2P),
		rule:  Rule{Meaning: "the driver asks the processes using peer-to-peer traffic to stop", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_RESTART_APPLICATION},
	},
	{
		name:  "gpu_lost",
		kind:  fleetv1.EventKind_EVENT_KIND_GPU_LOST,
		about: "GPU missing or failing every NVML call",
		rule:  Rule{Meaning: "GPU lost (missing from NVML or failing every call)", Health: unhealthy, Remedy: fleetv1.Remedy_REMEDY_REBOOT_NODE},
	},
	{
		name:  "ecc_corrected_rate",
		kind:  fleetv1.EventKind_EVENT_KIND_ECC_CORRECTED_RATE,
		about: "many single-bit errors",
		rule:  Rule{Meaning: "high corrected ECC error rate", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_WATCH},
	},
	{
		name:  "pcie_replay",
		kind:  fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY,
		about: "PCIe replays per minute past the link's limit",
		rule:  Rule{Meaning: "PCIe replays past the link's limit (link integrity)", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_WATCH},
	},
	{
		name:  "retired_pages_pending",
		kind:  fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_PENDING,
		about: "retired pages wait for a GPU reset",
		level: &level{group: "retired_pages", check: func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
			return levelReading{known: true, present: m.GetRetiredPages().GetPending()}
		}},
		rule: Rule{Meaning: "retired pages pending a GPU reset", Health: degraded, Remedy: fleetv1.Remedy_REMEDY_RESET_GPU},
	},
	{
		name:  "retired_pages_limit",
		kind:  fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_LIMIT,
		about: "retired pages past the replacement limits",
		level: &level{group: "retired_pages", check: func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
			rp := m.GetRetiredPages()
			return levelReading{known: true, present: health.RetiredPagesExceeded(rp), value: uint64(rp.GetSingleBit() + rp.GetDoubleBit())}
		}},
		rule: Rule{Meaning: "retired pages past the limits (63 in all, or more than 15 double-bit with more than one this week)", Health: unhealthy, Remedy: fleetv1.Remedy_REMEDY_REPLACE_GPU},
	},
}

// memoryThermal is at or past the GPU's memory temperature limit, with the
// same hysteresis as the core's.
func memoryThermal(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
	temp, limit := m.GetMemoryTemperatureCelsius(), gpu.GetMemoryMaxTemperatureCelsius()
	if limit == 0 || temp == 0 {
		return levelReading{}
	}
	present := temp >= limit
	if hasFault(gpu, keyOf(fleetv1.EventKind_EVENT_KIND_MEMORY_THERMAL, 0)) {
		present = temp+thermalHysteresis >= limit
	}
	return levelReading{known: true, present: present, value: uint64(temp)}
}

// held is present while a clock-event reason has held for the sustained
// slowdown time; seconds reads how long it has.
func held(seconds func(*fleetv1.GpuMetrics) uint32) *level {
	return &level{group: "clock_events", check: func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
		s := seconds(m)
		return levelReading{known: true, present: time.Duration(s)*time.Second >= health.SustainedSlowdown, value: uint64(s)}
	}}
}

// recoveryLevel is present while the driver's recovery action is one of
// actions; a reading without the field (an older driver) shows nothing.
func recoveryLevel(actions ...fleetv1.RecoveryAction) *level {
	return &level{group: "recovery_action", check: func(_ *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
		a := m.GetRecoveryAction()
		if a == fleetv1.RecoveryAction_RECOVERY_ACTION_UNSPECIFIED {
			return levelReading{}
		}
		return levelReading{known: true, present: slices.Contains(actions, a), value: uint64(a)}
	}}
}

// thermal is at or past the GPU's slowdown temperature; once raised, it
// holds until the GPU is thermalHysteresis degrees below it, so a GPU
// hovering at its threshold does not flap.
func thermal(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
	temp, slow := m.GetTemperatureCelsius(), gpu.GetSlowdownTemperatureCelsius()
	if slow == 0 {
		return levelReading{}
	}
	present := temp >= slow
	if hasFault(gpu, keyOf(fleetv1.EventKind_EVENT_KIND_THERMAL, 0)) {
		present = temp+thermalHysteresis >= slow
	}
	return levelReading{known: true, present: present, value: uint64(temp)}
}

// nvlinkDown is fewer links up than the GPU reported at registration; the
// value is how many are down.
func nvlinkDown(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
	links := gpu.GetNvlinkCount()
	if links == 0 {
		return levelReading{}
	}
	up := uint32(0)
	for _, l := range m.GetNvlinks() {
		if l.GetActive() {
			up++
		}
	}
	return levelReading{known: true, present: up < links, value: uint64(links - min(up, links))}
}

// read reads a level condition from a snapshot.
func (l *level) read(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics) levelReading {
	if slices.Contains(m.GetUnsupported(), l.group) {
		return levelReading{}
	}
	return l.check(gpu, m)
}

// conditionNamed returns the condition a policy file names, or nil.
func conditionNamed(name string) *condition {
	if i := slices.IndexFunc(conditions, func(c condition) bool { return c.name == name }); i >= 0 {
		return &conditions[i]
	}
	return nil
}

// isLevel reports whether kind is a level condition.
func isLevel(kind fleetv1.EventKind) bool {
	return slices.ContainsFunc(conditions, func(c condition) bool { return c.kind == kind && c.level != nil })
}

func conditionNames() []string {
	names := make([]string, len(conditions))
	for i, c := range conditions {
		names[i] = c.name
	}
	slices.Sort(names)
	return names
}
