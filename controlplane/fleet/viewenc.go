package fleet

import (
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
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

	heartbeatNodeID       = fieldOf(&controlplanev1.NodeHeartbeat{}, "node_id")
	heartbeatReachability = fieldOf(&controlplanev1.NodeHeartbeat{}, "reachability")
	heartbeatAt           = fieldOf(&controlplanev1.NodeHeartbeat{}, "last_heartbeat_at")
	heartbeatSamples      = fieldOf(&controlplanev1.NodeHeartbeat{}, "samples")
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
		b = appendSample(b, nodeSamples, s)
	}
	return b, nil
}

// AppendHeartbeat appends the node's latest heartbeat data to b as the
// encoding of a NodeHeartbeat, without tag or length, for the watch hub's
// heartbeat batches: its id, its reachability, the time of its last
// heartbeat and its samples, written from their packed form rather than
// made into messages and marshalled, 10 000 nodes a second at 100 000. It
// returns false once the node has left the fleet.
func (ns *nodeState) AppendHeartbeat(b []byte) ([]byte, bool) {
	if ns.removed.Load() {
		return b, false
	}
	if id := ns.id(); id != "" {
		b = protowire.AppendTag(b, heartbeatNodeID, protowire.BytesType)
		b = protowire.AppendString(b, id)
	}
	ns.live.mu.Lock()
	defer ns.live.mu.Unlock()
	b = appendVarintField(b, heartbeatReachability, uint64(ns.reachability()))
	b = appendTimestamp(b, heartbeatAt, ns.live.lastHeartbeat)
	for _, s := range ns.live.samples {
		b = appendSample(b, heartbeatSamples, s)
	}
	return b, true
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
	b, at := openShort(b, num)
	b = appendVarintField(b, timestampSeconds, uint64(t.Unix()))
	b = appendVarintField(b, timestampNanos, uint64(int64(t.Nanosecond())))
	return closeShort(b, at)
}

// appendSample appends s as field num, the GpuSample protoSamples makes
// of it.
func appendSample(b []byte, num protowire.Number, s sample) []byte {
	b, at := openShort(b, num)
	b = appendVarintField(b, sampleGPUIndex, uint64(s.idx))
	b = appendVarintField(b, sampleUtilization, uint64(s.util))
	b = appendVarintField(b, sampleTemperature, uint64(s.temp))
	b = appendVarintField(b, samplePower, uint64(s.power))
	b = appendVarintField(b, sampleMemory, s.mem)
	b = appendVarintField(b, sampleProcesses, uint64(s.procs))
	return closeShort(b, at)
}

// openShort appends the tag of message field num and a byte for its
// length, which closeShort fills in once the fields are appended after
// it: for a message of a few varint fields, at most 11 bytes each, whose
// length always takes one byte (under 128), so nothing is copied.
func openShort(b []byte, num protowire.Number) ([]byte, int) {
	b = appendVarint(b, uint64(protowire.EncodeTag(num, protowire.BytesType)))
	at := len(b)
	return append(b, 0), at
}

// closeShort writes the length of the message opened at at.
func closeShort(b []byte, at int) []byte {
	b[at] = byte(len(b) - at - 1)
	return b
}

// appendVarintField appends a varint field, which proto3 leaves out when
// it is zero.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendVarint(b, uint64(protowire.EncodeTag(num, protowire.VarintType)))
	return appendVarint(b, v)
}

// appendVarint appends v as a varint, as protowire.AppendVarint does; this
// one is inlined, which matters where most values take a byte or two:
// the samples of 10 000 nodes a second.
func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
