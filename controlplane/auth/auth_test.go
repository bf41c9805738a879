package auth

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/store"
	badgerstore "github.com/navarch/navarch/store/badger"
)

func openStore(t testing.TB, dir string) store.Store {
	t.Helper()
	st, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func loaded(t *testing.T, st store.Store) []*store.Token {
	t.Helper()
	s, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.Tokens
}

func TestEveryMethodIsInTheTable(t *testing.T) {
	for _, sd := range Services {
		for _, m := range sd.Methods {
			if _, ok := Required["/"+sd.ServiceName+"/"+m.MethodName]; !ok {
				t.Errorf("%s/%s needs a row in Required", sd.ServiceName, m.MethodName)
			}
		}
		for _, m := range sd.Streams {
			if _, ok := Required["/"+sd.ServiceName+"/"+m.StreamName]; !ok {
				t.Errorf("%s/%s needs a row in Required", sd.ServiceName, m.StreamName)
			}
		}
	}
}

func TestBootstrapWritesTheFirstAdminTokenOnce(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, filepath.Join(dir, "store"))
	tokens := NewTokens(st, nil, nil, nil)
	path, err := tokens.Bootstrap(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v; want 0600", err, info.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	caller, err := tokens.Verify(strings.TrimSpace(string(b)))
	if err != nil || caller.Role != controlplanev1.Role_ROLE_ADMIN || caller.Name != "admin" {
		t.Fatalf("the written token: %+v %v", caller, err)
	}
	stored := loaded(t, st)
	if len(stored) != 1 || strings.Contains(string(stored[0].Hash), strings.SplitN(string(b), ".", 2)[1]) {
		t.Fatal("the store must hold the admin token's hash, never its secret")
	}
	// A restart with tokens makes no new one.
	again := NewTokens(st, stored, nil, nil)
	if p, err := again.Bootstrap(context.Background(), dir); p != "" || err != nil {
		t.Fatalf("second start wrote %q, %v", p, err)
	}
}

func TestTokensLifecycle(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	st := openStore(t, t.TempDir())
	tokens := NewTokens(st, nil, clock, nil)
	ctx := context.Background()
	viewer, info, err := tokens.Create(ctx, "dashboards", controlplanev1.Role_ROLE_VIEWER, 0, 0)
	if err != nil || info.GetName() != "dashboards" || !strings.HasPrefix(viewer, "dashboards.") {
		t.Fatalf("create: %q %v %v", viewer, info, err)
	}
	brief, _, err := tokens.Create(ctx, "ci", controlplanev1.Role_ROLE_OPERATOR, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		do   func() error
		code codes.Code
	}{
		{"duplicate-name", func() error { _, _, err := tokens.Create(ctx, "ci", controlplanev1.Role_ROLE_VIEWER, 0, 0); return err }, codes.AlreadyExists},
		{"bad-name", func() error {
			_, _, err := tokens.Create(ctx, "Has.Dot", controlplanev1.Role_ROLE_VIEWER, 0, 0)
			return err
		}, codes.InvalidArgument},
		{"no-role", func() error {
			_, _, err := tokens.Create(ctx, "x", controlplanev1.Role_ROLE_UNSPECIFIED, 0, 0)
			return err
		}, codes.InvalidArgument},
		{"short-ttl", func() error {
			_, _, err := tokens.Create(ctx, "y", controlplanev1.Role_ROLE_VIEWER, time.Second, 0)
			return err
		}, codes.InvalidArgument},
		{"policy-is-reserved", func() error {
			_, _, err := tokens.Create(ctx, PolicyName, controlplanev1.Role_ROLE_ADMIN, 0, 0)
			return err
		}, codes.InvalidArgument},
		{"revoke-unknown", func() error { _, err := tokens.Revoke(ctx, "nobody"); return err }, codes.NotFound},
	}
	for _, tt := range tests {
		if got := status.Code(tt.do()); got != tt.code {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.code)
		}
	}
	for _, bad := range []string{"", "dashboards", "dashboards.wrong", "nobody." + strings.SplitN(viewer, ".", 2)[1], viewer + "x"} {
		if _, err := tokens.Verify(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	if c, err := tokens.Verify(brief); err != nil || c.Role != controlplanev1.Role_ROLE_OPERATOR {
		t.Fatalf("fresh token: %+v %v", c, err)
	}
	clock.Advance(time.Hour)
	if _, err := tokens.Verify(brief); err == nil {
		t.Fatal("an expired token was accepted")
	}
	if _, err := tokens.Revoke(ctx, "dashboards"); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Verify(viewer); err == nil {
		t.Fatal("a revoked token was accepted")
	}
	// Everything survives a restart: the revocation too.
	restarted := NewTokens(st, loaded(t, st), clock, nil)
	if _, err := restarted.Verify(viewer); err == nil {
		t.Fatal("a revoked token works again after a restart")
	}
	list := restarted.List()
	if len(list) != 2 || list[0].GetName() != "ci" || list[1].GetRevokedAt() == nil || list[0].GetExpiresAt() == nil {
		t.Fatalf("list after restart: %v", list)
	}
}

func TestGate(t *testing.T) {
	st := openStore(t, t.TempDir())
	tokens := NewTokens(st, nil, nil, nil)
	ctx := context.Background()
	viewer, _, _ := tokens.Create(ctx, "v", controlplanev1.Role_ROLE_VIEWER, 0, 0)
	operator, _, _ := tokens.Create(ctx, "o", controlplanev1.Role_ROLE_OPERATOR, 0, 0)
	g := NewGate(tokens, nil, false, nil)
	call := func(method, token string) error {
		md := metadata.MD{}
		if token != "" {
			md.Set("authorization", "Bearer "+token)
		}
		_, err := g.Tap(ctx, &tap.Info{FullMethodName: method, Header: md})
		return err
	}
	tests := []struct {
		name, method, token string
		code                codes.Code
	}{
		{"health-needs-nothing", "/grpc.health.v1.Health/Check", "", codes.OK},
		{"agents-unchecked-without-tls", ns + "Heartbeat", "", codes.OK},
		{"no-token", cps + "ListNodes", "", codes.Unauthenticated},
		{"bad-token", cps + "ListNodes", "v.nope", codes.Unauthenticated},
		{"viewer-reads", cps + "ListNodes", viewer, codes.OK},
		{"viewer-cannot-cordon", cps + "CordonNode", viewer, codes.PermissionDenied},
		{"operator-cordons", cps + "CordonNode", operator, codes.OK},
		{"operator-cannot-make-tokens", cps + "CreateToken", operator, codes.PermissionDenied},
		{"reflection-needs-a-viewer", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "", codes.Unauthenticated},
		{"unknown-method", "/x.Y/Z", operator, codes.Unimplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(call(tt.method, tt.token)); got != tt.code {
				t.Fatalf("got %s, want %s", got, tt.code)
			}
		})
	}
	// A peer that keeps failing is slowed down.
	var limited bool
	for range failureBurst + 5 {
		if status.Code(call(cps+"ListNodes", "v.wrong")) == codes.ResourceExhausted {
			limited = true
		}
	}
	if !limited {
		t.Fatal("failed authentications were never rate-limited")
	}
}

// TestRoleRefusalIsLogged: a call refused for its token's role is said in
// the log, with the caller and the method, and without the token.
func TestRoleRefusalIsLogged(t *testing.T) {
	st := openStore(t, t.TempDir())
	tokens := NewTokens(st, nil, nil, nil)
	ctx := context.Background()
	viewer, _, _ := tokens.Create(ctx, "night-shift", controlplanev1.Role_ROLE_VIEWER, 0, 0)
	var buf bytes.Buffer
	g := NewGate(tokens, nil, false, slog.New(slog.NewTextHandler(&buf, nil)))
	md := metadata.MD{}
	md.Set("authorization", "Bearer "+viewer)
	if _, err := g.Tap(ctx, &tap.Info{FullMethodName: cps + "DrainNode", Header: md}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a viewer's drain: %v", err)
	}
	out := buf.String()
	for _, want := range []string{"role too low", "caller=night-shift", "DrainNode", "needs="} {
		if !strings.Contains(out, want) {
			t.Fatalf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, viewer) {
		t.Fatal("the token was logged")
	}
}
