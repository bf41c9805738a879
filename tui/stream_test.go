package tui

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// proxy forwards TCP to a backend and can cut every connection, as a
// flaky network would.
type proxy struct {
	lis     net.Listener
	backend string
	mu      sync.Mutex
	conns   []net.Conn
	down    bool
}

func newProxy(t *testing.T, backend string) *proxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, backend: backend}
	t.Cleanup(func() { _ = lis.Close(); p.cut() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				_ = c.Close()
				continue
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(b, c); _ = b.Close() }()
			go func() { _, _ = io.Copy(c, b); _ = c.Close() }()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.cut()
	}
}

// TestWatcherReconnectsAndResumes: the stream breaks, changes happen while
// the console is away, and on reconnect the console resumes from its
// revision and receives exactly those changes, without a new snapshot.
func TestWatcherReconnectsAndResumes(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	nodeAPI, ops := cp.Nodes, cp.Ops
	ctx := context.Background()
	if _, err := nodeAPI.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}

	p := newProxy(t, cp.Addr)
	target := cp.Target()
	target.Addr = p.lis.Addr().String()
	viaProxy, err := rpcclient.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close()
	m := New(Options{Client: controlplanev1.NewControlPlaneServiceClient(viaProxy), Server: "proxy", Now: clock, Theme: NewTheme(true, false)})
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.watcher.run(wctx)
	pumpUntil(t, m, "first connection", func(msg tea.Msg) bool { _, ok := msg.(connectedMsg); return ok })
	pumpUntil(t, m, "snapshot", func(tea.Msg) bool { return m.d.fleet.loaded })
	if _, ok := m.d.fleet.rows["n1"]; !ok {
		t.Fatal("snapshot lacks n1")
	}
	before := m.d.fleet.revision

	p.setDown(true)
	pumpUntil(t, m, "disconnect", func(msg tea.Msg) bool { _, ok := msg.(disconnectedMsg); return ok })
	if plain := m.Frame(); !contains(plain, "CONNECTION LOST") {
		t.Fatalf("no banner:\n%s", plain)
	}
	// The fleet moves on while the console is away.
	if _, err := ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeAPI.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n2"}); err != nil {
		t.Fatal(err)
	}
	p.setDown(false)
	var resumed bool
	pumpUntil(t, m, "reconnect", func(msg tea.Msg) bool {
		c, ok := msg.(connectedMsg)
		resumed = c.resumed
		return ok
	})
	if !resumed {
		t.Fatal("reconnected with a snapshot instead of resuming")
	}
	pumpUntil(t, m, "the changes made while away", func(tea.Msg) bool {
		r1, r2 := m.d.fleet.rows["n1"], m.d.fleet.rows["n2"]
		return r1 != nil && r1.lifecycle == fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED && r2 != nil
	})
	if m.d.fleet.revision <= before {
		t.Fatalf("revision %d after resuming from %d", m.d.fleet.revision, before)
	}
	if contains(m.Frame(), "CONNECTION LOST") {
		t.Fatal("banner stayed")
	}
}

func contains(frame, s string) bool { return strings.Contains(ansi.Strip(frame), s) }

// TestBrokenBecauseSaysWhatHappened: the banner's words for each way a
// stream fails, from the status the client sees, with the transport's
// text as gRPC and rpcclient put it.
func TestBrokenBecauseSaysWhatHappened(t *testing.T) {
	unavailable := func(msg string) error { return status.Error(codes.Unavailable, msg) }
	tests := []struct {
		name       string
		err        error
		want       string
		wantDetail bool // the banner's words leave part of the message out
	}{
		{"refused", unavailable(`nothing listens at 127.0.0.1:1: is navarch-controlplane running there, and is that its listen address? (connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused")`),
			"connection refused", true},
		{"no-such-host", unavailable("name resolver error: produced zero addresses"), "no such host", true},
		{"no-such-host-dialling", unavailable(`connection error: desc = "transport: Error while dialing: dial tcp: lookup cp.invalid: no such host"`), "no such host", true},
		{"lookup-failed", unavailable("dns: A record lookup error: lookup cp.example.com on 127.0.0.53:53: dial udp 127.0.0.53:53: connect: connection refused"),
			"host name lookup failed", true},
		{"dial-timeout", unavailable(`connection error: desc = "transport: Error while dialing: dial tcp 10.0.0.1:50051: i/o timeout"`), "timed out", true},
		{"deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), "timed out", true},
		{"unknown-authority", unavailable(`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`),
			"TLS failure: certificate from an unknown authority", true},
		{"pin-mismatch", unavailable(`connection error: desc = "transport: authentication handshake failed: verify the control plane: no certificate it presented has the CA pin sha256:00"`),
			"TLS failure: certificate from an unknown authority", true},
		{"wrong-name", unavailable(`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate is valid for cp.example.com, not cp2.example.com"`),
			"TLS failure: certificate names another host", true},
		{"no-ip-san", unavailable(`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"`),
			"TLS failure: certificate names another host", true},
		{"expired", unavailable(`connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2031-01-01T00:00:00Z is after 2030-01-01T00:00:00Z"`),
			"TLS failure: certificate expired or not yet valid", true},
		{"plaintext-server", unavailable(`connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`),
			"TLS failure: the control plane answers in plaintext", true},
		{"handshake", unavailable(`connection error: desc = "transport: authentication handshake failed: remote error: tls: handshake failure"`),
			"TLS failure: handshake failed", true},
		{"closed", unavailable(`connection error: desc = "error reading server preface: EOF"`), "connection closed by the control plane", true},
		{"closing", unavailable("error reading from server: EOF"), "connection closed by the control plane", true},
		{"shut-down", unavailable("the server is shutting down"), "control plane unavailable", true},
		{"refused-token", status.Error(codes.Unauthenticated, "token is unknown, revoked or expired; give an operator token (--token or NAVARCH_TOKEN)"),
			"not authenticated: token is unknown, revoked or expired; give an operator token (--token or NAVARCH_TOKEN)", false},
		{"missing-token", status.Error(codes.Unauthenticated, "no token; give an operator token (--token or NAVARCH_TOKEN)"),
			"not authenticated: no token; give an operator token (--token or NAVARCH_TOKEN)", false},
		{"role", status.Error(codes.PermissionDenied, "the call was not authorised"), "permission denied: the call was not authorised", false},
		{"other-code", status.Error(codes.Internal, "watch: store closed\nstack follows"), "watch: store closed", true},
		{"not-a-status", errors.New("EOF"), "EOF", false},
		{"standby", apierr.NotLeader("cp-2:50051"), "standby: moving to the leader at cp-2:50051", true},
		{"standby-no-leader", apierr.NotLeader(""), "standby: no leader elected yet", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, detail := brokenBecause(tt.err), brokenDetail(tt.err)
			if got != tt.want {
				t.Errorf("brokenBecause: %q, want %q", got, tt.want)
			}
			if msg := status.Convert(tt.err).Message(); tt.wantDetail && detail != msg || !tt.wantDetail && detail != "" {
				t.Errorf("brokenDetail: %q (the message is %q)", detail, msg)
			}
		})
	}
}

// firstFailure runs a watcher against target and returns what it says
// when the stream first fails.
func firstFailure(t *testing.T, target rpcclient.Target) disconnectedMsg {
	t.Helper()
	conn, err := rpcclient.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := newWatcher(controlplanev1.NewControlPlaneServiceClient(conn))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	go w.run(ctx)
	for msg := range w.out {
		if d, ok := msg.(disconnectedMsg); ok {
			return d
		}
	}
	t.Fatal("the stream did not fail")
	return disconnectedMsg{}
}

// TestWatcherSaysWhyItCannotConnect: against real listeners, the watcher
// names a refused connection, a host name that does not resolve (.invalid
// never does), a control plane whose certificate another CA signed, and a token the control plane refuses, and the console shows
// those words, and the rest of the message while it waits for its first
// snapshot.
func TestWatcherSaysWhyItCannotConnect(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	other := cptest.Start(t, cptest.Options{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := lis.Addr().String()
	_ = lis.Close()

	refused := cp.Target()
	refused.Addr = closed
	otherCA := cp.Target()
	otherCA.CACert = other.Server.CAFile()
	badToken := cp.Target()
	badToken.Token = "console.not-the-secret"
	tests := []struct {
		name   string
		target rpcclient.Target
		want   string
		detail string // in the message after the words; "" for none
	}{
		{"refused", refused, "connection refused", "nothing listens at " + closed},
		{"no-such-host", rpcclient.Target{Addr: "cp.invalid:50051", Insecure: true}, "no such host", "zero addresses"},
		{"another-ca", otherCA, "TLS failure: certificate from an unknown authority", "did not sign"},
		{"bad-token", badToken, "not authenticated: ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := firstFailure(t, tt.target)
			if !strings.HasPrefix(d.err, tt.want) || !strings.Contains(d.detail, tt.detail) || tt.detail == "" && d.detail != "" {
				t.Fatalf("said %q, then %q; want %q, then %q", d.err, d.detail, tt.want, tt.detail)
			}
			m := New(Options{NoStream: true, Now: clock, Theme: NewTheme(true, false), Server: tt.target.Addr})
			send(m, tea.WindowSizeMsg{Width: 120, Height: 30}, d)
			f := strings.Join(strings.Fields(ansi.Strip(m.Frame())), " ")
			if !strings.Contains(f, "waiting for "+tt.target.Addr+": "+d.err) || !strings.Contains(f, tt.detail) {
				t.Fatalf("the waiting screen lacks %q or %q:\n%s", d.err, tt.detail, m.Frame())
			}
		})
	}
}

// pumpUntil hands the model what its running watcher sends, one message
// at a time as the program would, until match takes one; it fails t
// after 20 s.
func pumpUntil(t *testing.T, m *Model, what string, match func(tea.Msg) bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		got := make(chan tea.Msg, 1)
		go func() { got <- m.watcher.listen()() }()
		select {
		case msg := <-got:
			m.Update(msg)
			if match(msg) {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestRowsOffARealStream: the rows the console reads off a real control
// plane's stream, which encodes each node by hand from its kept state, are
// the rows of the nodes GetNode returns: GPUs with their identities, labels,
// a pool-less node and one with an XID, its samples, and a cordon that
// comes as an upsert.
func TestRowsOffARealStream(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	for _, id := range []string{"quiet", "faulty"} {
		if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Hostname: id + ".example", BootId: "boot-1",
			Gpus: fleettest.GPUs(8), Labels: map[string]string{"zone": "us-east-1a", "rack": "R" + id}}); err != nil {
			t.Fatal(err)
		}
		var samples []*fleetv1.GpuSample
		for i := range uint32(8) {
			samples = append(samples, &fleetv1.GpuSample{GpuIndex: i, UtilizationGpuPercent: 10 * i, TemperatureCelsius: 50 + i,
				PowerUsageMilliwatts: 300000, MemoryUsedBytes: 1 << 33, ProcessCount: i % 2})
		}
		if _, err := cp.Nodes.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: id, Samples: samples}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cp.Nodes.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "faulty", Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 3},
	}}); err != nil {
		t.Fatal(err)
	}
	m := New(Options{Client: cp.Ops, Server: "cp", Now: clock, Theme: NewTheme(true, false)})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m.watcher.run(wctx)
	pumpUntil(t, m, "snapshot", func(tea.Msg) bool { return m.d.fleet.loaded })
	same := func(id string) {
		t.Helper()
		resp, err := cp.Ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: id})
		if err != nil {
			t.Fatal(err)
		}
		sameRow(t, m.d.fleet.rows[id], rowFromMessage(resp.GetNode()))
	}
	same("quiet")
	same("faulty")
	// GPUs that sent no health report yet are '?'.
	if r := m.d.fleet.rows["faulty"]; string(r.glyphs) != "???U????" || !strings.Contains(r.why.cause, "XID 79") {
		t.Fatalf("faulty's row: glyphs %q, why %q", r.glyphs, r.why.cause)
	}
	if _, err := cp.Ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "quiet", Reason: "rack work"}); err != nil {
		t.Fatal(err)
	}
	pumpUntil(t, m, "the cordon", func(tea.Msg) bool {
		return m.d.fleet.rows["quiet"].lifecycle == fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED
	})
	same("quiet")
}
