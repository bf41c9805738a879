// Package cptest runs a real control plane for tests: on loopback, over
// real TLS with the control plane's own CA, with a real Badger directory
// in a temporary folder, with clients for both services, restartable on
// the same data, and stopped when the test ends.
// It is the one harness every package's tests start a control plane with.
package cptest

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// ControlPlane is a running control plane and clients for it. Restart
// replaces every field but Config.
type ControlPlane struct {
	// Addr is where it listens.
	Addr string
	// Conn is a client connection to it.
	Conn *grpc.ClientConn
	// Ops is ControlPlaneService on Conn.
	Ops controlplanev1.ControlPlaneServiceClient
	// Nodes is NodeService on Conn.
	Nodes nodev1.NodeServiceClient
	// Server is the control plane itself, for what no RPC reaches (a
	// monitor pass on a fake clock: Server.Fleet().Tick).
	Server *controlplane.Server
	// Config is the configuration it runs with.
	Config controlplane.Config

	t    testing.TB
	o    Options
	stop func()
}

// Options adjust a test control plane.
type Options struct {
	// Config edits the defaults before start.
	Config func(*controlplane.Config)
	// Providers are offered to ProvisionNodes; they get how to reach the
	// control plane. They are built again at each restart.
	Providers func(target rpcclient.Target) []provider.Provider
	// Clock drives the control plane; nil means the real clock.
	Clock clockwork.Clock
	// CACert is the CA clients trust when Config brings the server's
	// certificate; empty means the control plane's own CA.
	CACert string
	// Logger receives the control plane's logs; nil discards them.
	Logger *slog.Logger
}

// Start runs a control plane until the test ends.
func Start(t testing.TB, o Options) *ControlPlane {
	t.Helper()
	cfg := controlplane.Defaults()
	cfg.DataDir = t.TempDir()
	// Tests call NodeService for many nodes on one connection, as the
	// fleet simulator does; the tests of agents' identities turn them on.
	cfg.AgentIdentities = false
	if o.Config != nil {
		o.Config(&cfg)
	}
	cp := &ControlPlane{Config: cfg, t: t, o: o}
	cp.start()
	t.Cleanup(cp.Stop)
	return cp
}

func (cp *ControlPlane) start() {
	t := cp.t
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cp.Config
	cfg.Listen = lis.Addr().String()
	var providers []provider.Provider
	if cp.o.Providers != nil {
		// The control plane writes its CA at start, before any provider
		// starts an agent.
		t := rpcclient.Target{Addr: lis.Addr().String(), CACert: cmp.Or(cp.o.CACert, filepath.Join(cfg.DataDir, "pki", "ca.crt")), Insecure: cfg.Insecure}
		providers = cp.o.Providers(t)
	}
	srv, err := controlplane.New(context.Background(), controlplane.Options{Config: cfg, Providers: providers, Clock: cp.o.Clock, Logger: cp.o.Logger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := rpcclient.Dial(cp.target(lis.Addr().String(), srv))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cp.Addr, cp.Conn, cp.Server = lis.Addr().String(), conn, srv
	cp.Ops = controlplanev1.NewControlPlaneServiceClient(conn)
	cp.Nodes = nodev1.NewNodeServiceClient(conn)
	cp.stop = sync.OnceFunc(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

// Target is how a client reaches this control plane as its admin: its
// address, the CA it runs (over real TLS unless the configuration asked
// for plaintext), and the admin token it wrote on first start.
func (cp *ControlPlane) Target() rpcclient.Target { return cp.target(cp.Addr, cp.Server) }

func (cp *ControlPlane) target(addr string, srv *controlplane.Server) rpcclient.Target {
	return rpcclient.Target{Addr: addr, CACert: cmp.Or(cp.o.CACert, srv.CAFile()), Insecure: cp.Config.Insecure, Token: cp.AdminToken()}
}

// AdminToken is the admin token the control plane wrote on its first start.
func (cp *ControlPlane) AdminToken() string {
	b, err := os.ReadFile(filepath.Join(cp.Config.DataDir, "admin.token"))
	if err != nil {
		cp.t.Fatalf("read the admin token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// Stop shuts the control plane down before the test ends; later calls do
// nothing.
func (cp *ControlPlane) Stop() { cp.stop() }

// Restart stops the control plane and starts a new one on the same data
// directory, on a new address.
func (cp *ControlPlane) Restart() {
	cp.t.Helper()
	cp.Stop()
	cp.start()
}
