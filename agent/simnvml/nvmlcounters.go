// The nvml.Device calls for the driver's own judgement and the error
// counters: field values (the recovery action, the memory temperature),
// the PCIe link, NVLink error counters and retired pages.

package simnvml

import (
	"encoding/binary"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// GetFieldValues fills each value NVML gives as a field: the recovery
// action the driver asks for and the memory (HBM) temperature. A field the
// simulated driver does not know answers ERROR_NOT_SUPPORTED on its own,
// as NVML does.
func (d *Device) GetFieldValues(values []nvml.FieldValue) nvml.Return {
	return d.read(func() {
		ts := d.now.UnixMicro()
		for i := range values {
			v := &values[i]
			v.Timestamp = ts
			v.NvmlReturn = uint32(nvml.SUCCESS)
			switch v.FieldId {
			case nvml.FI_DEV_GET_GPU_RECOVERY_ACTION:
				putFieldUint(v, uint32(d.recovery))
			case nvml.FI_DEV_MEMORY_TEMP:
				putFieldUint(v, d.memoryTemp())
			default:
				v.NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
			}
		}
	})
}

// putFieldUint stores an unsigned int in a field value's union, in the
// host's byte order as NVML does.
func putFieldUint(v *nvml.FieldValue, x uint32) {
	v.ValueType = uint32(nvml.VALUE_TYPE_UNSIGNED_INT)
	v.Value = [8]byte{}
	binary.NativeEndian.PutUint32(v.Value[:], x)
}

// GetCurrPcieLinkGeneration returns the PCIe link's generation: 4 for an
// A100, 5 for the Hopper GPUs simulated.
func (d *Device) GetCurrPcieLinkGeneration() (int, nvml.Return) {
	var v int
	ret := d.read(func() {
		v = 5
		if strings.Contains(d.Config.Name, "A100") {
			v = 4
		}
	})
	return v, ret
}

// GetCurrPcieLinkWidth returns the PCIe link's width in lanes.
func (d *Device) GetCurrPcieLinkWidth() (int, nvml.Return) {
	var v int
	ret := d.read(func() { v = pcieLinkWidth })
	return v, ret
}

// GetNvLinkErrorCounter returns one of a link's data-link error counters
// since the driver loaded: replays, recoveries, flit or data CRC errors.
func (d *Device) GetNvLinkErrorCounter(link int, counter nvml.NvLinkErrorCounter) (uint64, nvml.Return) {
	var v uint64
	ok := true
	ret := d.read(func() {
		if link < 0 || link >= len(d.nvlinkErrors) {
			ok = false
			return
		}
		if counter < 0 || counter >= nvlinkCounterKinds {
			return
		}
		v = d.nvlinkErrors[link][counter]
	})
	switch {
	case ret != nvml.SUCCESS:
		return 0, ret
	case !ok:
		return 0, nvml.ERROR_INVALID_ARGUMENT
	case counter < 0 || counter >= nvlinkCounterKinds:
		return 0, nvml.ERROR_NOT_SUPPORTED
	}
	return v, nvml.SUCCESS
}

// GetRetiredPages_v2 returns the addresses of the pages retired for cause
// and when each was retired, in seconds since the epoch.
func (d *Device) GetRetiredPages_v2(cause nvml.PageRetirementCause) ([]uint64, []uint64, nvml.Return) {
	if cause < 0 || int(cause) >= len(d.retired) {
		if ret := d.read(func() {}); ret != nvml.SUCCESS {
			return nil, nil, ret
		}
		return nil, nil, nvml.ERROR_INVALID_ARGUMENT
	}
	var addrs, times []uint64
	ret := d.read(func() {
		for _, p := range d.retired[cause] {
			addrs = append(addrs, p.addr)
			times = append(times, uint64(p.at.Unix()))
		}
	})
	return addrs, times, ret
}
