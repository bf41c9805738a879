package healthdelta

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// setScalar gives field fd of r a value other than zero, large enough to
// take several varint bytes.
func setScalar(r protoreflect.Message, fd protoreflect.FieldDescriptor) {
	switch fd.Kind() {
	case protoreflect.Uint64Kind:
		r.Set(fd, protoreflect.ValueOfUint64(1<<40+7))
	case protoreflect.Uint32Kind:
		r.Set(fd, protoreflect.ValueOfUint32(1<<20+3))
	case protoreflect.BoolKind:
		r.Set(fd, protoreflect.ValueOfBool(true))
	case protoreflect.StringKind:
		r.Set(fd, protoreflect.ValueOfString("x"))
	case protoreflect.EnumKind:
		r.Set(fd, protoreflect.ValueOfEnum(fd.Enum().Values().Get(fd.Enum().Values().Len()-1).Number()))
	case protoreflect.MessageKind:
		r.Set(fd, protoreflect.ValueOfMessage(timestamppb.New(timestamppb.Now().AsTime()).ProtoReflect()))
	}
}

// TestScalarEncodingIsProtobufs: the hand-written encoding of the scalars
// is protobuf's own, with every scalar field set, with each alone, and
// with none; a field added to GpuMetrics and left out of it fails here.
func TestScalarEncodingIsProtobufs(t *testing.T) {
	full := scalarsOf(&fleetv1.GpuMetrics{})
	fields := full.ProtoReflect().Descriptor().Fields()
	var each []*fleetv1.GpuMetrics
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.IsList() || (fd.Kind() == protoreflect.MessageKind && fd.Message().FullName() != "google.protobuf.Timestamp") {
			continue // a part
		}
		setScalar(full.ProtoReflect(), fd)
		one := &fleetv1.GpuMetrics{}
		setScalar(one.ProtoReflect(), fd)
		each = append(each, one)
	}
	for _, m := range append(each, full, &fleetv1.GpuMetrics{}, &fleetv1.GpuMetrics{Time: &timestamppb.Timestamp{Nanos: -1}}) {
		want, err := proto.MarshalOptions{Deterministic: true}.Marshal(scalarsOf(m))
		if err != nil {
			t.Fatal(err)
		}
		got, n := protowire.ConsumeBytes(appendScalars(nil, m))
		if n < 0 || !bytes.Equal(got, want) {
			t.Fatalf("%v: encoded\n%x\nprotobuf gives\n%x", m, got, want)
		}
	}
}

// TestPartEqualityComparesEveryField: each part's equality tells apart
// two messages that differ in any one field, and nil from empty.
func TestPartEqualityComparesEveryField(t *testing.T) {
	check := func(name string, empty proto.Message, eq func(a, b proto.Message) bool) {
		t.Run(name, func(t *testing.T) {
			if !eq(empty, proto.Clone(empty)) {
				t.Fatal("two empty messages differ")
			}
			fields := empty.ProtoReflect().Descriptor().Fields()
			for i := range fields.Len() {
				changed := proto.Clone(empty)
				setScalar(changed.ProtoReflect(), fields.Get(i))
				if eq(empty, changed) || eq(changed, empty) {
					t.Errorf("a change of %s goes unseen", fields.Get(i).Name())
				}
				if !eq(changed, proto.Clone(changed)) {
					t.Errorf("equal messages with %s set differ", fields.Get(i).Name())
				}
			}
		})
	}
	check("ecc", &fleetv1.EccCounts{}, func(a, b proto.Message) bool { return equalECC(a.(*fleetv1.EccCounts), b.(*fleetv1.EccCounts)) })
	check("row-remap", &fleetv1.RowRemapState{}, func(a, b proto.Message) bool {
		return equalRowRemap(a.(*fleetv1.RowRemapState), b.(*fleetv1.RowRemapState))
	})
	check("retired-pages", &fleetv1.RetiredPages{}, func(a, b proto.Message) bool {
		return equalRetiredPages(a.(*fleetv1.RetiredPages), b.(*fleetv1.RetiredPages))
	})
	check("link", &fleetv1.NvLinkState{}, func(a, b proto.Message) bool { return equalLink(a.(*fleetv1.NvLinkState), b.(*fleetv1.NvLinkState)) })
	check("process", &fleetv1.GpuProcess{}, func(a, b proto.Message) bool { return equalProcess(a.(*fleetv1.GpuProcess), b.(*fleetv1.GpuProcess)) })
	if equalECC(nil, &fleetv1.EccCounts{}) || !equalECC(nil, nil) {
		t.Error("a missing ECC reading and an empty one are told apart wrongly")
	}
}
