package controlplane_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/etcdtest"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// electedCP is a control plane run by controlplane.Run on etcd.
type electedCP struct {
	log     *testutil.SyncBuffer
	addr    string
	dataDir string
	cancel  context.CancelFunc
	done    chan error
	led     chan struct{}
}

func runElected(t *testing.T, endpoints []string, prefix, dataDir string, tweak ...func(*controlplane.Config)) *electedCP {
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
	cp := &electedCP{log: &testutil.SyncBuffer{}, addr: cfg.Listen, dataDir: dataDir, cancel: cancel, done: make(chan error, 1), led: make(chan struct{})}
	log := slog.New(slog.NewTextHandler(cp.log, nil))
	go func() {
		cp.done <- controlplane.Run(ctx, controlplane.Options{Config: cfg, Logger: log}, lis, func(*controlplane.Server) { close(cp.led) })
	}()
	t.Cleanup(cp.stop)
	return cp
}

func (cp *electedCP) stop() {
	cp.cancel()
	<-cp.done
	cp.done <- nil
}

// target is the control plane as its fleet's admin reaches it: the CA and
// the admin token the first leader wrote.
func (cp *electedCP) target(t *testing.T, first string) rpcclient.Target {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(first, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return rpcclient.Target{Addr: cp.addr, CACert: filepath.Join(first, "pki", "ca.crt"), Token: strings.TrimSpace(string(tok))}
}

func copyCA(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(to, "pki"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(from, "pki", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, "pki", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func ops(t *testing.T, target rpcclient.Target) (controlplanev1.ControlPlaneServiceClient, nodev1.NodeServiceClient) {
	t.Helper()
	conn, err := rpcclient.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return controlplanev1.NewControlPlaneServiceClient(conn), nodev1.NewNodeServiceClient(conn)
}

// TestStandbyTakesOver runs two control planes on one etcd: the first
// leads and takes writes; the second, a standby, answers with the
// first's address and reads nothing; when the first stops, the second
// leads within seconds with every acknowledged write, and shows the
// failover. A control plane with a CA of its own is refused.
func TestStandbyTakesOver(t *testing.T) {
	cluster, err := etcdtest.Start(1)
	if err != nil {
		t.Fatal(err)
	}
	// Stopped after the control planes, whose cleanups run first.
	t.Cleanup(cluster.Stop)
	const prefix = "/fleet-a/"
	dirA, dirB := t.TempDir(), t.TempDir()
	a := runElected(t, cluster.Endpoints, prefix, dirA)
	select {
	case <-a.led:
	case err := <-a.done:
		t.Fatalf("the first control plane ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the first control plane did not lead")
	}
	opsA, nodesA := ops(t, a.target(t, dirA))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := nodesA.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "gpu-1", Hostname: "gpu-1", Gpus: fleettest.GPUs(2), BootId: "b1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := opsA.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "gpu-1", Reason: "before the failover"}); err != nil {
		t.Fatal(err)
	}

	// Another CA: refused before it takes part.
	stranger := runElected(t, cluster.Endpoints, prefix, t.TempDir())
	select {
	case err := <-stranger.done:
		if err == nil || !strings.Contains(err.Error(), "is not the fleet's") {
			t.Fatalf("a control plane with another CA: %v; want it refused", err)
		}
		stranger.done <- err
	case <-time.After(20 * time.Second):
		t.Fatal("a control plane with another CA was not refused")
	}

	copyCA(t, dirA, dirB)
	metricsB := freeAddr(t)
	b := runElected(t, cluster.Endpoints, prefix, dirB, func(c *controlplane.Config) { c.MetricsListen = metricsB })
	opsB, _ := ops(t, b.target(t, dirA))
	testutil.EventuallyWithin(t, 20*time.Second, "the standby to name the leader", func() bool {
		_, err := opsB.ListNodes(ctx, &controlplanev1.ListNodesRequest{})
		leader, standby := apierr.Leader(err)
		return standby && leader == a.addr
	})
	// The standby's metrics listener: up, not ready, not leading.
	body := scrape(t, "http://"+metricsB+"/metrics", http.StatusOK)
	if l, f := sample(body, "navarch_controlplane_leader"), sample(body, "navarch_controlplane_failovers_total"); l != 0 || f != 0 {
		t.Fatalf("a standby's metrics: leader %g, failovers %g; want 0 and 0", l, f)
	}
	scrape(t, "http://"+metricsB+"/readyz", http.StatusServiceUnavailable)
	st, err := opsA.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if cps := st.GetControlPlanes(); cps.GetLeader() != a.addr || len(cps.GetMembers()) != 2 || cps.GetLastFailover() != nil {
		t.Fatalf("control planes before the failover: %v", cps)
	}

	a.stop()
	stopped := time.Now()
	select {
	case <-b.led:
		t.Logf("the standby led %s after the leader stopped", time.Since(stopped).Round(time.Millisecond))
	case err := <-b.done:
		t.Fatalf("the standby ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the standby did not lead within 10 s")
	}
	var node *controlplanev1.GetNodeResponse
	testutil.EventuallyWithin(t, 10*time.Second, "the new leader to serve", func() bool {
		node, err = opsB.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "gpu-1"})
		return err == nil
	})
	if !strings.Contains(b.log.String(), "state loaded from the copy kept in memory") {
		t.Errorf("the standby did not load the fleet from its copy in memory; its log:\n%s", b.log.String())
	}
	if got := node.GetNode().GetLifecycleReason(); !strings.Contains(got, "before the failover") {
		t.Fatalf("the acknowledged cordon after the failover: reason %q", got)
	}
	st, err = opsB.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cps := st.GetControlPlanes()
	if cps.GetLeader() != b.addr || cps.GetLastFailover().GetFrom() != a.addr || cps.GetLastFailover().GetTo() != b.addr {
		t.Fatalf("control planes after the failover: %v", cps)
	}
	body = scrape(t, "http://"+metricsB+"/metrics", http.StatusOK)
	if l, f := sample(body, "navarch_controlplane_leader"), sample(body, "navarch_controlplane_failovers_total"); l != 1 || f != 1 {
		t.Fatalf("the new leader's metrics: leader %g, failovers %g; want 1 and 1", l, f)
	}
	scrape(t, "http://"+metricsB+"/readyz", http.StatusOK)
	if err := <-a.done; err != nil && !errors.Is(err, controlplane.ErrLostLead) {
		t.Fatalf("the stopped leader: %v", err)
	}
	a.done <- nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
