package fleet

import (
	"encoding/binary"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Field numbers of the view's heartbeat data, read from the descriptors.
var (
	nodeLastHeartbeatAt = fieldOf(&fleetv1.Node{}, "last_heartbeat_at")
	nodeSamples         = fieldOf(&fleetv1.Node{}, "samples")
	timestampSeconds    = fieldOf(&timestamppb.Timestamp{}, "seconds")
	timestampNanos      = fieldOf(&timestamppb.Timestamp{}, "nanos")
	sampleGPUIndex      = fieldOf(&fleetv1.GpuSample{}, "gpu_index")
	sampleUtilization   = fieldOf(&fleetv1.GpuSample{}, "utilization_gpu_percent")
	sampleTemperature   = fieldOf(&fleetv1.GpuSample{}, "temperature_celsius")
	samplePower         = fieldOf(&fleetv1.GpuSample{}, "power_usage_milliwatts")
	sampleMemory        = fieldOf(&fleetv1.GpuSample{}, "memory_used_bytes")
	sampleProcesses     = fieldOf(&fleetv1.GpuSample{}, "process_count")
)

func fieldOf(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// AppendView appends the encoding of Render(state, reach) to b, for the
// watch hub's snapshots, without building the view: the durable fields are
// marshalled from a shallow copy, and the heartbeat data is appended from
// its packed form, where the view would make a message of each GPU's
// sample (a tenth of a snapshot's allocations). The fields come after the
// others, which proto.Marshal would not do; decoded, it is Render's node,
// which TestAppendViewIsRender checks.
func (ns *nodeState) AppendView(b []byte, state *fleetv1.Node, reach fleetv1.Reachability) ([]byte, error) {
	ns.live.mu.Lock()
	// A heartbeat replaces the samples rather than changing them.
	last, samples, dropped := ns.live.lastHeartbeat, ns.live.samples, ns.live.dropped
	ns.live.mu.Unlock()
	n := shallowCopy(state)
	n.Reachability = reach
	n.Samples = nil
	n.DroppedEvents = dropped
	if !last.IsZero() {
		n.LastHeartbeatAt = nil
	}
	b, err := proto.MarshalOptions{}.MarshalAppend(b, n)
	if err != nil {
		return b, err
	}
	if !last.IsZero() {
		b = appendTimestamp(b, nodeLastHeartbeatAt, last)
	}
	for _, s := range samples {
		b = appendSample(b, s)
	}
	return b, nil
}

// appendTimestamp appends t as field num, a Timestamp as timestamppb.New
// makes it.
func appendTimestamp(b []byte, num protowire.Number, t time.Time) []byte {
	var ts [2 * (1 + binary.MaxVarintLen64)]byte
	m := appendVarintField(ts[:0], timestampSeconds, uint64(t.Unix()))
	m = appendVarintField(m, timestampNanos, uint64(int64(t.Nanosecond())))
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// appendSample appends s as one of the node's samples, the GpuSample
// protoSamples makes of it.
func appendSample(b []byte, s sample) []byte {
	var buf [6 * (1 + binary.MaxVarintLen64)]byte
	m := appendVarintField(buf[:0], sampleGPUIndex, uint64(s.idx))
	m = appendVarintField(m, sampleUtilization, uint64(s.util))
	m = appendVarintField(m, sampleTemperature, uint64(s.temp))
	m = appendVarintField(m, samplePower, uint64(s.power))
	m = appendVarintField(m, sampleMemory, s.mem)
	m = appendVarintField(m, sampleProcesses, uint64(s.procs))
	b = protowire.AppendTag(b, nodeSamples, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// appendVarintField appends a varint field, which proto3 leaves out when
// it is zero.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}
