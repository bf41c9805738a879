package controlplane_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/etcdtest"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// target is the control plane as its fleet's admin reaches it: the CA and
// the admin token the first leader wrote.
func target(t *testing.T, cp *cptest.Elected, first string) rpcclient.Target {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(first, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return rpcclient.Target{Addr: cp.Addr, CACert: filepath.Join(first, "pki", "ca.crt"), Token: strings.TrimSpace(string(tok))}
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
	// A lease far longer than the takeover below may take: a leader that
	// stops resigns, and the standby leads at once.
	longLease := func(c *controlplane.Config) { c.Etcd.LeaseTTL = controlplane.Duration{Duration: 20 * time.Second} }
	a := cptest.StartElected(t, cluster.Endpoints, prefix, dirA, longLease)
	a.AwaitLead(t, 20*time.Second)
	opsA, nodesA := ops(t, target(t, a, dirA))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := nodesA.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "gpu-1", Hostname: "gpu-1", Gpus: fleettest.GPUs(2), BootId: "b1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := opsA.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "gpu-1", Reason: "before the failover"}); err != nil {
		t.Fatal(err)
	}

	// Another CA: refused before it takes part.
	stranger := cptest.StartElected(t, cluster.Endpoints, prefix, t.TempDir())
	select {
	case <-stranger.Ended():
		if err := stranger.Err(); err == nil || !strings.Contains(err.Error(), "is not the fleet's") {
			t.Fatalf("a control plane with another CA: %v; want it refused", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a control plane with another CA was not refused")
	}

	copyCA(t, dirA, dirB)
	metricsB := testutil.FreeAddr(t)
	b := cptest.StartElected(t, cluster.Endpoints, prefix, dirB, longLease, func(c *controlplane.Config) { c.MetricsListen = metricsB })
	opsB, _ := ops(t, target(t, b, dirA))
	testutil.EventuallyWithin(t, 20*time.Second, "the standby to name the leader", func() bool {
		_, err := opsB.ListNodes(ctx, &controlplanev1.ListNodesRequest{})
		leader, standby := apierr.Leader(err)
		return standby && leader == a.Addr
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
	if cps := st.GetControlPlanes(); cps.GetLeader() != a.Addr || len(cps.GetMembers()) != 2 || cps.GetLastFailover() != nil {
		t.Fatalf("control planes before the failover: %v", cps)
	}

	stopping := time.Now()
	if err := a.Stop(); err != nil {
		t.Fatalf("the stopped leader: %v", err)
	}
	b.AwaitLead(t, 10*time.Second)
	if took := time.Since(stopping); took > 10*time.Second {
		t.Fatalf("the standby led %s after the leader began to stop; a stopping leader resigns", took)
	}
	if strings.Contains(a.Log.String(), "leaving the election") {
		t.Errorf("the stopped leader did not leave the election cleanly:\n%s", a.Log.String())
	}
	var node *controlplanev1.GetNodeResponse
	testutil.EventuallyWithin(t, 10*time.Second, "the new leader to serve", func() bool {
		node, err = opsB.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "gpu-1"})
		return err == nil
	})
	if !strings.Contains(b.Log.String(), "state loaded from the copy kept in memory") {
		t.Errorf("the standby did not load the fleet from its copy in memory; its log:\n%s", b.Log.String())
	}
	if got := node.GetNode().GetLifecycleReason(); !strings.Contains(got, "before the failover") {
		t.Fatalf("the acknowledged cordon after the failover: reason %q", got)
	}
	st, err = opsB.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cps := st.GetControlPlanes()
	if cps.GetLeader() != b.Addr || cps.GetLastFailover().GetFrom() != a.Addr || cps.GetLastFailover().GetTo() != b.Addr {
		t.Fatalf("control planes after the failover: %v", cps)
	}
	body = scrape(t, "http://"+metricsB+"/metrics", http.StatusOK)
	if l, f := sample(body, "navarch_controlplane_leader"), sample(body, "navarch_controlplane_failovers_total"); l != 1 || f != 1 {
		t.Fatalf("the new leader's metrics: leader %g, failovers %g; want 1 and 1", l, f)
	}
	scrape(t, "http://"+metricsB+"/readyz", http.StatusOK)
}

// TestAdvertisedNameInTheCertificate: on etcd, the host this control
// plane advertises is in its server certificate, so a client a standby
// sends there can check it.
func TestAdvertisedNameInTheCertificate(t *testing.T) {
	cluster, err := etcdtest.Start(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop)
	dir := t.TempDir()
	cp := cptest.StartElected(t, cluster.Endpoints, "/advertise/", dir, func(c *controlplane.Config) { c.Advertise = "cp-1.fleet.test:50051" })
	cp.AwaitLead(t, 20*time.Second)
	b, err := os.ReadFile(filepath.Join(dir, "pki", "server.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("server.crt holds no PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cert.DNSNames, "cp-1.fleet.test") {
		t.Fatalf("the server certificate names %v, not the advertised host cp-1.fleet.test", cert.DNSNames)
	}
}
