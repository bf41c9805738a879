package api

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func field(num protowire.Number, v []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var notUTF8 = []byte{'a', 0xff, 0xfe}

func TestInvalidUTF8IsInvalidArgumentNamingTheField(t *testing.T) {
	gpu := func(name []byte) []byte { return concat(field(2, []byte("GPU-1")), field(3, name)) } // uuid, name
	labels := func(k, v []byte) []byte { return concat(field(1, k), field(2, v)) }
	tests := []struct {
		name string
		req  []byte
		want string
	}{
		{"top-level", concat(field(1, []byte("n1")), field(2, notUTF8)), "hostname"},
		{"nested-in-a-list", concat(field(1, []byte("n1")), field(4, gpu([]byte("H100"))), field(4, gpu(notUTF8))), "gpus[1].name"},
		{"map-value", concat(field(1, []byte("n1")), field(3, labels([]byte("zone"), notUTF8))), "labels"},
	}
	c := NewCodec()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &nodev1.RegisterNodeRequest{}
			if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(tt.req)}, req); err != nil {
				t.Fatalf("the codec did not let the request through to be refused: %v", err)
			}
			ran := false
			_, err := (&Interceptors{Codec: c}).Unary(context.Background(), req, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) { ran = true; return nil, nil })
			if status.Code(err) != codes.InvalidArgument || ran {
				t.Fatalf("got %v (handler ran: %t), want InvalidArgument before the handler", err, ran)
			}
			if got := status.Convert(err).Message(); got != tt.want+": is not valid UTF-8" {
				t.Fatalf("message %q, want it to name %s", got, tt.want)
			}
		})
	}
	// A good request is decoded and reaches its handler.
	req := &nodev1.RegisterNodeRequest{}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(concat(field(1, []byte("n1")), field(2, []byte("host-1"))))}, req); err != nil || req.GetHostname() != "host-1" {
		t.Fatalf("good request: %v %v", req, err)
	}
	if _, err := (&Interceptors{Codec: c}).Unary(context.Background(), req, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	// Garbage that is not a UTF-8 problem stays a decoding error.
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x05, 'a'})}, &nodev1.RegisterNodeRequest{}); err == nil {
		t.Fatal("a truncated message decoded")
	}
}
