package tui

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The console reads each node of a snapshot, and each node that changes,
// straight from its wire encoding into the fleet table's row: the node's
// id, names, labels, states, cause, its GPUs' health and first fault, and
// its latest samples. The rest of a node (its GPUs' identities, limits,
// link counts and faults in full) is what the node view shows, and it
// fetches the node whole when it opens. Decoding a whole node builds
// about 4 KB of messages in some 80 allocations, most of them its eight
// GPUs'; a row is about 1.2 KB in 16 (BenchmarkDecodeSnapshotChunk,
// BenchmarkFleetMemory), and reads two to three times as fast.

// Message is one WatchFleet message as the console keeps it.
type Message struct {
	// resp is the message; a snapshot's comes without its nodes, and a
	// node upsert's without its change.
	resp *controlplanev1.WatchFleetResponse
	// rows are a snapshot chunk's nodes.
	rows []*row
	// upsert is a node upsert's node.
	upsert *row
}

// SnapshotComplete reports whether m is a snapshot's last chunk.
func (m Message) SnapshotComplete() bool { return m.resp.GetSnapshot().GetComplete() }

// SnapshotNodes is how many nodes m carries as a snapshot chunk.
func (m Message) SnapshotNodes() int { return len(m.rows) }

// The tags of the fields read here (number and wire type), taken from the
// messages' descriptors, so that a renamed, renumbered or retyped field
// fails every test at start rather than read the wrong bytes.
var (
	tagSnapshot      = tagOf(&controlplanev1.WatchFleetResponse{}, "snapshot")
	tagNodeUpsert    = tagOf(&controlplanev1.WatchFleetResponse{}, "node_upsert")
	tagSnapshotNodes = tagOf(&controlplanev1.Snapshot{}, "nodes")

	tagNodeID        = tagOf(&fleetv1.Node{}, "node_id")
	tagHostname      = tagOf(&fleetv1.Node{}, "hostname")
	tagLabels        = tagOf(&fleetv1.Node{}, "labels")
	tagLifecycle     = tagOf(&fleetv1.Node{}, "lifecycle")
	tagHealth        = tagOf(&fleetv1.Node{}, "health")
	tagHealthCause   = tagOf(&fleetv1.Node{}, "health_cause")
	tagRemedy        = tagOf(&fleetv1.Node{}, "remedy")
	tagReachability  = tagOf(&fleetv1.Node{}, "reachability")
	tagLastHeartbeat = tagOf(&fleetv1.Node{}, "last_heartbeat_at")
	tagGpus          = tagOf(&fleetv1.Node{}, "gpus")
	tagSamples       = tagOf(&fleetv1.Node{}, "samples")
	tagPool          = tagOf(&fleetv1.Node{}, "pool")
	tagHeldBack      = tagOf(&fleetv1.Node{}, "cordon_held_back_at")

	tagLabelKey   = protowire.EncodeTag(1, protowire.BytesType) // a map entry's
	tagLabelValue = protowire.EncodeTag(2, protowire.BytesType)

	tagGpuIndex  = tagOf(&fleetv1.Gpu{}, "index")
	tagGpuHealth = tagOf(&fleetv1.Gpu{}, "health")
	tagGpuLost   = tagOf(&fleetv1.Gpu{}, "lost")
	tagGpuFaults = tagOf(&fleetv1.Gpu{}, "faults")
	tagFaultKind = tagOf(&fleetv1.Fault{}, "kind")
	tagFaultXid  = tagOf(&fleetv1.Fault{}, "xid")

	tagSampleGpu     = tagOf(&fleetv1.GpuSample{}, "gpu_index")
	tagSampleUtil    = tagOf(&fleetv1.GpuSample{}, "utilization_gpu_percent")
	tagSampleTemp    = tagOf(&fleetv1.GpuSample{}, "temperature_celsius")
	tagSamplePower   = tagOf(&fleetv1.GpuSample{}, "power_usage_milliwatts")
	tagSampleMemory  = tagOf(&fleetv1.GpuSample{}, "memory_used_bytes")
	tagSampleProcess = tagOf(&fleetv1.GpuSample{}, "process_count")

	tagSeconds = tagOf(&timestamppb.Timestamp{}, "seconds")
	tagNanos   = tagOf(&timestamppb.Timestamp{}, "nanos")
)

// tagOf is the tag m's field name is encoded with. Only the kinds read
// here are known.
func tagOf(m proto.Message, name string) uint64 {
	d := m.ProtoReflect().Descriptor()
	f := d.Fields().ByName(protoreflect.Name(name))
	if f == nil {
		panic(fmt.Sprintf("tui: %s has no field %s", d.FullName(), name))
	}
	switch f.Kind() {
	case protoreflect.MessageKind, protoreflect.StringKind:
		return protowire.EncodeTag(f.Number(), protowire.BytesType)
	case protoreflect.EnumKind, protoreflect.BoolKind, protoreflect.Int32Kind, protoreflect.Int64Kind,
		protoreflect.Uint32Kind, protoreflect.Uint64Kind:
		if f.IsPacked() {
			break
		}
		return protowire.EncodeTag(f.Number(), protowire.VarintType)
	}
	panic(fmt.Sprintf("tui: %s.%s is a %v, which the console does not read from the wire", d.FullName(), name, f.Kind()))
}

// DecodeMessage decodes one WatchFleet message's wire bytes as the
// console keeps it; it keeps nothing of b. It is the console's decoder
// for watchclient.Watch.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	// rest is every field but a snapshot's nodes and an upsert's node,
	// decoded as protobuf: b itself when it has neither, as heartbeats
	// and events do.
	whole := b
	var rest, upsert []byte
	split, hasUpsert := false, false
	for len(b) > 0 {
		tag, _, val, n := readField(b)
		if n < 0 {
			return Message{}, protowire.ParseError(n)
		}
		if !split && (tag == tagSnapshot || tag == tagNodeUpsert) {
			split = true
			rest = append(rest, whole[:len(whole)-len(b)]...)
		}
		raw := b[:n]
		b = b[n:]
		switch {
		case tag == tagSnapshot:
			var snapshot []byte
			for len(val) > 0 {
				tag, _, node, n := readField(val)
				if n < 0 {
					return Message{}, protowire.ParseError(n)
				}
				if tag != tagSnapshotNodes {
					snapshot = append(snapshot, val[:n]...)
				} else {
					row, err := decodeRow(node)
					if err != nil {
						return Message{}, err
					}
					m.rows = append(m.rows, row)
				}
				val = val[n:]
			}
			rest = protowire.AppendVarint(rest, tagSnapshot)
			rest = protowire.AppendBytes(rest, snapshot)
		case tag == tagNodeUpsert:
			// A message field that comes more than once is their merge,
			// which is their bytes one after another.
			upsert = append(upsert, val...)
			hasUpsert = true
		case split:
			rest = append(rest, raw...)
		}
	}
	if !split {
		rest = whole
	}
	m.resp = &controlplanev1.WatchFleetResponse{}
	if err := proto.Unmarshal(rest, m.resp); err != nil {
		return Message{}, err
	}
	if hasUpsert {
		row, err := decodeRow(upsert)
		if err != nil {
			return Message{}, err
		}
		m.upsert = row
	}
	return m, nil
}

// gpuState is what the table keeps of one GPU.
type gpuState struct {
	index  uint32
	health fleetv1.HealthStatus
	lost   bool
	// faulted says the GPU has a fault; kind and xid are its first's.
	faulted bool
	kind    fleetv1.EventKind
	xid     uint32
}

// decodeRow reads a fleetv1.Node's wire bytes into a row, as protobuf
// would decode them: the last of a scalar that comes twice counts, a
// message that comes twice is merged, fields it does not read are
// skipped.
func decodeRow(b []byte) (*row, error) {
	r := &row{}
	var (
		hostname, cause string
		labelBuf        [8]string
		labels          = labelBuf[:0] // key, value, …, in the order they came
		hbSec, hbNanos  int64
		hasHB           bool
		remedy          fleetv1.Remedy
		gpuBuf          [16]gpuState
		gpus            = gpuBuf[:0]
		sampleBuf       [16][]byte
		samples         = sampleBuf[:0] // their encodings
		err             error
	)
	for len(b) > 0 && err == nil {
		tag, v, val, n := readField(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch tag {
		case tagNodeID:
			r.id, err = wireText(val)
		case tagHostname:
			hostname, err = wireText(val)
		case tagLabels:
			var key, value string
			key, value, err = decodeLabel(val)
			labels = append(labels, key, value)
		case tagLifecycle:
			r.lifecycle = fleetv1.LifecycleState(int32(v))
		case tagHealth:
			r.health = fleetv1.HealthStatus(int32(v))
		case tagHealthCause:
			cause, err = wireText(val)
		case tagRemedy:
			remedy = fleetv1.Remedy(int32(v))
		case tagReachability:
			r.reach = fleetv1.Reachability(int32(v))
		case tagLastHeartbeat:
			hasHB = true
			err = decodeTimestamp(val, &hbSec, &hbNanos)
		case tagGpus:
			var g gpuState
			g, err = decodeGpu(val)
			gpus = append(gpus, g)
		case tagSamples:
			samples = append(samples, val)
		case tagPool:
			r.pool, err = wireText(val)
		case tagHeldBack:
			r.heldBack = true
		}
	}
	if err != nil {
		return nil, err
	}
	if len(gpus) > 0 {
		r.glyphs = make([]byte, 0, len(gpus))
	}
	for _, g := range gpus {
		gl := gpuGlyph(g.health, g.lost)
		r.glyphs = append(r.glyphs, gl)
		if gl == 'U' || gl == 'X' {
			r.badGPUs++
		}
	}
	r.why = whyOf(cause, remedy, gpus)
	r.labelKV = mapEntries(labels)
	r.labels = display.LabelPairs(r.labelKV)
	r.search = strings.ToLower(r.id + " " + hostname + " " + r.pool + " " + r.labels)
	s, err := decodeSamples(samples)
	if err != nil {
		return nil, err
	}
	var at time.Time
	if hasHB {
		at = time.Unix(hbSec, hbNanos).UTC()
	}
	r.heartbeat(r.reach, at, s)
	return r, nil
}

// decodeLabel reads one entry of the labels map.
func decodeLabel(b []byte) (k, v string, err error) {
	for len(b) > 0 && err == nil {
		tag, _, val, n := readField(b)
		if n < 0 {
			return "", "", protowire.ParseError(n)
		}
		b = b[n:]
		switch tag {
		case tagLabelKey:
			k, err = wireText(val)
		case tagLabelValue:
			v, err = wireText(val)
		}
	}
	return k, v, err
}

// mapEntries is a map's entries, key and value in turn, as decoding the
// map would keep them: sorted by key, the last of a key that came twice.
// It does not keep kv.
func mapEntries(kv []string) []string {
	switch len(kv) {
	case 0:
		return nil
	case 2:
		return []string{kv[0], kv[1]}
	}
	type entry struct {
		k, v string
		at   int
	}
	entries := make([]entry, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		entries = append(entries, entry{kv[i], kv[i+1], i})
	}
	slices.SortFunc(entries, func(a, b entry) int { return cmp.Or(strings.Compare(a.k, b.k), cmp.Compare(b.at, a.at)) })
	out := make([]string, 0, len(kv))
	for i, e := range entries {
		if i > 0 && e.k == entries[i-1].k {
			continue // an earlier one of the key: the later one counts
		}
		out = append(out, e.k, e.v)
	}
	return out
}

// decodeTimestamp merges a google.protobuf.Timestamp into sec and nanos.
func decodeTimestamp(b []byte, sec, nanos *int64) error {
	for len(b) > 0 {
		tag, v, _, n := readField(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch tag {
		case tagSeconds:
			*sec = int64(v)
		case tagNanos:
			*nanos = int64(int32(v))
		}
	}
	return nil
}

// decodeGpu reads what the table keeps of one GPU.
func decodeGpu(b []byte) (gpuState, error) {
	var g gpuState
	for len(b) > 0 {
		tag, v, val, n := readField(b)
		if n < 0 {
			return g, protowire.ParseError(n)
		}
		b = b[n:]
		switch tag {
		case tagGpuIndex:
			g.index = uint32(v)
		case tagGpuHealth:
			g.health = fleetv1.HealthStatus(int32(v))
		case tagGpuLost:
			g.lost = v != 0
		case tagGpuFaults:
			if g.faulted {
				continue // only the first is read
			}
			g.faulted = true
			for len(val) > 0 {
				tag, v, _, n := readField(val)
				if n < 0 {
					return g, protowire.ParseError(n)
				}
				val = val[n:]
				switch tag {
				case tagFaultKind:
					g.kind = fleetv1.EventKind(int32(v))
				case tagFaultXid:
					g.xid = uint32(v)
				}
			}
		}
	}
	return g, nil
}

// decodeSamples reads a node's samples from their encodings, in one
// allocation for the messages and one for the slice.
func decodeSamples(encoded [][]byte) ([]*fleetv1.GpuSample, error) {
	if len(encoded) == 0 {
		return nil, nil
	}
	backing := make([]fleetv1.GpuSample, len(encoded))
	out := make([]*fleetv1.GpuSample, len(encoded))
	for i, b := range encoded {
		s := &backing[i]
		out[i] = s
		for len(b) > 0 {
			tag, v, _, n := readField(b)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			b = b[n:]
			switch tag {
			case tagSampleGpu:
				s.GpuIndex = uint32(v)
			case tagSampleUtil:
				s.UtilizationGpuPercent = uint32(v)
			case tagSampleTemp:
				s.TemperatureCelsius = uint32(v)
			case tagSamplePower:
				s.PowerUsageMilliwatts = uint32(v)
			case tagSampleMemory:
				s.MemoryUsedBytes = v
			case tagSampleProcess:
				s.ProcessCount = uint32(v)
			}
		}
	}
	return out, nil
}

// wireText is a string field's value; protobuf refuses one that is not
// UTF-8, and so does the console.
func wireText(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", errInvalidUTF8
	}
	return string(b), nil
}

var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// readField reads the field b begins with: its tag, a varint's value or a
// length-delimited field's bytes, and how many bytes it took, or a
// protowire error code under 0. Most tags, lengths and values in a node
// are one byte, and are read without a call. Each decoder above loops
// over it itself: the same loops through one function taking a callback
// for each field read a chunk 10–25 % slower (BenchmarkDecodeSnapshotChunk,
// alternated).
func readField(b []byte) (tag, v uint64, val []byte, n int) {
	n = 1
	if tag = uint64(b[0]); tag >= 0x80 || tag>>3 == 0 {
		num, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return 0, 0, nil, m
		}
		tag, n = protowire.EncodeTag(num, typ), m
	}
	rest := b[n:]
	var m int
	switch protowire.Type(tag & 7) {
	case protowire.VarintType:
		if len(rest) > 0 && rest[0] < 0x80 {
			v, m = uint64(rest[0]), 1
		} else {
			v, m = protowire.ConsumeVarint(rest)
		}
	case protowire.BytesType:
		if len(rest) > 0 && rest[0] < 0x80 && int(rest[0]) < len(rest) {
			m = 1 + int(rest[0])
			val = rest[1:m]
		} else {
			val, m = protowire.ConsumeBytes(rest)
		}
	default:
		m = protowire.ConsumeFieldValue(protowire.Number(tag>>3), protowire.Type(tag&7), rest)
	}
	if m < 0 {
		return 0, 0, nil, m
	}
	return tag, v, val, n + m
}
