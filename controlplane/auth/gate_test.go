package auth

import (
	"context"
	"maps"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// TestGateCountsRefusals: each call the gate refuses is told to its hook
// once, under the reason it was refused for, and a call it lets in is not;
// once an address has failed too often, its refusals count as
// rate-limited.
func TestGateCountsRefusals(t *testing.T) {
	a, _ := agentsWithCA(t)
	_, stranger := agentsWithCA(t)
	viewer, _, err := a.tokens.Create(context.Background(), "v", controlplanev1.Role_ROLE_VIEWER, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGate(a.tokens, a, true, nil)
	told := map[Refusal]int{}
	g.OnRefused(func(r Refusal) { told[r]++ })
	call := func(ctx context.Context, method, token string) error {
		md := metadata.MD{}
		if token != "" {
			md.Set("authorization", "Bearer "+token)
		}
		_, err := g.Tap(ctx, &tap.Info{FullMethodName: method, Header: md})
		return err
	}
	plain := context.Background()
	tests := []struct {
		name          string
		ctx           context.Context
		method, token string
		code          codes.Code
		refused       Refusal
	}{
		{"health-check", plain, "/grpc.health.v1.Health/Check", "", codes.OK, ""},
		{"viewer-reads", plain, cps + "ListNodes", viewer, codes.OK, ""},
		{"no-token", plain, cps + "ListNodes", "", codes.Unauthenticated, RefusedUnauthenticated},
		{"bad-token", plain, cps + "ListNodes", "v.nope", codes.Unauthenticated, RefusedUnauthenticated},
		{"role-too-low", plain, cps + "DrainNode", viewer, codes.PermissionDenied, RefusedRoleTooLow},
		{"agent-without-certificate", plain, ns + "Heartbeat", "", codes.Unauthenticated, RefusedNoNodeCertificate},
		{"untrusted-certificate", connection(stranger), ns + "Heartbeat", "", codes.Unauthenticated, RefusedUntrustedCertificate},
		{"unknown-method", plain, "/x.Y/Z", viewer, codes.Unimplemented, RefusedUnknownMethod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maps.Clone(told)
			if got := status.Code(call(tt.ctx, tt.method, tt.token)); got != tt.code {
				t.Fatalf("got %s, want %s", got, tt.code)
			}
			want := maps.Clone(before)
			if tt.refused != "" {
				want[tt.refused]++
			}
			if !maps.Equal(told, want) {
				t.Fatalf("refusals told %v, want %v", told, want)
			}
		})
	}
	clear(told)
	for range failureBurst + 5 {
		_ = call(plain, cps+"ListNodes", "v.wrong")
	}
	if told[RefusedRateLimited] == 0 || told[RefusedRateLimited]+told[RefusedUnauthenticated] != failureBurst+5 {
		t.Fatalf("a flood of bad tokens told as %v", told)
	}
}
