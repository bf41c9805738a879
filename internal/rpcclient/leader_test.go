package rpcclient_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/rpcclient/standbytest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// standbyBeside runs a standby that presents the certificate of cp, as a
// standby sharing its names and CA would, and names leader.
func standbyBeside(t *testing.T, cp *cptest.ControlPlane, leader string) *standbytest.Standby {
	t.Helper()
	pki := filepath.Join(cp.Config.DataDir, "pki")
	creds, err := credentials.NewServerTLSFromFile(filepath.Join(pki, "server.crt"), filepath.Join(pki, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	return standbytest.Start(t, standbytest.Options{Creds: creds, Leader: leader})
}

// dialList dials cp's CA and token at the addresses given.
func dialList(t *testing.T, cp *cptest.ControlPlane, addrs string) *grpc.ClientConn {
	t.Helper()
	target := cp.Target()
	target.Addr = addrs
	conn, err := rpcclient.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestCallsThroughAStandbyLandOnTheLeader: the first call reaches the
// standby listed first, is answered NOT_LEADER and is made again on the
// leader it names; the calls after it go to the leader straight away,
// operators' and agents' alike.
func TestCallsThroughAStandbyLandOnTheLeader(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	standby := standbyBeside(t, cp, cp.Addr)
	conn := dialList(t, cp, standby.Addr+","+cp.Addr)
	ops, nodes := controlplanev1.NewControlPlaneServiceClient(conn), nodev1.NewNodeServiceClient(conn)
	ctx := callCtx(t)

	if _, err := ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{}); err != nil {
		t.Fatalf("first call: %v", err)
	}
	if got := standby.Calls(); got != 1 {
		t.Fatalf("the standby answered %d calls, want the first one", got)
	}
	if _, err := nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatalf("register: %v", err)
	}
	if _, err := nodes.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if _, err := ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatalf("cordon: %v", err)
	}
	if _, err := cp.Ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatalf("the leader does not hold the node registered through the list: %v", err)
	}
	if got := standby.Calls(); got != 1 {
		t.Fatalf("the standby answered %d calls; the connection went back to it", got)
	}
}

// TestNoLeaderNamedMovesToTheNextAddress: a dead address is passed over,
// a standby that knows no leader fails the call, NOT_LEADER with no
// leader, and the next call goes to the next address, the leader.
func TestNoLeaderNamedMovesToTheNextAddress(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	standby := standbyBeside(t, cp, "")
	ops := controlplanev1.NewControlPlaneServiceClient(dialList(t, cp, standbytest.DeadAddr(t)+","+standby.Addr+","+cp.Addr))
	ctx := callCtx(t)

	_, err := ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{})
	if leader, standby := apierr.Leader(err); !standby || leader != "" {
		t.Fatalf("first call: %v, want the standby's NOT_LEADER naming no leader", err)
	}
	if _, err := ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{}); err != nil {
		t.Fatalf("the next call did not move on to the leader: %v", err)
	}
	if got := standby.Calls(); got != 1 {
		t.Fatalf("the standby answered %d calls, want 1", got)
	}
}

// TestWatchFleetOpenedThroughAStandbyIsServedByTheLeader: the standby's
// answer to a stream arrives at the first receive; the stream is opened
// again on the leader it names without the caller seeing it.
func TestWatchFleetOpenedThroughAStandbyIsServedByTheLeader(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := callCtx(t)
	if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	standby := standbyBeside(t, cp, cp.Addr)
	ops := controlplanev1.NewControlPlaneServiceClient(dialList(t, cp, standby.Addr+","+standbytest.DeadAddr(t)))
	stream, err := ops.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("first message: %v", err)
	}
	if first.GetSnapshot() == nil || first.GetRevision() == 0 {
		t.Fatalf("first message %v, want the leader's snapshot", first)
	}
	if got := standby.Calls(); got != 1 {
		t.Fatalf("the standby answered %d streams, want 1", got)
	}
}

// TestTheClientFollowsANewLeader: the leader goes away and a control
// plane on another address takes over with the same state; the standby
// names the new one, and the client's calls and streams move there.
func TestTheClientFollowsANewLeader(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	standby := standbyBeside(t, cp, cp.Addr)
	conn := dialList(t, cp, cp.Addr+","+standby.Addr)
	ops := controlplanev1.NewControlPlaneServiceClient(conn)
	ctx := callCtx(t)
	if _, err := ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "missing"}); status.Code(err) != codes.NotFound {
		t.Fatalf("a call to the first leader: %v", err)
	}
	if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	stream, err := ops.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	first := cp.Addr

	cp.Restart()
	standby.SetLeader(cp.Addr)
	if cp.Addr == first {
		t.Fatal("the new leader listens where the old one did")
	}
	for err == nil {
		_, err = stream.Recv()
	}
	if errors.Is(err, io.EOF) || status.Code(err) == codes.OK {
		t.Fatalf("the stream ended cleanly when its control plane went away: %v", err)
	}
	testutil.Eventually(t, "a call served by the new leader", func() bool {
		_, err := ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "n1"})
		return err == nil
	})
	// The console's resumption: the stream reopened from its revision is
	// served by the new leader.
	again, err := ops.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{SinceRevision: snap.GetRevision()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Recv(); err != nil {
		t.Fatalf("the stream on the new leader: %v", err)
	}
}
