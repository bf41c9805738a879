package local_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/local"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

var agentBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "navarch-local-test")
	if err != nil {
		panic(err)
	}
	agentBinary = filepath.Join(dir, "navarch-agent")
	build := exec.Command("go", "build", "-o", agentBinary, "github.com/navarch/navarch/cmd/navarch-agent")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type env struct {
	t    *testing.T
	prov *local.Provider
	ops  controlplanev1.ControlPlaneServiceClient
	stop func()
}

// start runs a real control plane with the local provider starting real
// agent processes, which join with an agent token and call with their own
// certificates.
func start(t *testing.T, agent string) *env {
	t.Helper()
	e := &env{t: t}
	joinToken := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := e.ops.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: fmt.Sprintf("join-%d", time.Now().UnixNano()), Role: controlplanev1.Role_ROLE_AGENT, Uses: 1})
		return resp.GetToken(), err
	}
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) { c.AgentIdentities = true }, Providers: func(cp rpcclient.Target) []provider.Provider {
		prov, err := local.New(local.Options{AgentBinary: agent, Server: cp.Addr, CACert: cp.CACert, JoinToken: joinToken, LogDir: filepath.Join(t.TempDir(), "agents"), StopGrace: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		e.prov = prov
		return []provider.Provider{prov}
	}})
	e.ops, e.stop = cp.Ops, cp.Stop
	return e
}

func (e *env) node(id string) *fleetv1.Node {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: id})
	if err != nil {
		return nil
	}
	return resp.GetNode()
}

// waitFor gives real agent processes time to start and stop on a busy
// machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.EventuallyWithin(t, 30*time.Second, what, cond)
}

func running(pid int) bool { return syscall.Kill(pid, 0) == nil }

func agentPIDs(t *testing.T, nodeIDs ...string) []int {
	t.Helper()
	var pids []int
	out, _ := exec.Command("pgrep", "-f", agentBinary).Output()
	for _, f := range strings.Fields(string(out)) {
		var pid int
		fmt.Sscan(f, &pid)
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		for _, id := range nodeIDs {
			if strings.Contains(string(cmdline), id) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

func TestProvisionRegisterTerminate(t *testing.T) {
	e := start(t, agentBinary)
	ctx := context.Background()
	resp, err := e.ops.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{
		Provider: "local", Count: 2, GpusPerNode: 2, Labels: map[string]string{"pool": "test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{resp.GetNodes()[0].GetNodeId(), resp.GetNodes()[1].GetNodeId()}
	for _, n := range resp.GetNodes() {
		if n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING && n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE {
			t.Fatalf("new node %s is %s", n.GetNodeId(), n.GetLifecycle())
		}
	}
	for _, id := range ids {
		waitFor(t, id+" ACTIVE with its GPUs", func() bool {
			n := e.node(id)
			return n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE && len(n.GetGpus()) == 2 && n.GetSimulated()
		})
		if n := e.node(id); n.GetProvider() != "local" || n.GetLabels()["pool"] != "test" || !strings.HasPrefix(n.GetInstanceId(), "proc-") {
			t.Fatalf("node %v", n)
		}
	}
	insts, _ := e.prov.List(ctx)
	if len(insts) != 2 {
		t.Fatalf("provider runs %d instances", len(insts))
	}
	pids := agentPIDs(t, ids[0])
	if len(pids) != 1 {
		t.Fatalf("agent processes of %s: %v", ids[0], pids)
	}
	if _, err := e.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: ids[0], Force: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "TERMINATED", func() bool { return e.node(ids[0]).GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED })
	waitFor(t, "agent process gone", func() bool { return !running(pids[0]) })
	insts, _ = e.prov.List(ctx)
	if len(insts) != 1 || insts[0].NodeID != ids[1] {
		t.Fatalf("instances after terminate: %v", insts)
	}
}

func TestAgentThatFailsToStart(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "broken-agent")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho 'navarch-agent: cannot open /dev/nvidiactl' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e := start(t, bad)
	if _, err := e.ops.ProvisionNodes(context.Background(), &controlplanev1.ProvisionNodesRequest{Provider: "local", Count: 1}); err != nil {
		t.Fatal(err)
	}
	// The agent may exit before the launch's answer is recorded, and a
	// node failed by then is not among those the call says started: find
	// it in the fleet.
	var failed *fleetv1.Node
	waitFor(t, "PROVISION_FAILED", func() bool {
		resp, err := e.ops.ListNodes(context.Background(), &controlplanev1.ListNodesRequest{})
		if err != nil || len(resp.GetNodes()) != 1 {
			return false
		}
		failed = resp.GetNodes()[0]
		return failed.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED
	})
	if r := failed.GetLifecycleReason(); !strings.Contains(r, "exit status 1") || !strings.Contains(r, "cannot open /dev/nvidiactl") {
		t.Fatalf("reason %q", r)
	}
}

func TestShutdownStopsAgents(t *testing.T) {
	e := start(t, agentBinary)
	resp, err := e.ops.ProvisionNodes(context.Background(), &controlplanev1.ProvisionNodesRequest{Provider: "local", Count: 3, GpusPerNode: 1})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, n := range resp.GetNodes() {
		ids = append(ids, n.GetNodeId())
	}
	for _, id := range ids {
		waitFor(t, id+" ACTIVE", func() bool { return e.node(id).GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE })
	}
	pids := agentPIDs(t, ids...)
	if len(pids) != 3 {
		t.Fatalf("agent processes %v", pids)
	}
	e.stop()
	for _, pid := range pids {
		if running(pid) {
			t.Fatalf("agent %d still running after the control plane stopped", pid)
		}
	}
}

func TestLimits(t *testing.T) {
	if _, err := local.New(local.Options{AgentBinary: "/nonexistent/navarch-agent", Server: "127.0.0.1:1", LogDir: t.TempDir()}); err == nil {
		t.Fatal("missing agent binary accepted")
	}
	if _, err := local.New(local.Options{AgentBinary: agentBinary, Server: "127.0.0.1:1", LogDir: t.TempDir()}); err == nil {
		t.Fatal("agents without a CA to trust the control plane with were accepted")
	}
	p, err := local.New(local.Options{AgentBinary: agentBinary, Server: "127.0.0.1:1", Insecure: true, LogDir: t.TempDir(), MaxNodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Provision(context.Background(), provider.Spec{Count: 3, NodeIDs: []string{"a", "b", "c"}, Failed: func(string, string) {}})
	if err == nil || !strings.Contains(err.Error(), "limit of 2") {
		t.Fatalf("err = %v", err)
	}
	// Requests at the same time cannot together pass the limit.
	var wg sync.WaitGroup
	var mu sync.Mutex
	started := 0
	for range 4 {
		wg.Go(func() {
			insts, err := p.Provision(context.Background(), provider.Spec{Count: 1, NodeIDs: []string{provider.NewNodeID("race")}, Failed: func(string, string) {}})
			if err == nil {
				mu.Lock()
				started += len(insts)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if started != 2 {
		t.Fatalf("four concurrent requests of one started %d agents; the limit is 2", started)
	}
}
