package controlplane

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/navarch/navarch/store"
	badgerstore "github.com/navarch/navarch/store/badger"
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

// closeCounter is a store that counts its Close calls.
type closeCounter struct {
	store.Store
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return c.Store.Close() }

// TestNewOwnsTheStoreItIsGiven: a store given to New is closed when New
// fails, whatever step fails, so a caller never has to guess.
func TestNewOwnsTheStoreItIsGiven(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
	}{
		{"bad-config", func(c *Config) { c.LogLevel = "loud" }},
		{"bad-policy-file", func(c *Config) { c.PolicyFile = filepath.Join(t.TempDir(), "missing.yaml") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			cc := &closeCounter{Store: st}
			cfg := Defaults()
			cfg.DataDir = t.TempDir()
			tt.edit(&cfg)
			if _, err := New(context.Background(), Options{Config: cfg, Store: cc}); err == nil {
				t.Fatal("New succeeded")
			}
			if cc.closed != 1 {
				t.Fatalf("store closed %d times, want once", cc.closed)
			}
		})
	}
}
