package fleet

import (
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// sample is a heartbeat's GpuSample in 24 bytes instead of a message.
type sample struct {
	mem   uint64
	power uint32
	temp  uint16
	procs uint16
	idx   uint8
	util  uint8
}

// packSamples packs a heartbeat's samples. The API refuses a value that
// does not fit (docs/api.md's limits), so the clamps here never change an
// accepted value; they keep a caller that skipped the checks from wrapping.
func packSamples(in []*fleetv1.GpuSample) []sample {
	out := make([]sample, len(in))
	for i, s := range in {
		out[i] = sample{
			mem: s.GetMemoryUsedBytes(), power: s.GetPowerUsageMilliwatts(),
			temp: uint16(min(s.GetTemperatureCelsius(), 65535)), procs: uint16(min(s.GetProcessCount(), 65535)),
			idx: uint8(s.GetGpuIndex()), util: uint8(min(s.GetUtilizationGpuPercent(), 100)),
		}
	}
	return out
}

// protoSamples makes packed samples into messages, the messages in one
// allocation, for a node's view.
func protoSamples(in []sample) []*fleetv1.GpuSample {
	if len(in) == 0 {
		return nil
	}
	msgs := make([]fleetv1.GpuSample, len(in))
	out := make([]*fleetv1.GpuSample, len(in))
	for i, s := range in {
		m := &msgs[i]
		m.GpuIndex, m.UtilizationGpuPercent, m.TemperatureCelsius = uint32(s.idx), uint32(s.util), uint32(s.temp)
		m.PowerUsageMilliwatts, m.MemoryUsedBytes, m.ProcessCount = s.power, s.mem, uint32(s.procs)
		out[i] = m
	}
	return out
}

// historyLen is how many heartbeat samples per GPU are kept for the
// console's sparklines: five minutes at the default interval.
const historyLen = 30

// gpuHistory is one GPU's recent samples in a ring, a byte or two each.
type gpuHistory struct {
	idx        uint8
	n, next    uint8
	util, temp [historyLen]uint8
	powerWatts [historyLen]uint16
}

// historyOf finds or adds the history of GPU idx.
func historyOf(hs *[]gpuHistory, idx uint8) *gpuHistory {
	for i := range *hs {
		if (*hs)[i].idx == idx {
			return &(*hs)[i]
		}
	}
	*hs = append(*hs, gpuHistory{idx: idx})
	return &(*hs)[len(*hs)-1]
}

func (h *gpuHistory) add(s sample) {
	h.util[h.next] = s.util
	h.temp[h.next] = uint8(min(s.temp, 255))
	h.powerWatts[h.next] = uint16(min(s.power/1000, 65535))
	h.next = (h.next + 1) % historyLen
	h.n = min(h.n+1, historyLen)
}

// proto returns the history oldest first.
func (h *gpuHistory) proto() *controlplanev1.GpuHistory {
	out := &controlplanev1.GpuHistory{GpuIndex: uint32(h.idx)}
	for i := range int(h.n) {
		j := (int(h.next) - int(h.n) + i + historyLen) % historyLen
		out.UtilizationGpuPercent = append(out.UtilizationGpuPercent, uint32(h.util[j]))
		out.TemperatureCelsius = append(out.TemperatureCelsius, uint32(h.temp[j]))
		out.PowerUsageWatts = append(out.PowerUsageWatts, uint32(h.powerWatts[j]))
	}
	return out
}
