package api

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/auth"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/store"
)

// TestAuditedMethods: exactly the calls that change the fleet or its
// tokens are audited; the reads are not, whatever role they need.
func TestAuditedMethods(t *testing.T) {
	desc := controlplanev1.ControlPlaneService_ServiceDesc
	var got []string
	for _, m := range desc.Methods {
		if name, ok := audited("/" + desc.ServiceName + "/" + m.MethodName); ok {
			got = append(got, name)
		}
	}
	for _, s := range desc.Streams {
		if _, ok := audited("/" + desc.ServiceName + "/" + s.StreamName); ok {
			t.Errorf("stream %s is audited; the interceptor sees only unary calls", s.StreamName)
		}
	}
	slices.Sort(got)
	want := []string{"CordonNode", "CreateToken", "DeletePool", "DrainNode", "PowerCycleNode", "ProvisionNodes", "PutPool", "RebootNode", "ReleaseNode", "ResetGpu", "ResetNodeIdentity", "RevokeToken", "RunDiagnostics", "ScalePool", "TerminateNode", "UncordonNode"}
	if !slices.Equal(got, want) {
		t.Errorf("audited %v, want %v", got, want)
	}
	if _, ok := audited("/navarch.node.v1.NodeService/ReportHealth"); ok {
		t.Error("an agent's call is audited")
	}
}

// recorder keeps the entries the interceptor writes, or fails.
type recorder struct {
	entries []*store.AuditEntry
	err     error
}

func (r *recorder) RecordAudit(_ context.Context, e *store.AuditEntry) error {
	r.entries = append(r.entries, e)
	return r.err
}

func TestAuditEntries(t *testing.T) {
	caller := auth.Caller{Name: "oncall", Role: controlplanev1.Role_ROLE_OPERATOR}
	ctx := auth.WithCaller(context.Background(), caller)
	long := strings.Repeat("é", 600) // 1 200 bytes
	tests := []struct {
		name    string
		method  string
		req     any
		resp    any
		err     error
		want    store.AuditEntry
		audited bool
	}{
		{
			name: "cordon", method: "CordonNode",
			req:  &controlplanev1.CordonNodeRequest{NodeId: "n1", Reason: "ticket 42"},
			resp: &controlplanev1.CordonNodeResponse{},
			want: store.AuditEntry{Who: "oncall", Role: caller.Role, RPC: "CordonNode", NodeID: "n1", Reason: "ticket 42", Code: "OK"}, audited: true,
		},
		{
			name: "drain-refused", method: "DrainNode",
			req: &controlplanev1.DrainNodeRequest{NodeId: "n1", Force: true},
			err: invalid("deadline", "is not in the future"),
			want: store.AuditEntry{Who: "oncall", Role: caller.Role, RPC: "DrainNode", NodeID: "n1", Params: `{"force":true}`, Code: "InvalidArgument",
				Message: "deadline: is not in the future"}, audited: true,
		},
		{
			name: "create-token", method: "CreateToken",
			req: &controlplanev1.CreateTokenRequest{Name: "ci", Role: controlplanev1.Role_ROLE_VIEWER, Ttl: durationpb.New(3600e9)},
			// The response holds the secret: it must not be read.
			resp: &controlplanev1.CreateTokenResponse{Token: "ci.the-secret", Info: &controlplanev1.TokenInfo{Name: "ci"}},
			want: store.AuditEntry{Who: "oncall", Role: caller.Role, RPC: "CreateToken", Params: `{"name":"ci","role":"ROLE_VIEWER","ttl":"3600s"}`, Code: "OK"}, audited: true,
		},
		{
			name: "long-reason-cut", method: "UncordonNode",
			req: &controlplanev1.UncordonNodeRequest{NodeId: "n1", Reason: long},
			err: invalid("reason", "is too long"),
			want: store.AuditEntry{Who: "oncall", Role: caller.Role, RPC: "UncordonNode", NodeID: "n1", Reason: strings.Repeat("é", 510) + "…",
				Code: "InvalidArgument", Message: "reason: is too long"}, audited: true,
		},
		{
			name: "read-not-audited", method: "ListTokens",
			req: &controlplanev1.ListTokensRequest{}, resp: &controlplanev1.ListTokensResponse{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			a := NewAudit(rec, nil)
			info := &grpc.UnaryServerInfo{FullMethod: "/" + controlplanev1.ControlPlaneService_ServiceDesc.ServiceName + "/" + tt.method}
			resp, err := (&Interceptors{Audit: a}).Unary(ctx, tt.req, info, func(context.Context, any) (any, error) {
				if tt.err != nil {
					return nil, tt.err
				}
				return tt.resp, nil
			})
			if !errors.Is(err, tt.err) || (err == nil && resp != tt.resp) {
				t.Fatalf("the interceptor changed the answer: %v, %v", resp, err)
			}
			if !tt.audited {
				if len(rec.entries) != 0 {
					t.Fatalf("recorded %+v", rec.entries)
				}
				return
			}
			if len(rec.entries) != 1 {
				t.Fatalf("recorded %d entries", len(rec.entries))
			}
			if got := *rec.entries[0]; got != tt.want {
				t.Errorf("recorded %+v\nwant     %+v", got, tt.want)
			}
			if strings.Contains(rec.entries[0].Params+rec.entries[0].Message, "the-secret") {
				t.Error("the entry holds the token's secret")
			}
		})
	}
}

// TestAuditKeepsTheAnswer: an entry that cannot be written leaves the
// call's answer as it was, and a handler that panics is recorded as the
// Internal the call is answered.
func TestAuditKeepsTheAnswer(t *testing.T) {
	ctx := auth.WithCaller(context.Background(), auth.Caller{Name: "oncall", Role: controlplanev1.Role_ROLE_OPERATOR})
	info := &grpc.UnaryServerInfo{FullMethod: "/" + controlplanev1.ControlPlaneService_ServiceDesc.ServiceName + "/CordonNode"}
	req := &controlplanev1.CordonNodeRequest{NodeId: "n1"}
	want := &controlplanev1.CordonNodeResponse{}

	rec := &recorder{err: errors.New("disk full")}
	resp, err := (&Interceptors{Audit: NewAudit(rec, nil)}).Unary(ctx, req, info, func(context.Context, any) (any, error) { return want, nil })
	if err != nil || resp != want || len(rec.entries) != 1 {
		t.Fatalf("with a failing audit write: %v, %v, %d entries tried", resp, err, len(rec.entries))
	}

	rec = &recorder{}
	_, err = (&Interceptors{Audit: NewAudit(rec, nil)}).Unary(ctx, req, info, func(context.Context, any) (any, error) { panic("bug") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("a panicking handler answered %v", err)
	}
	if len(rec.entries) != 1 || rec.entries[0].Code != "Internal" {
		t.Fatalf("a panicking handler recorded %+v", rec.entries)
	}
}

func TestAuditText(t *testing.T) {
	tests := []struct {
		name, in string
		wantLen  int
	}{
		{"short", "ticket 42", 9},
		{"exactly-the-limit", strings.Repeat("a", maxAuditText), maxAuditText},
		{"cut-at-a-character", strings.Repeat("€", 400), 340*len("€") + len("…")},
		{"not-utf8", "bad \xff byte", len("bad \uFFFD byte")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := auditText(tt.in)
			if !utf8.ValidString(got) || len(got) > maxAuditText {
				t.Fatalf("auditText gave %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
			}
			if len(got) != tt.wantLen {
				t.Errorf("auditText gave %d bytes, want %d", len(got), tt.wantLen)
			}
		})
	}
}
