package gpu

import (
	"fmt"
	"slices"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/navarch/navarch/internal/health"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Check is one diagnostics check's outcome.
type Check struct {
	GPU    int
	Name   string
	OK     bool
	Detail string
}

// Diagnose runs a quick NVML self-check of every GPU: it reads identity,
// temperature against the slowdown threshold, memory temperature against its
// limit, ECC, remapped rows, NVLink, the PCIe replay rate against the link's
// limit and the driver's recovery action, and says which checks pass.
func (r *Reader) Diagnose(now time.Time) []Check {
	readings := r.Read(now)
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Check
	for _, a := range r.absent {
		out = append(out, Check{GPU: int(a.Index), Name: "identity", OK: false, Detail: "did not answer at start: " + a.Reason})
	}
	for i, d := range r.devices {
		rd := readings[i]
		add := func(name string, ok bool, detail string) {
			out = append(out, Check{GPU: int(r.index[i]), Name: name, OK: ok, Detail: detail})
		}
		uuid, ret := d.GetUUID()
		add("identity", ret == nvml.SUCCESS && uuid == r.uuids[i], fmt.Sprintf("uuid %s (%s)", uuid, nvml.ErrorString(ret)))
		if rd.Lost {
			add("responsive", false, rd.LostReason)
			continue
		}
		m := rd.Metrics
		unsupported := func(g string) bool { return slices.Contains(m.GetUnsupported(), g) }
		slow, ret := d.GetTemperatureThreshold(nvml.TEMPERATURE_THRESHOLD_SLOWDOWN)
		switch {
		case unsupported(GroupTemperature):
			add("temperature", true, "unsupported")
		case ret == nvml.SUCCESS && slow > 0:
			add("temperature", m.GetTemperatureCelsius() < slow, fmt.Sprintf("%d°C, slowdown at %d°C", m.GetTemperatureCelsius(), slow))
		default:
			add("temperature", true, fmt.Sprintf("%d°C", m.GetTemperatureCelsius()))
		}
		memMax, ret := d.GetTemperatureThreshold(nvml.TEMPERATURE_THRESHOLD_MEM_MAX)
		if !unsupported(GroupMemoryTemperature) && ret == nvml.SUCCESS && memMax > 0 {
			t := m.GetMemoryTemperatureCelsius()
			add("memory-temperature", t < memMax, fmt.Sprintf("%d°C, limit %d°C", t, memMax))
		}
		if unsupported(GroupECC) {
			add("ecc", true, "unsupported")
		} else {
			add("ecc", m.GetEcc().GetVolatileUncorrected() == 0,
				fmt.Sprintf("volatile uncorrected %d, corrected %d", m.GetEcc().GetVolatileUncorrected(), m.GetEcc().GetVolatileCorrected()))
		}
		if unsupported(GroupRowRemap) {
			add("row-remap", true, "unsupported")
		} else {
			rr := m.GetRowRemap()
			add("row-remap", !rr.GetPending() && !rr.GetFailure(), fmt.Sprintf("pending %t, failure %t", rr.GetPending(), rr.GetFailure()))
		}
		if !unsupported(GroupNVLink) && r.links[i] > 0 {
			up := 0
			for _, l := range m.GetNvlinks() {
				if l.GetActive() {
					up++
				}
			}
			add("nvlink", up >= r.links[i], fmt.Sprintf("%d of %d links up", up, r.links[i]))
		}
		if !unsupported(GroupPCIeReplay) {
			gen, width := m.GetPcieLinkGeneration(), m.GetPcieLinkWidth()
			rate, limit := m.GetPcieReplaysPerMinute(), health.PCIeReplayLimit(gen, width)
			add("pcie", rate < limit, fmt.Sprintf("replay counter %d, %d/min on %s (limit %d/min)",
				m.GetPcieReplayCount(), rate, PCIeLinkWords(gen, width), limit))
		}
		if a := m.GetRecoveryAction(); !unsupported(GroupRecoveryAction) && a != fleetv1.RecoveryAction_RECOVERY_ACTION_UNSPECIFIED {
			add("recovery-action", a == fleetv1.RecoveryAction_RECOVERY_ACTION_NONE, RecoveryActionWords(a))
		}
	}
	return out
}
