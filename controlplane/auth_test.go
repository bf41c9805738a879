package controlplane_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// opsAs is ControlPlaneService for a caller with token, over real TLS.
func opsAs(t *testing.T, cp *cptest.ControlPlane, token string) controlplanev1.ControlPlaneServiceClient {
	t.Helper()
	target := cp.Target()
	target.Token = token
	conn, err := rpcclient.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return controlplanev1.NewControlPlaneServiceClient(conn)
}

func TestOperatorTokensAndRoles(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	admin := cp.Ops
	st, err := os.Stat(filepath.Join(cp.Config.DataDir, "admin.token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	status0, err := admin.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if err != nil || status0.GetCaller().GetName() != "admin" || status0.GetCaller().GetRole() != controlplanev1.Role_ROLE_ADMIN {
		t.Fatalf("the admin's status: caller %v, %v", status0.GetCaller(), err)
	}
	viewerTok, err := admin.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "dashboards", Role: controlplanev1.Role_ROLE_VIEWER})
	if err != nil {
		t.Fatal(err)
	}
	opTok, err := admin.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "oncall", Role: controlplanev1.Role_ROLE_OPERATOR, Ttl: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	viewer, operator := opsAs(t, cp, viewerTok.GetToken()), opsAs(t, cp, opTok.GetToken())
	nobody, stranger := opsAs(t, cp, ""), opsAs(t, cp, "dashboards.not-the-secret")
	cordon := func(c controlplanev1.ControlPlaneServiceClient) error {
		_, err := c.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"})
		return err
	}
	list := func(c controlplanev1.ControlPlaneServiceClient) error {
		_, err := c.ListNodes(ctx, &controlplanev1.ListNodesRequest{})
		return err
	}
	tests := []struct {
		name string
		err  error
		code codes.Code
	}{
		{"no-token-cannot-read", list(nobody), codes.Unauthenticated},
		{"wrong-secret-cannot-read", list(stranger), codes.Unauthenticated},
		{"viewer-reads", list(viewer), codes.OK},
		{"viewer-cannot-cordon", cordon(viewer), codes.PermissionDenied},
		{"operator-cordons", cordon(operator), codes.OK},
	}
	for _, tt := range tests {
		if got := status.Code(tt.err); got != tt.code {
			t.Errorf("%s: got %s (%v), want %s", tt.name, got, tt.err, tt.code)
		}
	}
	if _, err := operator.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "x", Role: controlplanev1.Role_ROLE_ADMIN}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("an operator made a token: %v", err)
	}
	// The health check stays open for load balancers.
	if resp, err := healthpb.NewHealthClient(cp.Conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", resp, err)
	}
	// Revoked, then refused; and still refused after a restart.
	if _, err := admin.RevokeToken(ctx, &controlplanev1.RevokeTokenRequest{Name: "dashboards"}); err != nil {
		t.Fatal(err)
	}
	if err := list(viewer); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a revoked token: %v", err)
	}
	cp.Restart()
	if err := list(opsAs(t, cp, viewerTok.GetToken())); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a revoked token after a restart: %v", err)
	}
	if err := list(opsAs(t, cp, opTok.GetToken())); err != nil {
		t.Fatalf("a live token after a restart: %v", err)
	}
	tokens, err := cp.Ops.ListTokens(ctx, &controlplanev1.ListTokensRequest{})
	if err != nil || len(tokens.GetTokens()) != 3 || tokens.GetTokens()[1].GetRevokedAt() == nil {
		t.Fatalf("tokens: %v %v", tokens, err)
	}
}

// TestWatchStreamsPerToken: one token may hold only so many WatchFleet
// streams; past that it is ResourceExhausted, and a stream that closes
// frees its slot.
func TestWatchStreamsPerToken(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) { c.WatchStreamsPerToken = 2 }})
	open := func() (controlplanev1.ControlPlaneService_WatchFleetClient, context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := cp.Ops.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return s, cancel, err
	}
	_, stop1, err := open()
	if err != nil {
		t.Fatal(err)
	}
	_, stop2, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	if _, stop, err := open(); status.Code(err) != codes.ResourceExhausted {
		stop()
		t.Fatalf("a third stream: %v, want ResourceExhausted", err)
	}
	stop1()
	testutil.Eventually(t, "the closed stream's slot freed", func() bool {
		_, stop, err := open()
		stop()
		return err == nil
	})
}

// TestReflectionNeedsAViewer: grpcurl works with the CA and a token, as
// "grpcurl -cacert DATA_DIR/pki/ca.crt -H 'authorization: Bearer TOKEN'
// ADDR list" does, and not without the token.
func TestReflectionNeedsAViewer(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	list := func(token string) ([]string, error) {
		target := cp.Target()
		target.Token = token
		conn, err := rpcclient.Dial(target)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		// A refused stream may end before the request is sent: Send then
		// says io.EOF, and Recv has the status.
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
			return nil, err
		}
		resp, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return names, nil
	}
	if _, err := list(""); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("reflection without a token: %v", err)
	}
	names, err := list(cp.AdminToken())
	if err != nil || !slices.Contains(names, "navarch.controlplane.v1.ControlPlaneService") || !slices.Contains(names, "navarch.node.v1.NodeService") {
		t.Fatalf("reflection with a token: %v %v", names, err)
	}
}
