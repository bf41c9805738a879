package cptest

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/testutil"
)

// Elected is a control plane run by controlplane.Run on etcd in this
// process: a standby until it wins the election, then the leader.
type Elected struct {
	// Addr is where it listens, HOST:PORT.
	Addr string
	// DataDir is its data directory.
	DataDir string
	// Log holds what it logged.
	Log *testutil.SyncBuffer
	// Led is closed once it leads and is about to serve.
	Led chan struct{}

	cancel context.CancelFunc
	ended  chan struct{}
	err    error
}

// StartElected runs a control plane on the etcd cluster at endpoints,
// under prefix, with its data in dataDir (agents' identities off, a lease
// of 2 s), until the test ends; tweak edits its configuration first.
func StartElected(t testing.TB, endpoints []string, prefix, dataDir string, tweak ...func(*controlplane.Config)) *Elected {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := controlplane.Defaults()
	cfg.DataDir = dataDir
	cfg.Listen = lis.Addr().String()
	cfg.AgentIdentities = false
	cfg.Store = controlplane.StoreEtcd
	cfg.Etcd.Endpoints = endpoints
	cfg.Etcd.Prefix = prefix
	cfg.Etcd.LeaseTTL = controlplane.Duration{Duration: 2 * time.Second}
	for _, fn := range tweak {
		fn(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Elected{Addr: cfg.Listen, DataDir: dataDir, Log: &testutil.SyncBuffer{}, Led: make(chan struct{}), cancel: cancel, ended: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(e.Log, nil))
	go func() {
		defer close(e.ended)
		e.err = controlplane.Run(ctx, controlplane.Options{Config: cfg, Logger: log}, lis, func(*controlplane.Server) { close(e.Led) })
	}()
	t.Cleanup(func() { _ = e.Stop() })
	return e
}

// Ended is closed once Run has returned; Err then says with what.
func (e *Elected) Ended() <-chan struct{} { return e.ended }

// Err is what Run returned; read it once Ended is closed.
func (e *Elected) Err() error { return e.err }

// Stop ends the control plane and returns what Run returned, the same on
// every call.
func (e *Elected) Stop() error {
	e.cancel()
	<-e.ended
	return e.err
}

// AwaitLead waits until it leads, failing t if it ends first or does not
// lead within limit.
func (e *Elected) AwaitLead(t testing.TB, limit time.Duration) {
	t.Helper()
	select {
	case <-e.Led:
	case <-e.ended:
		t.Fatalf("the control plane at %s ended before it led: %v", e.Addr, e.err)
	case <-time.After(limit):
		t.Fatalf("the control plane at %s did not lead within %s", e.Addr, limit)
	}
}
