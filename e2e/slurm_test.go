package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent"
	"github.com/navarch/navarch/agent/slurm"
	"github.com/navarch/navarch/internal/slurmtest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestSlurmFollowsNavarch runs the real control plane, a real agent on a
// simulated node and a real Slurm cluster (munged, slurmctld, slurmd) whose
// node the agent speaks for: a drain through Navarch drains the node in
// Slurm and ends DRAINED only after the Slurm job ended; an uncordon
// resumes it; a forced drain cancels the job; a drain set by hand in Slurm
// shows as one, and Navarch leaves it alone.
func TestSlurmFollowsNavarch(t *testing.T) {
	cluster := slurmtest.Start(t)
	f := startControlPlane(t)
	client, err := slurm.New(slurm.Options{NodeName: cluster.Node(), Env: cluster.Env()})
	if err != nil {
		t.Fatal(err)
	}
	f.agentOptions = func(o *agent.Options) {
		o.Scheduler = client
		o.SchedulerInterval = 500 * time.Millisecond
	}
	const id = "gpu-s1"
	f.addNode(id)
	sched := func() *fleetv1.SchedulerState { return f.node(id).GetNode().GetScheduler() }
	lifecycle := func() fleetv1.LifecycleState { return f.node(id).GetNode().GetLifecycle() }
	f.waitFor("Slurm's state of the node reported", func() bool {
		s := sched()
		return s.GetScheduler() == "slurm" && s.GetNodeName() == cluster.Node() && s.GetState() == "IDLE"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A drain waits for the Slurm job, though no GPU process runs.
	job := cluster.Submit(t, 10)
	f.waitFor("the job running", func() bool { return cluster.JobState(t, job) == "RUNNING" })
	if _, err := f.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: id, Reason: "kernel upgrade", Deadline: timestamppb.New(time.Now().Add(2 * time.Minute))}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the node draining in Slurm", func() bool { return strings.HasSuffix(cluster.NodeState(t), "+DRAIN") })
	f.waitFor("Slurm's drain reported", func() bool {
		s := sched()
		return s.GetDrain() && !s.GetDrained() && s.GetByNavarch() && s.GetJobs() == 1 && s.GetReason() == "navarch: kernel upgrade"
	})
	for cluster.JobState(t, job) == "RUNNING" {
		if l := lifecycle(); l != fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING {
			t.Fatalf("the node is %s while its Slurm job runs", l)
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.waitFor("DRAINED once the job ended", func() bool { return lifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED })
	if s := cluster.NodeState(t); s != "IDLE+DRAIN" {
		t.Fatalf("Slurm shows %s after the drain, want IDLE+DRAIN", s)
	}
	d := f.node(id)
	if !strings.Contains(d.GetNode().GetLifecycleReason(), "is DRAINED") || !d.GetNode().GetScheduler().GetDrained() {
		t.Fatalf("drained: %q, scheduler %v", d.GetNode().GetLifecycleReason(), d.GetNode().GetScheduler())
	}

	// An uncordon resumes it.
	if _, err := f.ops.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: id}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the node resumed in Slurm", func() bool { return !strings.Contains(cluster.NodeState(t), "DRAIN") })
	f.waitFor("the resume reported", func() bool { s := sched(); return !s.GetDrain() && s.GetReason() == "" })

	// A forced drain cancels the node's job at its deadline.
	job = cluster.Submit(t, 300)
	f.waitFor("the second job running", func() bool { return cluster.JobState(t, job) == "RUNNING" })
	if _, err := f.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: id, Reason: "replace GPU", Force: true, Deadline: timestamppb.New(time.Now().Add(time.Second))}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("DRAINED after the forced drain", func() bool { return lifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED })
	if s := cluster.JobState(t, job); s != "CANCELLED" {
		t.Fatalf("the job is %s after a forced drain, want CANCELLED", s)
	}
	if r := f.node(id).GetNode().GetLifecycleReason(); !strings.Contains(r, "cancelled Slurm jobs "+job) {
		t.Fatalf("the forced drain says %q, not which job it cancelled", r)
	}

	// A drain set by hand is shown as one and left alone.
	if _, err := f.ops.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: id}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("resumed again", func() bool { return !strings.Contains(cluster.NodeState(t), "DRAIN") })
	// Slurm takes any text for a reason; it reaches Navarch as one clean
	// line, and never costs the health reports it rides in.
	cluster.Run(t, "scontrol", "update", "nodename="+cluster.Node(), "state=drain", "reason=fan\tnoise")
	f.waitFor("the hand drain reported", func() bool {
		s := sched()
		return s.GetDrain() && !s.GetByNavarch() && s.GetReason() == "fan noise"
	})
	if _, err := f.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: id, Reason: "xid 79"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ops.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: id}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the uncordon carried out", func() bool {
		for _, c := range f.node(id).GetCommands() {
			if c.GetType() == fleetv1.CommandType_COMMAND_TYPE_UNCORDON && c.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
				return strings.Contains(c.GetMessage(), "left drained")
			}
		}
		return false
	})
	time.Sleep(time.Second) // a scheduler interval or two
	if s := cluster.NodeState(t); !strings.Contains(s, "DRAIN") {
		t.Fatalf("Navarch resumed a drain set by hand: Slurm shows %s", s)
	}
	if s := sched(); !s.GetDrain() || s.GetByNavarch() || s.GetReason() != "fan noise" {
		t.Fatalf("after Navarch's cordon and uncordon the hand drain reads %v", s)
	}
}
