package slurm

import (
	"context"
	"errors"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/slurmtest"
	"github.com/navarch/navarch/internal/testutil"
)

// The tests below run against a real Slurm cluster each, started by
// slurmtest, in parallel.

// slurmLimit is how long a test waits on Slurm for a job or a state.
const slurmLimit = 20 * time.Second

// newClient is a Client for the cluster's node, named by default as the
// agent names it.
func newClient(t *testing.T, c *slurmtest.Cluster) *Client {
	t.Helper()
	cl, err := New(Options{Env: c.Env()})
	if err != nil {
		t.Fatal(err)
	}
	if cl.NodeName() != c.Node() {
		t.Fatalf("NodeName = %q, want the cluster's %q", cl.NodeName(), c.Node())
	}
	return cl
}

func node(t *testing.T, cl *Client) Node {
	t.Helper()
	n, err := cl.Node(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// sinfoState is Slurm's own word for the node's state ("draining",
// "drained", "mixed"), to check Drained against.
func sinfoState(t *testing.T, c *slurmtest.Cluster) string {
	t.Helper()
	return strings.TrimSpace(c.Run(t, "sinfo", "--noheader", "--Node", "--nodes="+c.Node(), "--format=%T"))
}

func waitJob(t *testing.T, c *slurmtest.Cluster, id, state string) {
	t.Helper()
	testutil.EventuallyWithin(t, slurmLimit, "job "+id+" "+state, func() bool {
		return c.JobState(t, id) == state
	})
}

// TestDrainedOnlyWhenJobsEnd: a drain with a job running is draining, not
// drained, until the job ends, as Slurm itself says; the reason survives
// spaces, quotes and '='.
func TestDrainedOnlyWhenJobsEnd(t *testing.T) {
	t.Parallel()
	c := slurmtest.Start(t)
	cl := newClient(t, c)
	ctx := context.Background()
	id := c.Submit(t, 3)
	waitJob(t, c, id, "RUNNING")

	if err := cl.Drain(ctx, `xid 79 on gpu 0: "fell off the bus" state=lost`); err != nil {
		t.Fatal(err)
	}
	n := node(t, cl)
	wantReason := `navarch: xid 79 on gpu 0: "fell off the bus" state=lost`
	if n.State != "MIXED+DRAIN" || !n.Drain || n.Drained || !n.Ours || n.Reason != wantReason {
		t.Errorf("with a job running Node = %+v, want MIXED+DRAIN, draining, ours, reason %q", n, wantReason)
	}
	if got := sinfoState(t, c); got != "draining" {
		t.Errorf("sinfo says %q, want draining", got)
	}
	jobs, err := cl.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].ID != id || jobs[0].State != "RUNNING" {
		t.Errorf("Jobs = %+v, want job %s RUNNING", jobs, id)
	}

	testutil.EventuallyWithin(t, slurmLimit, "node drained", func() bool { return node(t, cl).Drained })
	n = node(t, cl)
	if n.State != "IDLE+DRAIN" || !n.Drain || !n.Ours || n.Reason != wantReason {
		t.Errorf("once the job ended Node = %+v, want IDLE+DRAIN, ours", n)
	}
	if got := sinfoState(t, c); got != "drained" {
		t.Errorf("sinfo says %q, want drained", got)
	}
	if got := c.JobState(t, id); got != "COMPLETED" {
		t.Errorf("the job is %s, want COMPLETED: a drain lets jobs finish", got)
	}
	if jobs, err := cl.Jobs(ctx); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs = %+v, %v; want none", jobs, err)
	}
}

// TestResumeOurDrain: Navarch resumes its own drain, the node takes jobs
// again, and resuming a node not drained changes nothing.
func TestResumeOurDrain(t *testing.T) {
	t.Parallel()
	c := slurmtest.Start(t)
	cl := newClient(t, c)
	ctx := context.Background()
	if err := cl.Drain(ctx, "maintenance"); err != nil {
		t.Fatal(err)
	}
	if n := node(t, cl); n.State != "IDLE+DRAIN" || !n.Drained || !n.Ours || n.Reason != "navarch: maintenance" {
		t.Fatalf("after Drain Node = %+v, want drained by Navarch", n)
	}
	if err := cl.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	// Slurm shows IDLE+NOT_RESPONDING until slurmd registers again.
	testutil.EventuallyWithin(t, slurmLimit, "node IDLE", func() bool { return node(t, cl).State == "IDLE" })
	if n := node(t, cl); n.Drain || n.Reason != "" {
		t.Errorf("after Resume Node = %+v, want no drain and no reason", n)
	}
	if err := cl.Resume(ctx); err != nil {
		t.Errorf("Resume of a node not drained: %v", err)
	}
	id := c.Submit(t, 1)
	waitJob(t, c, id, "COMPLETED")
}

// TestDrainByHandIsLeftAlone: a drain an operator set in Slurm is not
// Navarch's: Resume refuses it, naming who set it and why, and Drain
// leaves its reason.
func TestDrainByHandIsLeftAlone(t *testing.T) {
	t.Parallel()
	c := slurmtest.Start(t)
	cl := newClient(t, c)
	ctx := context.Background()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	c.Run(t, "scontrol", "update", "nodename="+c.Node(), "state=drain", `reason="fan"`)

	n := node(t, cl)
	if !n.Drain || !n.Drained || n.Ours || n.Reason != "fan" || n.ReasonUser != me.Username || time.Since(n.ReasonTime) > time.Minute {
		t.Errorf("Node = %+v, want drained by %s just now for \"fan\", not ours", n, me.Username)
	}
	err = cl.Resume(ctx)
	if !errors.Is(err, ErrNotOurs) {
		t.Fatalf("Resume = %v, want ErrNotOurs", err)
	}
	for _, want := range []string{c.Node(), "by " + me.Username, `"fan"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Resume error %q does not say %q", err, want)
		}
	}
	if err := cl.Drain(ctx, "xid 79"); err != nil {
		t.Fatal(err)
	}
	if n := node(t, cl); n.State != "IDLE+DRAIN" || n.Ours || n.Reason != "fan" {
		t.Errorf("after Resume and Drain Node = %+v, want still drained for \"fan\"", n)
	}
}

// TestUnknownNode: every method says clearly that Slurm has no such node.
func TestUnknownNode(t *testing.T) {
	t.Parallel()
	c := slurmtest.Start(t)
	cl, err := New(Options{NodeName: "nosuch", Env: c.Env()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		name    string
		call    func() error
		wantErr string
	}{
		{"node", func() error { _, err := cl.Node(ctx); return err }, "Node nosuch not found"},
		{"drain", func() error { return cl.Drain(ctx, "x") }, "Node nosuch not found"},
		{"resume", func() error { return cl.Resume(ctx) }, "Node nosuch not found"},
		{"jobs", func() error { _, err := cl.Jobs(ctx); return err }, "Invalid node name nosuch"},
		{"cancel", func() error { _, err := cl.Cancel(ctx); return err }, "Invalid node name nosuch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
	if got := c.NodeState(t); got != "IDLE" {
		t.Errorf("the cluster's own node is %s, want IDLE", got)
	}
}
