package simnvml

import (
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/navarch/navarch/internal/faultspec"
)

// Schedule injects a fault after its delay. A condition without a delay
// (a lost GPU, a link down, a hot GPU…) is there from the start, before
// anything reads the GPUs; an XID, and a recovery action, which the driver
// announces with XID 154, are events and always come later, to whoever
// listens by then. A fault for a GPU the node does not have is ignored.
func (b *Backend) Schedule(f faultspec.Spec) {
	if f.GPU >= len(b.devices) {
		return
	}
	if f.Delay <= 0 && f.Kind != faultspec.XID && f.Kind != faultspec.Recovery {
		b.Inject(f)
		return
	}
	b.after(f.Delay, func() { b.Inject(f) })
}

func (b *Backend) after(d time.Duration, fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.timers = append(b.timers, b.clock.AfterFunc(d, fn))
}

// Inject applies a fault now. A held condition lasts for f.Hold, or, when
// that is 0, until what ends it on real hardware: a GPU reset for the power
// brake and hardware slowdown, Heal or a reboot for a temperature, a reboot
// for a PCIe replay rate.
func (b *Backend) Inject(f faultspec.Spec) {
	if f.GPU < 0 || f.GPU >= len(b.devices) {
		return
	}
	d := b.devices[f.GPU]
	switch f.Kind {
	case faultspec.XID:
		b.raiseXID(d, f.Value, f.Text)
		return
	case faultspec.Recovery:
		b.setRecovery(d, nvml.DeviceGpuRecoveryAction(f.Value))
		return
	}
	now := b.clock.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	switch f.Kind {
	case faultspec.Temp:
		d.forcedTemp = float64(f.Value)
		d.hot = holdFor(now, f.Hold)
	case faultspec.MemTemp:
		d.forcedMemTemp = float64(f.Value)
		d.hotMemory = holdFor(now, f.Hold)
	case faultspec.ECCDBE:
		d.eccVolatileUnc++
		d.eccAggregateUnc++
	case faultspec.RowRemapPending:
		d.remapPending = true
		d.remapUncorrected++
	case faultspec.RowRemapFailure:
		d.remapFailure = true
	case faultspec.NVLinkDown:
		for l := range d.links {
			if d.links[l] {
				d.links[l] = false
				break
			}
		}
	case faultspec.NVLinkCRC:
		if f.Link < len(d.nvlinkErrors) {
			// Each flit that fails its CRC is sent again.
			d.nvlinkErrors[f.Link][nvml.NVLINK_ERROR_DL_CRC_FLIT] += uint64(f.Value)
			d.nvlinkErrors[f.Link][nvml.NVLINK_ERROR_DL_REPLAY] += uint64(f.Value)
		}
	case faultspec.PCIeReplays:
		if !f.PerMinute {
			d.pcie.count += int(f.Value)
			break
		}
		// The replays of an earlier rate stay counted.
		d.pcie = pcieReplays{count: d.pcie.at(now), rate: float64(f.Value), from: now}
		if f.Hold > 0 {
			d.pcie.to = now.Add(f.Hold)
		}
	case faultspec.RetiredSBE:
		d.retire(nvml.PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS, int(f.Value), now)
	case faultspec.RetiredDBE:
		d.retire(nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR, int(f.Value), now)
	case faultspec.PowerBrake:
		d.powerBrake = holdFor(now, f.Hold)
	case faultspec.HWSlowdown:
		d.hwSlowdown = holdFor(now, f.Hold)
	case faultspec.GPULost:
		d.lost = true
		// Its job dies with it.
		d.stopJob()
	}
}

// retire retires n pages for cause at now, pending until the GPU is reset.
// The caller holds d.mu.
func (d *Device) retire(cause nvml.PageRetirementCause, n int, now time.Time) {
	for range n {
		total := len(d.retired[0]) + len(d.retired[1])
		addr := uint64(0x2_0000_0000) + uint64(total)<<12
		d.retired[cause] = append(d.retired[cause], retiredPage{addr: addr, at: now})
	}
	d.retiredPending = true
}

// Heal clears a thermal fault and brings a lost GPU back, as a cooled rack
// or a reseated GPU would.
func (b *Backend) Heal(gpu int) {
	if gpu >= len(b.devices) {
		return
	}
	d := b.devices[gpu]
	d.mu.Lock()
	d.hot, d.hotMemory = held{}, held{}
	d.lost = false
	d.mu.Unlock()
}
