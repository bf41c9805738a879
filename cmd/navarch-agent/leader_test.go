package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient/standbytest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// TestAgentFollowsTheLeader runs the real agent given a standby and an
// address where nothing listens: it joins, registers and heartbeats
// through the leader the standby names; when the leader goes away and another takes
// over on a new address with the same state, the agent's heartbeats
// follow it there.
func TestAgentFollowsTheLeader(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) {
		c.AgentIdentities = true
		c.HeartbeatInterval.Duration = 200 * time.Millisecond
	}})
	pki := filepath.Join(cp.Config.DataDir, "pki")
	creds, err := credentials.NewServerTLSFromFile(filepath.Join(pki, "server.crt"), filepath.Join(pki, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	standby := standbytest.Start(t, standbytest.Options{Creds: creds, Leader: cp.Addr})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, err := cp.Ops.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "join", Role: controlplanev1.Role_ROLE_AGENT, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent"),
		"--server", standby.Addr+","+standbytest.DeadAddr(t), "--ca-cert", cp.Server.CAFile(), "--join-token", tok.GetToken(),
		"--state-dir", filepath.Join(t.TempDir(), "n1"), "--node-id", "n1", "--simulate", "--gpus", "1", "--kernel-log", "")
	var logs testutil.SyncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	heartbeatAfter := func(since time.Time) func() bool {
		return func() bool {
			resp, err := cp.Ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "n1"})
			return err == nil && resp.GetNode().GetLastHeartbeatAt().AsTime().After(since)
		}
	}
	testutil.EventuallyWithin(t, 30*time.Second, "the node joined and heartbeating on the leader", heartbeatAfter(time.Time{}))
	if standby.Calls() == 0 {
		t.Errorf("the standby listed first answered no call")
	}
	cp.Restart()
	standby.SetLeader(cp.Addr)
	restarted := time.Now()
	testutil.EventuallyWithin(t, 30*time.Second, "a heartbeat on the new leader", heartbeatAfter(restarted))
	stopWithSIGTERM(t, cmd, &logs, func() bool { return true })
	if strings.Contains(logs.String(), tok.GetToken()) {
		t.Fatal("the join token was logged")
	}
}
