package api

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/auth"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
)

// stubStream is a server stream with only a context.
type stubStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s stubStream) Context() context.Context { return s.ctx }

// TestInterceptorsTurnPanicIntoInternal: a handler's panic, unary or
// streamed, is answered Internal without its text, logged with the
// method and the panic, and the request log's line says Internal.
func TestInterceptorsTurnPanicIntoInternal(t *testing.T) {
	var panics, lines bytes.Buffer
	in := &Interceptors{
		Log:    NewRequestLog(slog.New(slog.NewJSONHandler(&lines, &slog.HandlerOptions{Level: slog.LevelDebug})), nil),
		Panics: slog.New(slog.NewTextHandler(&panics, nil)),
	}
	info := &grpc.UnaryServerInfo{FullMethod: nodev1.NodeService_Heartbeat_FullMethodName}
	_, err := in.Unary(context.Background(), &nodev1.HeartbeatRequest{NodeId: "n1"}, info, func(context.Context, any) (any, error) {
		panic("nil map write")
	})
	if status.Code(err) != codes.Internal || strings.Contains(status.Convert(err).Message(), "nil map") {
		t.Fatalf("err = %v; want Internal without the panic's text", err)
	}
	if !strings.Contains(panics.String(), "nil map write") || !strings.Contains(panics.String(), "Heartbeat") || !strings.Contains(panics.String(), "goroutine") {
		t.Fatalf("panic log: %s", panics.String())
	}
	streamInfo := &grpc.StreamServerInfo{FullMethod: controlplanev1.ControlPlaneService_WatchFleet_FullMethodName}
	err = in.Stream(nil, stubStream{ctx: context.Background()}, streamInfo, func(any, grpc.ServerStream) error { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("stream err = %v", err)
	}
	if n := strings.Count(lines.String(), `"code":"Internal"`); n != 2 {
		t.Fatalf("request log has %d Internal lines, want 2:\n%s", n, lines.String())
	}
}

// TestInterceptorsRunInOrder: the gate's refusal comes before the audit
// and the handler but is logged; a request the codec marked is refused
// before the handler and, on a call that changes the fleet, audited as
// refused.
func TestInterceptorsRunInOrder(t *testing.T) {
	var lines bytes.Buffer
	rec := &recorder{}
	codec := NewCodec()
	in := &Interceptors{
		Log:   NewRequestLog(slog.New(slog.NewJSONHandler(&lines, nil)), nil),
		Gate:  auth.NewGate(nil, nil, false, nil),
		Audit: NewAudit(rec, nil),
		Codec: codec,
	}
	ran := false
	handler := func(context.Context, any) (any, error) { ran = true; return &controlplanev1.CordonNodeResponse{}, nil }

	unknown := &grpc.UnaryServerInfo{FullMethod: "/navarch.controlplane.v1.ControlPlaneService/NoSuchMethod"}
	if _, err := in.Unary(context.Background(), &controlplanev1.CordonNodeRequest{NodeId: "n1"}, unknown, handler); status.Code(err) != codes.Unimplemented {
		t.Fatalf("a method the gate does not know: %v", err)
	}
	if ran || len(rec.entries) != 0 {
		t.Fatalf("the gate's refusal ran the handler (%t) or was audited (%+v)", ran, rec.entries)
	}
	if !strings.Contains(lines.String(), "NoSuchMethod") || !strings.Contains(lines.String(), "Unimplemented") {
		t.Fatalf("the gate's refusal was not logged: %s", lines.String())
	}

	// A cordon whose reason is not UTF-8, as the codec lets it through.
	req := &controlplanev1.CordonNodeRequest{}
	wire := concat(field(1, []byte("n1")), field(2, []byte("bad \xff")))
	if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, req); err != nil {
		t.Fatal(err)
	}
	ctx := auth.WithCaller(context.Background(), auth.Caller{Name: "oncall", Role: controlplanev1.Role_ROLE_ADMIN})
	cordon := &grpc.UnaryServerInfo{FullMethod: controlplanev1.ControlPlaneService_CordonNode_FullMethodName}
	_, err := in.Unary(ctx, req, cordon, handler)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "reason") {
		t.Fatalf("a reason that is not UTF-8: %v", err)
	}
	if ran {
		t.Fatal("the handler ran for a refused request")
	}
	if len(rec.entries) != 1 || rec.entries[0].Code != "InvalidArgument" || rec.entries[0].RPC != "CordonNode" {
		t.Fatalf("the refusal was audited as %+v", rec.entries)
	}
	if _, err := in.Unary(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}, cordon, handler); err != nil || !ran {
		t.Fatalf("a good cordon: %v (handler ran: %t)", err, ran)
	}
	if len(rec.entries) != 2 || rec.entries[1].Code != "OK" {
		t.Fatalf("the cordon was audited as %+v", rec.entries)
	}
}

// panickingRecorder is an audit recorder that panics.
type panickingRecorder struct{ calls int }

func (r *panickingRecorder) RecordAudit(context.Context, *store.AuditEntry) error {
	r.calls++
	panic("audit write")
}

// TestInterceptorsSurviveAPanickingAudit: a panic while the audit entry is
// written, after the handler succeeded or after it panicked, is answered
// Internal like a handler's, and an entry is tried once, not again as if
// the handler had panicked.
func TestInterceptorsSurviveAPanickingAudit(t *testing.T) {
	ctx := auth.WithCaller(context.Background(), auth.Caller{Name: "oncall", Role: controlplanev1.Role_ROLE_ADMIN})
	cordon := &grpc.UnaryServerInfo{FullMethod: controlplanev1.ControlPlaneService_CordonNode_FullMethodName}
	tests := []struct {
		name    string
		handler grpc.UnaryHandler
	}{
		{"after-success", func(context.Context, any) (any, error) { return &controlplanev1.CordonNodeResponse{}, nil }},
		{"after-a-panic", func(context.Context, any) (any, error) { panic("handler") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var panics bytes.Buffer
			rec := &panickingRecorder{}
			in := &Interceptors{Audit: NewAudit(rec, nil), Panics: slog.New(slog.NewTextHandler(&panics, nil))}
			_, err := in.Unary(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}, cordon, tt.handler)
			if status.Code(err) != codes.Internal {
				t.Fatalf("answered %v, want Internal", err)
			}
			if rec.calls != 1 {
				t.Errorf("the entry was tried %d times, want once", rec.calls)
			}
			if !strings.Contains(panics.String(), "audit write") {
				t.Errorf("the audit's panic was not logged: %s", panics.String())
			}
		})
	}
}

// TestHeldStreamKeepsFewFrames: a stream held open through a real gRPC
// server has the interceptors' one frame on its stack between gRPC and
// its handler, not a chain's links, which the collector would walk on
// every held stream at every cycle.
func TestHeldStreamKeepsFewFrames(t *testing.T) {
	in := &Interceptors{
		Log:   NewRequestLog(nil, nil),
		Gate:  auth.NewGate(nil, nil, false, nil),
		Codec: NewCodec(),
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(in.Codec), grpc.ChainUnaryInterceptor(in.Unary), grpc.ChainStreamInterceptor(in.Stream))
	held := make(chan struct{})
	release := make(chan struct{})
	nodev1.RegisterNodeServiceServer(srv, &holdingNodes{held: held, release: release})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	defer close(release)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := nodev1.NewNodeServiceClient(conn).WatchNodeCommands(ctx, &nodev1.WatchNodeCommandsRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the stream never reached its handler")
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var stack string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "holdingNodes).WatchNodeCommands") {
			stack = g
		}
	}
	if stack == "" {
		t.Fatalf("no goroutine holds the stream:\n%s", buf)
	}
	if strings.Contains(stack, "getChainStreamHandler") || strings.Contains(stack, "chainStreamInterceptors") {
		t.Errorf("the held stream's stack has a chain's links:\n%s", stack)
	}
	if n := strings.Count(stack, "(*Interceptors).Stream"); n != 1 {
		t.Errorf("the interceptors are %d frames on the held stream's stack, want 1:\n%s", n, stack)
	}
}

// holdingNodes holds each command stream until released.
type holdingNodes struct {
	nodev1.UnimplementedNodeServiceServer
	held, release chan struct{}
}

func (h *holdingNodes) WatchNodeCommands(_ *nodev1.WatchNodeCommandsRequest, stream grpc.ServerStreamingServer[nodev1.WatchNodeCommandsResponse]) error {
	h.held <- struct{}{}
	select {
	case <-h.release:
	case <-stream.Context().Done():
	}
	return nil
}
