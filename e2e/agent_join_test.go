package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// agentProcess is a navarch-agent binary running on simulated GPUs.
type agentProcess struct {
	cmd  *exec.Cmd
	logs *testutil.SyncBuffer
}

// agentCommand runs the agent as on a machine of its own: none of this
// machine's Navarch settings or state, and joinToken, if any, in its
// environment as an operator would hand it over.
func agentCommand(t *testing.T, bin, joinToken string, args ...string) (*exec.Cmd, *testutil.SyncBuffer) {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--simulate", "--gpus", "2", "--sim-idle", "--poll-interval", "200ms")...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NAVARCH_") && !strings.HasPrefix(kv, "XDG_STATE_HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "XDG_STATE_HOME="+t.TempDir())
	if joinToken != "" {
		cmd.Env = append(cmd.Env, "NAVARCH_JOIN_TOKEN="+joinToken)
	}
	logs := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	return cmd, logs
}

func startAgent(t *testing.T, bin, joinToken string, args ...string) *agentProcess {
	t.Helper()
	cmd, logs := agentCommand(t, bin, joinToken, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // if the test fails before stop
	return &agentProcess{cmd: cmd, logs: logs}
}

// stop ends the agent with SIGTERM and expects a clean exit.
func (a *agentProcess) stop(t *testing.T) {
	t.Helper()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent exit after SIGTERM: %v\n%s", err, a.logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("agent did not stop on SIGTERM\n%s", a.logs.String())
	}
}

func joinToken(t *testing.T, cp *cptest.ControlPlane, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cp.Ops.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: name, Role: controlplanev1.Role_ROLE_AGENT})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetToken()
}

// caPin is the pin an operator reads off the control plane's ca.crt.
func caPin(t *testing.T, cp *cptest.ControlPlane) string {
	t.Helper()
	b, err := os.ReadFile(cp.Server.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("ca.crt holds no PEM")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return rpcclient.Pin(ca)
}

// TestAgentJoinsWithATokenAndKeepsItsIdentity runs the real agent binary
// against a control plane that demands agent identities, as on a second
// machine bootstrapped with a join token and the CA's pin.
func TestAgentJoinsWithATokenAndKeepsItsIdentity(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) {
		c.AgentIdentities = true
		c.HeartbeatInterval = controlplane.Duration{Duration: 200 * time.Millisecond}
		c.HealthReportInterval = controlplane.Duration{Duration: 500 * time.Millisecond}
	}})
	f := &fleet{t: t, ops: cp.Ops}
	bin := testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent")
	pin := caPin(t, cp)
	token := joinToken(t, cp, "rack-a")
	machineA := filepath.Join(t.TempDir(), "machine-a")

	// The join: the token and the pin, then registration and heartbeats
	// with the node's own certificate.
	a := startAgent(t, bin, token, "--server", cp.Addr, "--ca-hash", pin, "--state-dir", machineA, "--node-id", "gpu-1")
	var boot string
	var registered time.Time
	f.waitFor("gpu-1 joined, registered and heartbeating", func() bool {
		n := f.node("gpu-1").GetNode()
		boot, registered = n.GetBootId(), n.GetRegisteredAt().AsTime()
		return n.GetReachability() == fleetv1.Reachability_REACHABILITY_ONLINE && n.GetLastHeartbeatAt() != nil
	})
	a.stop(t)
	if !strings.Contains(a.logs.String(), "joined the control plane") || strings.Contains(a.logs.String(), token) {
		t.Fatalf("the first start did not join, or logged the token:\n%s", a.logs.String())
	}
	for _, name := range []string{"key.pem", "cert.pem", "ca.crt"} {
		if _, err := os.Stat(filepath.Join(machineA, name)); err != nil {
			t.Fatalf("the state directory after the join: %v", err)
		}
	}

	// A restart needs no token and no CA: the agent trusts the CA it was
	// given at the join.
	a = startAgent(t, bin, "", "--server", cp.Addr, "--state-dir", machineA, "--node-id", "gpu-1")
	f.waitFor("gpu-1 registered again after the restart, on the same simulated boot", func() bool {
		n := f.node("gpu-1").GetNode()
		return n.GetRegisteredAt().AsTime().After(registered) && n.GetBootId() == boot && n.GetReachability() == fleetv1.Reachability_REACHABILITY_ONLINE
	})
	if logs := a.logs.String(); !strings.Contains(logs, "node identity found") || strings.Contains(logs, "joined the control plane") {
		t.Fatalf("the restart joined again:\n%s", logs)
	}

	// A second machine with a valid token of its own cannot take gpu-1.
	other, logs := agentCommand(t, bin, joinToken(t, cp, "rack-b"), "--server", cp.Addr, "--ca-hash", pin, "--state-dir", filepath.Join(t.TempDir(), "machine-b"), "--node-id", "gpu-1")
	if err := runWithin(other, 30*time.Second); exitCode(err) != 1 || !strings.Contains(logs.String(), "join as gpu-1") || !strings.Contains(logs.String(), "FailedPrecondition") {
		t.Fatalf("a second machine claiming gpu-1: %v\n%s", err, logs.String())
	}
	seen := f.node("gpu-1").GetNode().GetLastHeartbeatAt().AsTime()
	f.waitFor("the first machine still heartbeating as gpu-1", func() bool {
		return f.node("gpu-1").GetNode().GetLastHeartbeatAt().AsTime().After(seen)
	})
	a.stop(t)
}

func runWithin(cmd *exec.Cmd, limit time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return errors.New("still running")
	}
}

func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// TestAgentJoinsAgainAfterItsIdentityIsReset: once an operator resets a
// node's identity, the control plane refuses its certificate, and the
// running agent, which still has its join token, joins again with the same
// key and carries on without a restart.
func TestAgentJoinsAgainAfterItsIdentityIsReset(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) {
		c.AgentIdentities = true
		c.HeartbeatInterval = controlplane.Duration{Duration: 200 * time.Millisecond}
		c.HealthReportInterval = controlplane.Duration{Duration: 500 * time.Millisecond}
	}})
	f := &fleet{t: t, ops: cp.Ops}
	bin := testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent")
	state := filepath.Join(t.TempDir(), "machine-a")
	a := startAgent(t, bin, joinToken(t, cp, "rack-a"), "--server", cp.Addr, "--ca-hash", caPin(t, cp), "--state-dir", state, "--node-id", "gpu-1")
	f.waitFor("gpu-1 joined and heartbeating", func() bool {
		return f.node("gpu-1").GetNode().GetLastHeartbeatAt() != nil
	})
	key, err := os.ReadFile(filepath.Join(state, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(state, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cp.Ops.ResetNodeIdentity(ctx, &controlplanev1.ResetNodeIdentityRequest{NodeId: "gpu-1"}); err != nil {
		t.Fatal(err)
	}
	reset := time.Now()
	f.waitFor("gpu-1 heartbeating again after the reset", func() bool {
		return f.node("gpu-1").GetNode().GetLastHeartbeatAt().AsTime().After(reset.Add(time.Second))
	})
	if logs := a.logs.String(); !strings.Contains(logs, "joined again after the control plane refused the node certificate") {
		t.Fatalf("the agent did not say it joined again:\n%s", logs)
	}
	again, _ := os.ReadFile(filepath.Join(state, "cert.pem"))
	if bytes.Equal(again, first) {
		t.Fatal("cert.pem still holds the refused certificate")
	}
	if k, _ := os.ReadFile(filepath.Join(state, "key.pem")); !bytes.Equal(k, key) {
		t.Fatal("the agent made a new key to join again")
	}
	a.stop(t)
}
