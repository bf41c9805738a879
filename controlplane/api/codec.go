package api

import (
	"fmt"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protov2 "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Codec is the server's codec: protobuf, except that a request whose
// string field holds invalid UTF-8 is answered InvalidArgument naming the
// field, where gRPC would answer Internal (it turns every decoding error
// into Internal). The codec lets such a request through marked, and
// Codec's interceptors refuse it before its handler runs.
type Codec struct {
	base encoding.CodecV2
	// bad holds the requests the codec let through, by message, with the
	// path of the field that is not UTF-8.
	bad sync.Map
}

// NewCodec wraps gRPC's protobuf codec.
func NewCodec() *Codec { return &Codec{base: encoding.GetCodecV2(proto.Name)} }

// Name is the protobuf codec's name: clients see no difference.
func (c *Codec) Name() string { return proto.Name }

// Marshal encodes as the protobuf codec does.
func (c *Codec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

// Unmarshal decodes as the protobuf codec does; a message that fails only
// for invalid UTF-8 is marked for the interceptors instead.
func (c *Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(protov2.Message)
	if !ok {
		return err
	}
	path, found := badUTF8(data.Materialize(), m.ProtoReflect().Descriptor(), "")
	if !found {
		return err
	}
	c.bad.Store(v, path)
	return nil
}

// refuse returns the InvalidArgument for a request the codec marked.
func (c *Codec) refuse(req any) error {
	if path, ok := c.bad.LoadAndDelete(req); ok {
		return invalid(path.(string), "is not valid UTF-8")
	}
	return nil
}

type checkedStream struct {
	grpc.ServerStream
	c *Codec
}

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.c.refuse(m)
}

// badUTF8 finds the first string field in b, a message of type md, that
// is not valid UTF-8, and returns its path as the API's errors write it:
// "hostname", "gpus[2].name", "labels".
func badUTF8(b []byte, md protoreflect.MessageDescriptor, prefix string) (string, bool) {
	counts := map[protowire.Number]int{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", false
		}
		value := b[:n]
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType {
			continue
		}
		raw, m := protowire.ConsumeBytes(value)
		if m < 0 {
			return "", false
		}
		name := prefix + string(fd.Name())
		if fd.IsList() {
			name = fmt.Sprintf("%s[%d]", name, counts[num])
			counts[num]++
		}
		switch {
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(raw):
			return name, true
		case fd.IsMap():
			if _, bad := badUTF8(raw, fd.Message(), ""); bad {
				return name, true
			}
		case fd.Kind() == protoreflect.MessageKind:
			if path, bad := badUTF8(raw, fd.Message(), name+"."); bad {
				return path, true
			}
		}
	}
	return "", false
}
