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

// Field numbers of the view's heartbeat data and reachability, read from
// the descriptors.
var (
	nodeReachability    = fieldOf(&fleetv1.Node{}, "reachability")
	nodeLastHeartbeatAt = fieldOf(&fleetv1.Node{}, "last_heartbeat_at")
	nodeDroppedEvents   = fieldOf(&fleetv1.Node{}, "dropped_events")
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

// encodedState is a node's durable state in its encoding, as AppendView
// writes it before the heartbeat data: the view's durable fields, with
// the reachability, the last heartbeat, the samples and the dropped
// events left out. It is the encoding of state, which is never changed
// once stored (every change stores a changed copy), so it is current
// exactly while state is the node's durable state.
type encodedState struct {
	state *fleetv1.Node
	b     []byte
}

// AppendView appends the encoding of Render(state, reach) to b, for the
// watch hub's snapshots, without building the view. The durable fields
// are copied from the node's encoding of state, made by the first
// snapshot to see that state (a snapshot of a fleet that changed little
// since the last copies bytes instead of marshalling each node); the
// heartbeat data is appended from its packed form, where the view would
// make a message of each GPU's sample. The heartbeat fields come after
// the others, which proto.Marshal would not do; decoded, it is Render's
// node, which TestAppendViewIsRender checks.
func (ns *nodeState) AppendView(b []byte, state *fleetv1.Node, reach fleetv1.Reachability) ([]byte, error) {
	enc, err := ns.encoded(state)
	if err != nil {
		return b, err
	}
	b = append(b, enc...)
	b = appendVarintField(b, nodeReachability, uint64(reach))
	ns.live.mu.Lock()
	// A heartbeat replaces the samples rather than changing them.
	last, samples, dropped := ns.live.lastHeartbeat, ns.live.samples, ns.live.dropped
	ns.live.mu.Unlock()
	b = appendVarintField(b, nodeDroppedEvents, dropped)
	switch {
	case !last.IsZero():
		b = appendTimestamp(b, nodeLastHeartbeatAt, last)
	case state.GetLastHeartbeatAt() != nil:
		// Not heard from since start: the view has the stored time.
		b = protowire.AppendTag(b, nodeLastHeartbeatAt, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(proto.Size(state.GetLastHeartbeatAt())))
		if b, err = (proto.MarshalOptions{}).MarshalAppend(b, state.GetLastHeartbeatAt()); err != nil {
			return b, err
		}
	}
	for _, s := range samples {
		b = appendSample(b, s)
	}
	return b, nil
}

// encoded returns state's durable fields in their encoding: the node's
// encodedState when it is of state, else marshalled, and kept for the
// next snapshot while state is the node's durable state. A change drops
// what was kept (see Fleet.swap), so that no replaced state is held.
func (ns *nodeState) encoded(state *fleetv1.Node) ([]byte, error) {
	if kept := ns.enc.Load(); kept != nil && kept.state == state {
		return kept.b, nil
	}
	n := shallowCopy(state)
	n.Reachability = fleetv1.Reachability_REACHABILITY_UNSPECIFIED
	n.LastHeartbeatAt = nil
	n.Samples = nil
	n.DroppedEvents = 0
	b, err := proto.MarshalOptions{}.MarshalAppend(nil, n)
	if err != nil {
		return nil, err
	}
	if state == ns.node.Load() {
		e := &encodedState{state: state, b: b}
		ns.enc.Store(e)
		// A change that came meanwhile, having dropped what was kept
		// before this, shows here: swap replaces the state first.
		if state != ns.node.Load() {
			ns.enc.CompareAndSwap(e, nil)
		}
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
