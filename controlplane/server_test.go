package controlplane

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRecoveryInterceptorTurnsPanicIntoInternal(t *testing.T) {
	var logs bytes.Buffer
	s := &Server{log: slog.New(slog.NewTextHandler(&logs, nil))}
	info := &grpc.UnaryServerInfo{FullMethod: "/navarch.node.v1.NodeService/Heartbeat"}
	_, err := s.recoverUnary(context.Background(), nil, info, func(context.Context, any) (any, error) {
		panic("nil map write")
	})
	if status.Code(err) != codes.Internal || strings.Contains(status.Convert(err).Message(), "nil map") {
		t.Fatalf("err = %v; want Internal without the panic's text", err)
	}
	if !strings.Contains(logs.String(), "nil map write") || !strings.Contains(logs.String(), "Heartbeat") {
		t.Fatalf("log: %s", logs.String())
	}
	streamInfo := &grpc.StreamServerInfo{FullMethod: "/navarch.controlplane.v1.ControlPlaneService/WatchFleet"}
	err = s.recoverStream(nil, nil, streamInfo, func(any, grpc.ServerStream) error { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("stream err = %v", err)
	}
}
