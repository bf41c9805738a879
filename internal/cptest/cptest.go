// Package cptest runs a real control plane for tests of the packages that
// talk to one: on loopback, with a real Badger directory in a temporary
// folder, stopped when the test ends.
package cptest

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// ControlPlane is a running control plane and clients for it.
type ControlPlane struct {
	// Addr is where it listens.
	Addr string
	// Conn is a client connection to it.
	Conn *grpc.ClientConn
	// Ops is ControlPlaneService on Conn.
	Ops controlplanev1.ControlPlaneServiceClient
	// Nodes is NodeService on Conn.
	Nodes nodev1.NodeServiceClient

	stop func()
}

// Stop shuts the control plane down before the test ends; later calls do
// nothing.
func (cp *ControlPlane) Stop() { cp.stop() }

// Options adjust a test control plane.
type Options struct {
	// Config edits the defaults before start.
	Config func(*controlplane.Config)
	// Providers are offered to ProvisionNodes; they get the address.
	Providers func(addr string) []controlplane.Provider
}

// Start runs a control plane until the test ends.
func Start(t testing.TB, o Options) *ControlPlane {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := controlplane.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.Listen = lis.Addr().String()
	if o.Config != nil {
		o.Config(&cfg)
	}
	var providers []controlplane.Provider
	if o.Providers != nil {
		providers = o.Providers(lis.Addr().String())
	}
	srv, err := controlplane.New(context.Background(), controlplane.Options{Config: cfg, Providers: providers})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := rpcclient.Dial(lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	stop := sync.OnceFunc(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	t.Cleanup(stop)
	return &ControlPlane{
		Addr:  lis.Addr().String(),
		Conn:  conn,
		Ops:   controlplanev1.NewControlPlaneServiceClient(conn),
		Nodes: nodev1.NewNodeServiceClient(conn),
		stop:  stop,
	}
}
