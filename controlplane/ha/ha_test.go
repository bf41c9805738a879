package ha

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/etcdtest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

var cluster *etcdtest.Cluster

func TestMain(m *testing.M) {
	c, err := etcdtest.Start(1)
	if err != nil {
		os.Stderr.WriteString("start etcd: " + err.Error() + "\n")
		os.Exit(1)
	}
	cluster = c
	code := m.Run()
	c.Stop()
	os.Exit(code)
}

func client(t *testing.T) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: cluster.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func join(t *testing.T, prefix, addr string) *Election {
	t.Helper()
	e, err := New(context.Background(), Options{Client: client(t), Prefix: prefix, Address: addr, Version: "test", TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// prefixOf is a key prefix of the test's own, new at each run, so that
// runs on the shared cluster never see each other's keys.
func prefixOf(t *testing.T) string {
	return fmt.Sprintf("/%s-%d/", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano())
}

// TestFailover: the first control plane leads and its fenced writes land;
// a second waits, naming the first as the leader; when the first leaves,
// the second leads, the failover is recorded, and the first one's fence
// no longer lets a write through.
func TestFailover(t *testing.T) {
	prefix := prefixOf(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := join(t, prefix, "cp-a:50051")
	fenceA, lostA, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := client(t)
	fenced := func(f Fence, key string) bool {
		resp, err := c.Txn(ctx).If(f.Cmp()).Then(clientv3.OpPut(prefix+key, "x")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !fenced(fenceA, "write-a") {
		t.Fatal("the leader's fenced write was refused")
	}
	if fenced(NoFence(prefix), "write-none") {
		t.Fatal("a write with no fence won got through")
	}
	b := join(t, prefix, "cp-b:50051")
	defer b.Close()
	// A standby names the leader from the start, not once its observer
	// caught up: a client that calls it first learns where to go.
	if got := b.Leader(); got != "cp-a:50051" {
		t.Fatalf("a new standby names %q as the leader, want cp-a:50051", got)
	}
	won := make(chan Fence, 1)
	go func() {
		f, _, err := b.Campaign(ctx)
		if err != nil {
			t.Error(err)
		}
		won <- f
	}()
	select {
	case <-won:
		t.Fatal("a second control plane led while the first held the lease")
	case <-time.After(500 * time.Millisecond):
	}
	st, err := b.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Members) != 2 || st.Members[0].Address != "cp-a:50051" || st.Members[1].Address != "cp-b:50051" || st.LastFailover != nil {
		t.Fatalf("status before the failover: %+v", st)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lostA:
	case <-time.After(5 * time.Second):
		t.Fatal("the first control plane's session did not end when it left")
	}
	var fenceB Fence
	select {
	case fenceB = <-won:
	case <-time.After(10 * time.Second):
		t.Fatal("the standby did not lead within 10 s of the leader leaving")
	}
	if fenced(fenceA, "write-a-late") {
		t.Fatal("the old leader's fence still let a write through")
	}
	if !fenced(fenceB, "write-b") {
		t.Fatal("the new leader's fenced write was refused")
	}
	st, err = b.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader != "cp-b:50051" || len(st.Members) != 1 || st.LastFailover == nil ||
		st.LastFailover.From != "cp-a:50051" || st.LastFailover.To != "cp-b:50051" || !b.FailedOver() {
		t.Fatalf("status after the failover: %+v (failover %+v)", st, st.LastFailover)
	}
}

// TestLeaseEndsWhenCutOff: a leader whose lease is revoked (as when it
// cannot reach etcd for a TTL) learns it on the lost channel, and its
// fence no longer holds.
func TestLeaseEndsWhenCutOff(t *testing.T) {
	prefix := prefixOf(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := join(t, prefix, "cp-a:50051")
	defer a.Close()
	fence, lost, err := a.Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := client(t)
	if _, err := c.Revoke(ctx, a.session.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("a revoked lease was not reported lost")
	}
	resp, err := c.Txn(ctx).If(fence.Cmp()).Then(clientv3.OpPut(prefix+"late", "x")).Commit()
	if err != nil || resp.Succeeded {
		t.Fatalf("a write fenced by a lost lease: succeeded %v, %v", resp.Succeeded, err)
	}
}

func TestCheckCA(t *testing.T) {
	prefix := prefixOf(t)
	ctx := context.Background()
	c := client(t)
	if err := CheckCA(ctx, c, prefix, "sha256:aaaa"); err != nil {
		t.Fatalf("the first CA: %v", err)
	}
	if err := CheckCA(ctx, c, prefix, "sha256:aaaa"); err != nil {
		t.Fatalf("the same CA again: %v", err)
	}
	err := CheckCA(ctx, c, prefix, "sha256:bbbb")
	if err == nil || !strings.Contains(err.Error(), "sha256:bbbb") || !strings.Contains(err.Error(), "sha256:aaaa") || !strings.Contains(err.Error(), "pki/ca.crt and ca.key") {
		t.Fatalf("another CA: %v; want it refused, naming both and the fix", err)
	}
}

// TestStandbyThenLeaderOnOneSocket: a standby answers every call with the
// leader's address and NOT_SERVING health; then the leader's server takes
// the same socket, and the client, connected all along, is served by it.
func TestStandbyThenLeaderOnOneSocket(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandoff(lis)
	defer h.Close()
	standby := NewStandby(insecure.NewCredentials(), func() string { return "cp-b:50051" })
	go func() { _ = standby.Serve(h.Turn()) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = controlplanev1.NewControlPlaneServiceClient(conn).GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if leader, ok := apierr.Leader(err); !ok || leader != "cp-b:50051" {
		t.Fatalf("a standby's answer: %v; want NOT_LEADER naming cp-b:50051", err)
	}
	stream, err := controlplanev1.NewControlPlaneServiceClient(conn).WatchFleet(ctx, &controlplanev1.WatchFleetRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if _, ok := apierr.Leader(err); !ok {
		t.Fatalf("a standby's answer to a stream: %v; want NOT_LEADER", err)
	}
	hc := healthpb.NewHealthClient(conn)
	if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("a standby's health: %v, %v", resp, err)
	}
	standby.Stop()

	leader := grpc.NewServer()
	healthy := &servingHealth{}
	healthpb.RegisterHealthServer(leader, healthy)
	go func() { _ = leader.Serve(h.Turn()) }()
	defer leader.Stop()
	testutil.Eventually(t, "the leader's server to answer on the same socket", func() bool {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
}

type servingHealth struct {
	healthpb.UnimplementedHealthServer
}

func (servingHealth) Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// TestStandbyLeaseLost: a standby whose lease ends while it waits to lead
// (cut off from etcd for longer than the lease) stops waiting with
// ErrLeaseLost rather than win an election it is no longer in.
func TestStandbyLeaseLost(t *testing.T) {
	prefix := prefixOf(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := join(t, prefix, "cp-a:50051")
	defer a.Close()
	if _, _, err := a.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	b := join(t, prefix, "cp-b:50051")
	defer b.Close()
	ended := make(chan error, 1)
	go func() {
		_, _, err := b.Campaign(ctx)
		ended <- err
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := client(t).Revoke(ctx, b.session.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("a standby whose lease ended: %v, want ErrLeaseLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a standby whose lease ended still waits to lead")
	}
}
