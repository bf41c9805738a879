// The nvml.Device calls the agent makes each poll, answered from the
// simulated GPU's state.

package simnvml

import (
	"math"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/navarch/navarch/internal/simload"
)

// GetUUID returns the GPU's UUID.
func (d *Device) GetUUID() (string, nvml.Return) {
	var v string
	ret := d.read(func() { v = d.UUID })
	return v, ret
}

// GetName returns the product name.
func (d *Device) GetName() (string, nvml.Return) {
	var v string
	ret := d.read(func() { v = d.Config.Name })
	return v, ret
}

// GetSerial returns the board serial.
func (d *Device) GetSerial() (string, nvml.Return) {
	var v string
	ret := d.read(func() { v = d.serial })
	return v, ret
}

// GetPciInfo returns the PCI identity with the bus id filled in.
func (d *Device) GetPciInfo() (nvml.PciInfo, nvml.Return) {
	var p nvml.PciInfo
	ret := d.read(func() {
		p.PciDeviceId = d.Config.PciDeviceId
		p.Domain, p.Bus = pciAddress(d.index)
		putCString(p.BusId[:], d.PciBusID)
		putCString(p.BusIdLegacy[:], d.PciBusID[4:])
	})
	return p, ret
}

// putCString writes s into a C char array, NUL-terminated.
func putCString(dst []int8, s string) {
	for i, c := range []byte(s) {
		if i < len(dst)-1 {
			dst[i] = int8(c)
		}
	}
}

// GetMemoryInfo returns the framebuffer size and use.
func (d *Device) GetMemoryInfo() (nvml.Memory, nvml.Return) {
	var m nvml.Memory
	ret := d.read(func() {
		m.Total = d.MemoryInfo.Total
		used := uint64(0)
		if d.load.Util > 10 {
			used = min(uint64(memoryPerJobGB<<30)+uint64(d.load.Util)*(64<<20), m.Total)
		}
		m.Used = used + 512<<20
		m.Free = m.Total - m.Used
	})
	return m, ret
}

// GetTemperature returns the core temperature.
func (d *Device) GetTemperature(nvml.TemperatureSensors) (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() { v = d.currentTemp() })
	return v, ret
}

// GetTemperatureThreshold returns the slowdown, shutdown or memory
// (HBM) threshold.
func (d *Device) GetTemperatureThreshold(t nvml.TemperatureThresholds) (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() {
		switch t {
		case nvml.TEMPERATURE_THRESHOLD_SHUTDOWN:
			v = shutdownTemp
		case nvml.TEMPERATURE_THRESHOLD_MEM_MAX:
			v = memoryMaxTemp
		default:
			v = slowdownTemp
		}
	})
	return v, ret
}

// GetPowerUsage returns the power draw in milliwatts.
func (d *Device) GetPowerUsage() (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() { v = d.load.PowerMilliwatts() })
	return v, ret
}

// GetEnforcedPowerLimit returns the power limit in milliwatts.
func (d *Device) GetEnforcedPowerLimit() (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() { v = simload.PowerLimitMilliwatts })
	return v, ret
}

// GetUtilizationRates returns GPU and memory utilisation.
func (d *Device) GetUtilizationRates() (nvml.Utilization, nvml.Return) {
	var u nvml.Utilization
	ret := d.read(func() {
		u.Gpu = uint32(math.Round(float64(min(d.load.Util, 100))))
		u.Memory = uint32(math.Round(float64(min(d.load.Util*0.6, 100))))
	})
	return u, ret
}

// GetClockInfo returns the SM or memory clock in MHz.
func (d *Device) GetClockInfo(t nvml.ClockType) (uint32, nvml.Return) {
	var v uint32
	ret := d.read(func() {
		switch t {
		case nvml.CLOCK_MEM:
			v = memClock
		default:
			v = uint32(smClockIdle + (smClockMax-smClockIdle)*min(d.load.Util/60, 1))
			switch {
			case d.powerBrake.active(d.now):
				v = v / 2
			case d.thermalSlowdown() || d.hwSlowdown.active(d.now):
				v = v * 6 / 10
			}
		}
	})
	return v, ret
}

// GetCurrentClocksEventReasons returns the clock-event reason bitmask.
func (d *Device) GetCurrentClocksEventReasons() (uint64, nvml.Return) {
	var v uint64
	ret := d.read(func() {
		if d.load.Util < 5 {
			v |= nvml.ClocksEventReasonGpuIdle
		}
		// The hardware-slowdown bit says the clocks are held down; the
		// thermal and power-brake bits say why, when the GPU knows.
		if d.thermalSlowdown() {
			v |= nvml.ClocksThrottleReasonHwSlowdown | nvml.ClocksThrottleReasonHwThermalSlowdown
		}
		if d.powerBrake.active(d.now) {
			v |= nvml.ClocksThrottleReasonHwSlowdown | nvml.ClocksThrottleReasonHwPowerBrakeSlowdown
		}
		if d.hwSlowdown.active(d.now) {
			v |= nvml.ClocksThrottleReasonHwSlowdown
		}
	})
	return v, ret
}

// GetTotalEccErrors returns an ECC counter.
func (d *Device) GetTotalEccErrors(t nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
	var v uint64
	ret := d.read(func() {
		switch {
		case t == nvml.MEMORY_ERROR_TYPE_CORRECTED && c == nvml.VOLATILE_ECC:
			v = d.eccVolatileCorr
		case t == nvml.MEMORY_ERROR_TYPE_UNCORRECTED && c == nvml.VOLATILE_ECC:
			v = d.eccVolatileUnc
		case t == nvml.MEMORY_ERROR_TYPE_CORRECTED:
			v = d.eccAggregateCorr
		default:
			v = d.eccAggregateUnc
		}
	})
	return v, ret
}

// GetRemappedRows returns the remapped-row state.
func (d *Device) GetRemappedRows() (int, int, bool, bool, nvml.Return) {
	var corr, unc int
	var pending, failure bool
	ret := d.read(func() {
		corr, unc, pending, failure = d.remapCorrected, d.remapUncorrected, d.remapPending, d.remapFailure
	})
	return corr, unc, pending, failure, ret
}

// GetRetiredPages returns the addresses of the pages retired for cause.
func (d *Device) GetRetiredPages(cause nvml.PageRetirementCause) ([]uint64, nvml.Return) {
	addrs, _, ret := d.GetRetiredPages_v2(cause)
	return addrs, ret
}

// GetRetiredPagesPendingStatus says whether retired pages wait for a reset
// to be taken out of use.
func (d *Device) GetRetiredPagesPendingStatus() (nvml.EnableState, nvml.Return) {
	var st nvml.EnableState
	ret := d.read(func() {
		if d.retiredPending {
			st = nvml.FEATURE_ENABLED
		}
	})
	return st, ret
}

// GetNvLinkState returns one link's state.
func (d *Device) GetNvLinkState(link int) (nvml.EnableState, nvml.Return) {
	var st nvml.EnableState
	inRange := true
	ret := d.read(func() {
		if link < 0 || link >= len(d.links) {
			inRange = false
			return
		}
		if d.links[link] {
			st = nvml.FEATURE_ENABLED
		}
	})
	if ret == nvml.SUCCESS && !inRange {
		return 0, nvml.ERROR_INVALID_ARGUMENT
	}
	return st, ret
}

// GetPcieReplayCounter returns the PCIe replay counter.
func (d *Device) GetPcieReplayCounter() (int, nvml.Return) {
	var v int
	ret := d.read(func() { v = d.pcie.at(d.now) })
	return v, ret
}

// GetComputeRunningProcesses returns the attached processes that still run.
func (d *Device) GetComputeRunningProcesses() ([]nvml.ProcessInfo, nvml.Return) {
	var out []nvml.ProcessInfo
	ret := d.read(func() {
		for _, pid := range d.livePIDs() {
			out = append(out, nvml.ProcessInfo{Pid: pid, UsedGpuMemory: 8 << 30})
		}
	})
	return out, ret
}
