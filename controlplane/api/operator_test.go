package api

import (
	"context"
	"encoding/base64"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// fakeOperators pages through node-00 … node-04 two at a time, as the
// fleet would, and remembers each position it was asked for.
type fakeOperators struct {
	Operators
	after []string
}

func (f *fakeOperators) List(_ fleet.NodeFilter, _ int, after string) ([]*fleetv1.Node, string, int, uint64) {
	f.after = append(f.after, after)
	next := map[string]string{"": "node-01", "node-01": "node-03", "node-03": ""}[after]
	return nil, next, 5, 1
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestListNodesPageTokens: a token from a response leads to the next page;
// anything else, such as a bare node id or a token of another format, is
// InvalidArgument naming page_token and never read as a position.
func TestListNodesPageTokens(t *testing.T) {
	ops := &fakeOperators{}
	svc := &operatorService{fleet: ops}
	ctx := context.Background()
	token := ""
	for range 3 {
		resp, err := svc.ListNodes(ctx, &controlplanev1.ListNodesRequest{PageToken: token})
		if err != nil {
			t.Fatalf("token %q: %v", token, err)
		}
		token = resp.GetNextPageToken()
	}
	if token != "" || len(ops.after) != 3 || ops.after[1] != "node-01" || ops.after[2] != "node-03" {
		t.Fatalf("paged after %q, last token %q", ops.after, token)
	}
	tests := []struct {
		name, token string
	}{
		{"not-base64", "!!"},
		{"bare-node-id", b64("node-01")},
		{"other-version", b64("nodes.v2:node-01")},
		{"no-position", b64(pageTokenPrefix)},
		{"not-a-node-id", b64(pageTokenPrefix + "node 01")},
		{"control-character", "\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ops.after = nil
			_, err := svc.ListNodes(ctx, &controlplanev1.ListNodesRequest{PageToken: tt.token})
			if field, _ := apierr.Field(err); status.Code(err) != codes.InvalidArgument || field != "page_token" {
				t.Fatalf("got %v, want InvalidArgument naming page_token", err)
			}
			if len(ops.after) != 0 {
				t.Fatalf("listed after %q", ops.after)
			}
		})
	}
}
