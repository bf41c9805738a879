package controlplane_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/api"
	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/cptest"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestRequestsOfEverySizeOverTLS: the control plane reads gRPC frames
// straight out of crypto/tls, with no read buffer of gRPC's own; requests
// from a few hundred bytes to near the limit, spread over many TLS records
// and HTTP/2 frames, arrive whole on one connection (the handler names the
// field it refuses), one over the limit is refused for its size, and the
// connection serves a call after each.
func TestRequestsOfEverySizeOverTLS(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	tests := []struct {
		name  string
		bytes int
		code  codes.Code
	}{
		{"one-record", 300, codes.InvalidArgument},
		{"many-records", 100 << 10, codes.InvalidArgument},
		{"near-the-limit", api.MaxRecvMsgBytes - 1<<10, codes.InvalidArgument},
		{"over-the-limit", api.MaxRecvMsgBytes + 1<<10, codes.ResourceExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "big-1", Hostname: strings.Repeat("h", tt.bytes)})
			if status.Code(err) != tt.code {
				t.Fatalf("a %d-byte hostname: %v, want %s", tt.bytes, err, tt.code)
			}
			if field, _ := apierr.Field(err); tt.code == codes.InvalidArgument && field != "hostname" {
				t.Errorf("a %d-byte hostname refused naming %q, want hostname: %v", tt.bytes, field, err)
			}
			if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "big-1", Hostname: "big-1", BootId: "boot-1"}); err != nil {
				t.Errorf("a registration after the %d-byte request: %v", tt.bytes, err)
			}
		})
	}
}
