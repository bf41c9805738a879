package gpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// checkFunc records an NVML call's outcome for a metric group and reports
// whether its value is good.
type checkFunc func(group string, ret nvml.Return) bool

// readFields reads the values NVML gives only as field values, in one
// call: the recovery action the driver asks for and the memory (HBM)
// temperature. Each field answers for itself, so a driver that knows one
// and not the other still reports the one.
func readFields(d nvml.Device, m *fleetv1.GpuMetrics, check checkFunc) {
	values := []nvml.FieldValue{
		{FieldId: nvml.FI_DEV_GET_GPU_RECOVERY_ACTION},
		{FieldId: nvml.FI_DEV_MEMORY_TEMP},
	}
	if ret := d.GetFieldValues(values); ret != nvml.SUCCESS {
		check(GroupRecoveryAction, ret)
		check(GroupMemoryTemperature, ret)
		return
	}
	if check(GroupRecoveryAction, nvml.Return(values[0].NvmlReturn)) {
		if v, ok := fieldUint(values[0]); ok {
			m.RecoveryAction = recoveryAction(v)
		}
	}
	if check(GroupMemoryTemperature, nvml.Return(values[1].NvmlReturn)) {
		if v, ok := fieldUint(values[1]); ok {
			m.MemoryTemperatureCelsius = uint32(min(v, math.MaxUint32))
		}
	}
}

// fieldUint reads a field value as an unsigned integer. NVML fills the
// value's union in the host's byte order, as ValueType says; a negative
// value reads as 0. ok is false for a type this reader does not know.
func fieldUint(v nvml.FieldValue) (uint64, bool) {
	b := v.Value[:]
	switch nvml.ValueType(v.ValueType) {
	case nvml.VALUE_TYPE_UNSIGNED_SHORT:
		return uint64(binary.NativeEndian.Uint16(b)), true
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return uint64(binary.NativeEndian.Uint32(b)), true
	case nvml.VALUE_TYPE_UNSIGNED_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG_LONG:
		return binary.NativeEndian.Uint64(b), true
	case nvml.VALUE_TYPE_SIGNED_INT:
		return uint64(max(int32(binary.NativeEndian.Uint32(b)), 0)), true
	case nvml.VALUE_TYPE_SIGNED_LONG_LONG:
		return uint64(max(int64(binary.NativeEndian.Uint64(b)), 0)), true
	case nvml.VALUE_TYPE_DOUBLE:
		f := math.Float64frombits(binary.NativeEndian.Uint64(b))
		if !(f > 0) {
			return 0, true
		}
		return uint64(min(f, math.MaxUint64)), true
	}
	return 0, false
}

// recoveryAction maps NVML's recovery action onto the API's. The actions
// newer drivers add map onto the remedy that covers them: a bus reset is a
// GPU reset, a system reboot a node reboot. Recovering an IMEX domain is
// the fabric's business, not this node's, and reads as none.
func recoveryAction(v uint64) fleetv1.RecoveryAction {
	if v > math.MaxInt32 {
		return fleetv1.RecoveryAction_RECOVERY_ACTION_NONE
	}
	switch nvml.DeviceGpuRecoveryAction(v) {
	case nvml.GPU_RECOVERY_ACTION_GPU_RESET, nvml.GPU_RECOVERY_ACTION_BUS_RESET:
		return fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET
	case nvml.GPU_RECOVERY_ACTION_NODE_REBOOT, nvml.GPU_RECOVERY_ACTION_SYSTEM_REBOOT:
		return fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT
	case nvml.GPU_RECOVERY_ACTION_DRAIN_P2P:
		return fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_P2P
	case nvml.GPU_RECOVERY_ACTION_DRAIN_AND_RESET:
		return fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET
	}
	return fleetv1.RecoveryAction_RECOVERY_ACTION_NONE
}

// RecoveryActionWords says what the driver asks for with a recovery action,
// in the words an operator reads in an event or a diagnostics check.
func RecoveryActionWords(a fleetv1.RecoveryAction) string {
	switch a {
	case fleetv1.RecoveryAction_RECOVERY_ACTION_NONE:
		return "the driver asks for no recovery"
	case fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET:
		return "the driver asks for a GPU reset"
	case fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT:
		return "the driver asks for a node reboot"
	case fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_P2P:
		return "the driver asks for the processes using peer-to-peer traffic to stop"
	case fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET:
		return "the driver asks to drain the GPU, then reset it"
	}
	return "the driver's recovery action is unknown"
}

// readPCIeLink reads the PCIe link's current generation and width, which
// set the replay rate the link may have.
func readPCIeLink(d nvml.Device, m *fleetv1.GpuMetrics, check checkFunc) {
	if v, ret := d.GetCurrPcieLinkGeneration(); check(GroupPCIeLink, ret) {
		m.PcieLinkGeneration = uint32(max(v, 0))
	}
	if v, ret := d.GetCurrPcieLinkWidth(); check(GroupPCIeLink, ret) {
		m.PcieLinkWidth = uint32(max(v, 0))
	}
}

// PCIeLinkWords names a PCIe link by generation and width, as an event or
// a diagnostics check says it: "a Gen4 x16 link".
func PCIeLinkWords(gen, width uint32) string {
	if gen == 0 || width == 0 {
		return "a link of unknown generation and width"
	}
	return fmt.Sprintf("a Gen%d x%d link", gen, width)
}

// nvlinkCounters are the NVLink error counters read for each link.
var nvlinkCounters = [...]nvml.NvLinkErrorCounter{
	nvml.NVLINK_ERROR_DL_REPLAY,
	nvml.NVLINK_ERROR_DL_RECOVERY,
	nvml.NVLINK_ERROR_DL_CRC_FLIT,
	nvml.NVLINK_ERROR_DL_CRC_DATA,
}

// readNvLinkErrors reads the error counters of each link in links. A
// counter the GPU does not support reads as 0 and is not asked again on
// the other links; the group is unsupported only when none is supported,
// since GPUs differ in which CRC counters they keep. A counter that fails
// otherwise keeps the value last read: the counters only rise while the
// driver is loaded, and a 0 would make the next reading look like a burst.
func readNvLinkErrors(d nvml.Device, links []*fleetv1.NvLinkState, h *history, check checkFunc) {
	var unsupported [len(nvlinkCounters)]bool
	for _, l := range links {
		last := h.nvlinkErrors[l.GetLink()]
		var c [len(nvlinkCounters)]uint64
		for i, counter := range nvlinkCounters {
			if unsupported[i] {
				continue
			}
			v, ret := d.GetNvLinkErrorCounter(int(l.GetLink()), counter)
			switch {
			case ret == nvml.ERROR_NOT_SUPPORTED:
				unsupported[i] = true
			case check(GroupNVLinkErrors, ret):
				c[i] = v
			default:
				c[i] = last[i]
			}
		}
		h.nvlinkErrors[l.GetLink()] = c
		l.ReplayErrors, l.RecoveryErrors, l.CrcErrors = c[0], c[1], c[2]+c[3]
	}
	if len(links) > 0 && !slices.Contains(unsupported[:], false) {
		check(GroupNVLinkErrors, nvml.ERROR_NOT_SUPPORTED)
	}
}

// readRetiredPages reads the pages retired for single-bit and double-bit
// errors, and how many double-bit retirements fell in the week before now,
// which tells a GPU still retiring pages from one that did long ago.
func readRetiredPages(d nvml.Device, check checkFunc, now time.Time) *fleetv1.RetiredPages {
	sbe, ret := d.GetRetiredPages(nvml.PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS)
	if !check(GroupRetiredPages, ret) {
		return nil
	}
	_, dbeTimes, ret := d.GetRetiredPages_v2(nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
	if !check(GroupRetiredPages, ret) {
		return nil
	}
	rp := &fleetv1.RetiredPages{SingleBit: uint32(len(sbe)), DoubleBit: uint32(len(dbeTimes))}
	weekAgo := now.Add(-7 * 24 * time.Hour).Unix()
	for _, t := range dbeTimes {
		// NVML gives seconds since the epoch; a page retired during this
		// reading may carry a second after now, and still counts.
		if t <= math.MaxInt64 && int64(t) >= weekAgo {
			rp.DoubleBitLastWeek++
		}
	}
	if st, ret := d.GetRetiredPagesPendingStatus(); check(GroupRetiredPages, ret) {
		rp.Pending = st == nvml.FEATURE_ENABLED
	}
	return rp
}
