package tui

import (
	"context"
	"path/filepath"
	"testing"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/grpc/credentials"

	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/rpcclient/standbytest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestWatcherFollowsTheLeader: the console is given a standby and an
// address where nothing listens; its stream, opened through the standby,
// is served by the leader the standby names. The leader goes away and another takes over on a new address
// with the same state: the console reconnects there by itself and
// receives what changed since.
func TestWatcherFollowsTheLeader(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(cp.Config.DataDir, "pki")
	creds, err := credentials.NewServerTLSFromFile(filepath.Join(pki, "server.crt"), filepath.Join(pki, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	standby := standbytest.Start(t, standbytest.Options{Creds: creds, Leader: cp.Addr})
	target := cp.Target()
	target.Addr = standby.Addr + "," + standbytest.DeadAddr(t)
	conn, err := rpcclient.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	m := New(Options{Client: controlplanev1.NewControlPlaneServiceClient(conn), Server: target.Addr, Now: clock, Theme: NewTheme(true, false)})
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.watcher.run(wctx)
	isConnected := func(msg tea.Msg) bool { _, ok := msg.(connectedMsg); return ok }
	pumpUntil(t, m, "first connection", func(msg tea.Msg) bool {
		if _, ok := msg.(disconnectedMsg); ok {
			t.Fatalf("the standby's answer reached the console: %+v", msg)
		}
		return isConnected(msg)
	})
	pumpUntil(t, m, "snapshot", func(tea.Msg) bool { return m.d.fleet.loaded })
	if standby.Calls() != 1 {
		t.Fatalf("the standby answered %d streams, want the first", standby.Calls())
	}

	cp.Restart()
	standby.SetLeader(cp.Addr)
	pumpUntil(t, m, "disconnect", func(msg tea.Msg) bool { _, ok := msg.(disconnectedMsg); return ok })
	if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n2"}); err != nil {
		t.Fatal(err)
	}
	pumpUntil(t, m, "reconnect", isConnected)
	pumpUntil(t, m, "the node registered on the new leader", func(tea.Msg) bool {
		return m.d.fleet.rows["n1"] != nil && m.d.fleet.rows["n2"] != nil
	})
	if contains(m.Frame(), "CONNECTION LOST") {
		t.Fatal("banner stayed")
	}
}
