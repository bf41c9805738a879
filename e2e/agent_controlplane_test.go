// Package e2e runs the real agent against the real control plane over
// loopback gRPC, with a real Badger directory: only the GPUs are simulated.
package e2e

import (
	"context"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent"
	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

type fleet struct {
	t      *testing.T
	target rpcclient.Target
	ops    controlplanev1.ControlPlaneServiceClient
	sims   map[string]*simnvml.Backend
	// agentOptions, when set, adds to the options of the agents started
	// from then on.
	agentOptions func(*agent.Options)
}

func startControlPlane(t *testing.T, tweak ...func(*controlplane.Config)) *fleet {
	t.Helper()
	cp := cptest.Start(t, cptest.Options{Config: func(cfg *controlplane.Config) {
		cfg.HeartbeatInterval = controlplane.Duration{Duration: 200 * time.Millisecond}
		cfg.HealthReportInterval = controlplane.Duration{Duration: 500 * time.Millisecond}
		cfg.StaleAfter = controlplane.Duration{Duration: 2 * time.Second}
		cfg.OfflineAfter = controlplane.Duration{Duration: 5 * time.Second}
		cfg.CommandPollTimeout = controlplane.Duration{Duration: 2 * time.Second}
		for _, fn := range tweak {
			fn(cfg)
		}
	}})
	return &fleet{t: t, target: cp.Target(), ops: cp.Ops, sims: map[string]*simnvml.Backend{}}
}

// addNode runs a real agent with simulated GPUs in this process.
func (f *fleet) addNode(id string, faults ...string) {
	f.t.Helper()
	f.startNode(id, "", faults...)
}

// simNode is a simulated node: its GPUs, kernel log and boot, and the real
// agent that runs on them.
type simNode struct {
	sim  *simnvml.Backend
	stop func()
}

// startNode runs a real agent on a simulated node whose boot is kept in
// stateDir (none when empty), as navarch-agent --simulate does: the node's
// kernel log, GPU resets and reboots are the simulator's.
func (f *fleet) startNode(id, stateDir string, faults ...string) *simNode {
	f.t.Helper()
	var specs []faultspec.Spec
	for _, s := range faults {
		spec, err := faultspec.Parse(s)
		if err != nil {
			f.t.Fatal(err)
		}
		specs = append(specs, spec)
	}
	sim := simnvml.New(simnvml.Options{GPUs: 4, Faults: specs, Idle: true, NodeID: id, StateDir: stateDir})
	f.sims[id] = sim
	conn, err := rpcclient.Dial(f.target)
	if err != nil {
		f.t.Fatal(err)
	}
	hooks := sim.Hooks(slog.New(slog.DiscardHandler))
	o := agent.Options{
		NodeID: id, BootID: sim.BootID(), Simulated: true, Conn: conn, NVML: sim, PollInterval: 100 * time.Millisecond,
		KernelLog: hooks.KernelLog, KernelBoot: hooks.KernelBoot, ResetGPU: hooks.ResetGPU, Reboot: hooks.Reboot,
	}
	if f.agentOptions != nil {
		f.agentOptions(&o)
	}
	a, err := agent.New(o)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	n := &simNode{sim: sim, stop: func() {
		once.Do(func() {
			cancel()
			<-done
			_ = conn.Close()
			sim.Stop()
		})
	}}
	f.t.Cleanup(n.stop)
	return n
}

func (f *fleet) node(id string) *controlplanev1.GetNodeResponse {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: id})
	if err != nil {
		return nil
	}
	return resp
}

// waitFor gives real agent processes time on a busy machine.
func (f *fleet) waitFor(what string, cond func() bool) {
	f.t.Helper()
	testutil.EventuallyWithin(f.t, 30*time.Second, what, cond)
}

func TestXID79CordonsXID13IsRecorded(t *testing.T) {
	f := startControlPlane(t)
	f.addNode("node-a", "xid=79@gpu2+1s")
	f.addNode("node-b", "xid=13@gpu0+1s")
	f.addNode("node-c")

	f.waitFor("node-a UNHEALTHY and cordoned, its agent acknowledging", func() bool {
		d := f.node("node-a")
		if d == nil || d.GetNode().GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY || d.GetNode().GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED {
			return false
		}
		return len(d.GetCommands()) > 0 && d.GetCommands()[0].GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
	})
	a := f.node("node-a")
	if !strings.Contains(a.GetNode().GetHealthCause(), "gpu2") || a.GetNode().GetRemedy() != fleetv1.Remedy_REMEDY_REBOOT_NODE {
		t.Fatalf("node-a cause %q remedy %s", a.GetNode().GetHealthCause(), a.GetNode().GetRemedy())
	}

	f.waitFor("node-b's XID 13 recorded", func() bool {
		d := f.node("node-b")
		for _, e := range d.GetEvents() {
			if e.GetXid() == 13 {
				return true
			}
		}
		return false
	})
	b := f.node("node-b")
	if b.GetNode().GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY || b.GetNode().GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE {
		t.Fatalf("node-b after XID 13: %s %s", b.GetNode().GetHealth(), b.GetNode().GetLifecycle())
	}
	if c := f.node("node-c"); c.GetNode().GetReachability() != fleetv1.Reachability_REACHABILITY_ONLINE || len(c.GetNode().GetSamples()) != 4 {
		t.Fatalf("node-c: %s, %d samples", c.GetNode().GetReachability(), len(c.GetNode().GetSamples()))
	}
}

func TestDrainCompletes(t *testing.T) {
	f := startControlPlane(t)
	f.addNode("node-d")
	f.waitFor("node-d online", func() bool {
		d := f.node("node-d")
		return d != nil && d.GetNode().GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
	})
	job := exec.Command("sleep", "60")
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { _ = job.Wait(); close(reaped) }()
	defer func() { _ = job.Process.Kill(); <-reaped }()
	f.sims["node-d"].Device(1).AttachProcess(uint32(job.Process.Pid))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := f.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "node-d", Reason: "kernel upgrade", Deadline: timestamppb.New(time.Now().Add(time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetNode().GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING {
		t.Fatalf("lifecycle %s", resp.GetNode().GetLifecycle())
	}
	f.waitFor("drain acknowledged", func() bool {
		return f.node("node-d").GetCommands()[0].GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED
	})
	time.Sleep(500 * time.Millisecond)
	if got := f.node("node-d").GetNode().GetLifecycle(); got != fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING {
		t.Fatalf("drained with a job running: %s", got)
	}
	_ = job.Process.Kill()
	<-reaped
	f.waitFor("DRAINED", func() bool {
		return f.node("node-d").GetNode().GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED
	})
	d := f.node("node-d")
	if d.GetCommands()[0].GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || !strings.Contains(d.GetNode().GetLifecycleReason(), "no GPU processes left") {
		t.Fatalf("drain ended %s: %q", d.GetCommands()[0].GetStatus(), d.GetNode().GetLifecycleReason())
	}
}

func TestForcedDrainKillsAtDeadline(t *testing.T) {
	f := startControlPlane(t)
	f.addNode("node-e")
	f.waitFor("node-e registered", func() bool { return f.node("node-e") != nil })
	job := exec.Command("sleep", "60")
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() { _ = job.Wait(); close(reaped) }()
	defer func() { _ = job.Process.Kill(); <-reaped }()
	f.sims["node-e"].Device(0).AttachProcess(uint32(job.Process.Pid))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "node-e", Deadline: timestamppb.New(time.Now().Add(time.Second)), Force: true}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("DRAINED", func() bool {
		return f.node("node-e").GetNode().GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED
	})
	cmd := f.node("node-e").GetCommands()[0]
	if len(cmd.GetSignalledPids()) != 1 || cmd.GetSignalledPids()[0] != uint32(job.Process.Pid) {
		t.Fatalf("signalled %v, want [%d]", cmd.GetSignalledPids(), job.Process.Pid)
	}
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Fatal("the job survived a forced drain")
	}
}

// TestHeartbeatDeliveredCommands: with command_delivery heartbeat the agent
// holds no call open, and a cordon still reaches it within a heartbeat.
func TestHeartbeatDeliveredCommands(t *testing.T) {
	f := startControlPlane(t, func(c *controlplane.Config) { c.CommandDelivery = "heartbeat" })
	f.addNode("node-h")
	f.waitFor("node-h registered", func() bool { return f.node("node-h") != nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "node-h"}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the agent carried out the cordon", func() bool {
		cmds := f.node("node-h").GetCommands()
		return len(cmds) > 0 && cmds[0].GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
	})
}
