package tui

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// rowOf is n's row as the console reads it off the stream.
func rowOf(t testing.TB, n *fleetv1.Node) *row {
	t.Helper()
	b, err := proto.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeRow(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rowFromMessage is the row of a decoded node, read with its getters: what
// decodeRow must give for the node's encoding.
func rowFromMessage(n *fleetv1.Node) *row {
	r := &row{id: n.GetNodeId()}
	r.lifecycle, r.health, r.reach = n.GetLifecycle(), n.GetHealth(), n.GetReachability()
	r.heldBack = n.GetCordonHeldBackAt() != nil
	var gpus []gpuState
	for _, g := range n.GetGpus() {
		gl := gpuGlyph(g.GetHealth(), g.GetLost())
		r.glyphs = append(r.glyphs, gl)
		if gl == 'U' || gl == 'X' {
			r.badGPUs++
		}
		s := gpuState{index: g.GetIndex(), health: g.GetHealth(), lost: g.GetLost(), faulted: len(g.GetFaults()) > 0}
		if s.faulted {
			s.kind, s.xid = g.GetFaults()[0].GetKind(), g.GetFaults()[0].GetXid()
		}
		gpus = append(gpus, s)
	}
	r.pool = n.GetPool()
	r.why = whyOf(n.GetHealthCause(), n.GetRemedy(), gpus)
	keys := make([]string, 0, len(n.GetLabels()))
	for k := range n.GetLabels() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		r.labelKV = append(r.labelKV, k, n.GetLabels()[k])
	}
	r.labels = display.Labels(n.GetLabels())
	r.search = strings.ToLower(n.GetNodeId() + " " + n.GetHostname() + " " + r.pool + " " + r.labels)
	var at time.Time
	if n.GetLastHeartbeatAt() != nil {
		at = n.GetLastHeartbeatAt().AsTime()
	}
	r.heartbeat(n.GetReachability(), at, n.GetSamples())
	return r
}

// sameRow fails t unless got and want are the same row.
func sameRow(t *testing.T, got, want *row) {
	t.Helper()
	if len(got.samples) != len(want.samples) {
		t.Fatalf("%s: %d samples, want %d", want.id, len(got.samples), len(want.samples))
	}
	for i := range got.samples {
		// The console keeps what it reads; a field this build does not
		// know is not among it.
		w := proto.CloneOf(want.samples[i])
		w.ProtoReflect().SetUnknown(nil)
		if !proto.Equal(got.samples[i], w) {
			t.Fatalf("%s: sample %d is %v, want %v", want.id, i, got.samples[i], want.samples[i])
		}
	}
	g, w := *got, *want
	g.samples, w.samples = nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("row\n%+v\nwant\n%+v", g, w)
	}
}

// wireNodes are nodes in every state the table shows, with the parts it
// does not read filled in too.
func wireNodes() []*fleetv1.Node {
	nodes := append(heldBackFleet(), bigNode("gpu-c64"), &fleetv1.Node{NodeId: "bare"})
	pooled := pooledSnapshot(41).GetSnapshot().GetNodes()
	nodes = append(nodes, pooled...)
	odd := fixtureNode("gpu-odd", 3, fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED, fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY,
		fleetv1.Reachability_REACHABILITY_OFFLINE, time.Hour)
	odd.Labels = map[string]string{"b": "2", "a": "", "": "empty key", "ünï": "cödé"}
	odd.LastHeartbeatAt = timestamppb.New(time.Unix(-5, 7))
	odd.Gpus[1].Faults = []*fleetv1.Fault{{Kind: fleetv1.EventKind_EVENT_KIND_THERMAL}, {Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79}}
	odd.Gpus[2].Index = 1 // two GPUs claim index 1: the first with a fault names the XID
	odd.Gpus[2].Faults = []*fleetv1.Fault{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 48}}
	odd.HealthCause = "gpu1: too hot\nand more"
	odd.Remedy = fleetv1.Remedy(99) // one this build does not know
	odd.Lifecycle = fleetv1.LifecycleState(-3)
	odd.Samples = append(odd.Samples, &fleetv1.GpuSample{GpuIndex: 7, MemoryUsedBytes: 1 << 62, ProcessCount: 4})
	odd.Drain = &fleetv1.DrainSpec{Reason: "retire"}
	return append(nodes, odd)
}

// TestDecodeRowReadsTheNode: the row read off a node's wire encoding is
// the row of the decoded node, for nodes in every state the table shows.
func TestDecodeRowReadsTheNode(t *testing.T) {
	for _, n := range wireNodes() {
		sameRow(t, rowOf(t, n), rowFromMessage(n))
	}
}

// TestDecodeRowMergesAsProtobuf: a node's encoding in two parts, one after
// the other, is their merge, as protobuf decodes it: the later scalar
// counts, messages merge field by field, a map keeps the later value of a
// key, and repeated fields add up.
func TestDecodeRowMergesAsProtobuf(t *testing.T) {
	first := fixtureNode("gpu-a01", 2, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY,
		fleetv1.Reachability_REACHABILITY_ONLINE, time.Second)
	first.LastHeartbeatAt = &timestamppb.Timestamp{Seconds: 100, Nanos: 5}
	second := &fleetv1.Node{
		Hostname: "renamed", Labels: map[string]string{"zone": "eu-west-1a", "rack": "r7"},
		Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED, LastHeartbeatAt: &timestamppb.Timestamp{Seconds: 200},
		Gpus:    []*fleetv1.Gpu{{Index: 2, Lost: true}},
		Samples: []*fleetv1.GpuSample{{GpuIndex: 2, TemperatureCelsius: 91}},
	}
	a, _ := proto.Marshal(first)
	b, _ := proto.Marshal(second)
	joined := append(a, b...)
	merged := &fleetv1.Node{}
	if err := proto.Unmarshal(joined, merged); err != nil {
		t.Fatal(err)
	}
	got, err := decodeRow(joined)
	if err != nil {
		t.Fatal(err)
	}
	sameRow(t, got, rowFromMessage(merged))
	if got.lastHB != time.Unix(200, 5).UTC() || got.label("zone") != "eu-west-1a" || string(got.glyphs) != "HHX" {
		t.Fatalf("merged row: last heartbeat %v, zone %q, glyphs %q", got.lastHB, got.label("zone"), got.glyphs)
	}
}

// TestDecodeRowRefusesWhatProtobufRefuses: bytes that do not parse, and a
// string the row keeps that is not UTF-8, are errors, as they are to
// protobuf.
func TestDecodeRowRefusesWhatProtobufRefuses(t *testing.T) {
	good, _ := proto.Marshal(fixtureFleet()[1])
	badText := protowire.AppendVarint(nil, tagHostname)
	badText = protowire.AppendBytes(badText, []byte{0xff, 'x'})
	badLabel := protowire.AppendVarint(nil, tagLabels)
	badLabel = protowire.AppendBytes(badLabel, protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte{0xc3}))
	for name, b := range map[string][]byte{
		"cut short":      good[:len(good)-3],
		"bad tag":        {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"hostname UTF-8": append(slices.Clone(good), badText...),
		"label UTF-8":    append(slices.Clone(good), badLabel...),
	} {
		t.Run(name, func(t *testing.T) {
			if proto.Unmarshal(b, &fleetv1.Node{}) == nil {
				t.Fatal("protobuf took it")
			}
			if _, err := decodeRow(b); err == nil {
				t.Fatal("decodeRow took it")
			}
		})
	}
}

// TestDecodeRowReadsEverySampleField: each of a sample's fields comes
// through, so that a field added to GpuSample is not silently dropped by
// the console.
func TestDecodeRowReadsEverySampleField(t *testing.T) {
	s := &fleetv1.GpuSample{}
	fields := s.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		switch f.Kind() {
		case protoreflect.Uint32Kind:
			s.ProtoReflect().Set(f, protoreflect.ValueOfUint32(uint32(1000+i)))
		case protoreflect.Uint64Kind:
			s.ProtoReflect().Set(f, protoreflect.ValueOfUint64(uint64(1<<40+i)))
		default:
			t.Fatalf("GpuSample.%s is a %v, which decodeSamples does not read", f.Name(), f.Kind())
		}
	}
	r := rowOf(t, &fleetv1.Node{NodeId: "n", Samples: []*fleetv1.GpuSample{s}})
	if len(r.samples) != 1 || !proto.Equal(r.samples[0], s) {
		t.Fatalf("samples %v, want %v", r.samples, s)
	}
}

// FuzzDecodeRow: whatever protobuf decodes as a node, decodeRow reads
// into the row of the decoded node, and no input makes it panic.
func FuzzDecodeRow(f *testing.F) {
	for _, n := range wireNodes() {
		b, _ := proto.Marshal(n)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeRow(b)
		var n fleetv1.Node
		if proto.Unmarshal(b, &n) != nil {
			return
		}
		if err != nil {
			t.Fatalf("protobuf decodes it, decodeRow: %v", err)
		}
		sameRow(t, got, rowFromMessage(&n))
	})
}

// TestDecodeMessage: a snapshot chunk comes as its rows and the rest of
// the message; an upsert as its row; anything else whole.
func TestDecodeMessage(t *testing.T) {
	snap := snapshot(40, fixtureFleet(), fixtureEvents())
	snap.GetSnapshot().Pools = pooledSnapshot(41).GetSnapshot().GetPools()
	upsert := &controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: bigNode("gpu-c64")}}
	empty := &controlplanev1.WatchFleetResponse{Revision: 42, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: &fleetv1.Node{}}}
	beats := &controlplanev1.WatchFleetResponse{Revision: 43, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: &controlplanev1.HeartbeatBatch{
		Heartbeats: []*controlplanev1.NodeHeartbeat{{NodeId: "gpu-a01", Samples: []*fleetv1.GpuSample{{UtilizationGpuPercent: 9}}}}}}}
	msgs := wire(snap, upsert, empty, beats).msgs

	rest := proto.CloneOf(snap)
	rest.GetSnapshot().Nodes = nil
	if !proto.Equal(msgs[0].resp, rest) || !msgs[0].SnapshotComplete() || msgs[0].SnapshotNodes() != len(fixtureFleet()) {
		t.Fatalf("snapshot came as %v with %d rows", msgs[0].resp, len(msgs[0].rows))
	}
	for i, n := range fixtureFleet() {
		sameRow(t, msgs[0].rows[i], rowFromMessage(n))
	}
	if msgs[1].resp.GetRevision() != 41 || msgs[1].resp.GetChange() != nil || msgs[1].upsert == nil {
		t.Fatalf("upsert came as %v, row %v", msgs[1].resp, msgs[1].upsert)
	}
	sameRow(t, msgs[1].upsert, rowFromMessage(bigNode("gpu-c64")))
	if msgs[2].upsert == nil || msgs[2].upsert.id != "" {
		t.Fatalf("an empty node's upsert came as %v", msgs[2].upsert)
	}
	if !proto.Equal(msgs[3].resp, beats) || msgs[3].upsert != nil || msgs[3].rows != nil {
		t.Fatalf("heartbeats came as %v", msgs[3].resp)
	}

	// Fields may come in any order: a revision after the snapshot is kept.
	late := proto.CloneOf(snap)
	late.Revision = 0
	b, _ := proto.Marshal(late)
	b = protowire.AppendVarint(protowire.AppendTag(b, 1, protowire.VarintType), 40)
	if got, err := DecodeMessage(b); err != nil || got.resp.GetRevision() != 40 || got.SnapshotNodes() != len(fixtureFleet()) {
		t.Fatalf("a revision after the snapshot: %v, revision %d, %d rows", err, got.resp.GetRevision(), got.SnapshotNodes())
	}

	b, _ = proto.Marshal(snap)
	if _, err := DecodeMessage(b[:len(b)-1]); err == nil {
		t.Fatal("a message cut short decoded")
	}
}
