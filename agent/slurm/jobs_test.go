package slurm

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/navarch/navarch/internal/slurmtest"
	"github.com/navarch/navarch/internal/testutil"
)

// TestCancelEndsJobs: Cancel cancels every job on the node, returns them,
// and Slurm ends them; with none left it does nothing.
func TestCancelEndsJobs(t *testing.T) {
	t.Parallel()
	c := slurmtest.Start(t)
	cl := newClient(t, c)
	ctx := context.Background()
	ids := []string{c.Submit(t, 120), c.Submit(t, 120)}
	for _, id := range ids {
		waitJob(t, c, id, "RUNNING")
	}
	if err := cl.Drain(ctx, "forced drain"); err != nil {
		t.Fatal(err)
	}

	cancelled, err := cl.Cancel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range cancelled {
		got = append(got, j.ID)
	}
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Errorf("Cancel returned jobs %v, want %v", got, ids)
	}
	for _, id := range ids {
		waitJob(t, c, id, "CANCELLED")
	}
	testutil.EventuallyWithin(t, slurmLimit, "node drained", func() bool { return node(t, cl).Drained })
	if jobs, err := cl.Jobs(ctx); err != nil || len(jobs) != 0 {
		t.Errorf("Jobs after Cancel = %+v, %v; want none", jobs, err)
	}
	if again, err := cl.Cancel(ctx); err != nil || len(again) != 0 {
		t.Errorf("Cancel with no jobs = %+v, %v; want nothing", again, err)
	}
}

// TestJobNamesCannotPassForJobs: a job whose name reads as another line of
// squeue's list cannot make the agent, which runs as root, list or cancel
// a job that is not on its node.
func TestJobNamesCannotPassForJobs(t *testing.T) {
	t.Parallel()
	c := slurmtest.Start(t)
	cl := newClient(t, c)
	ctx := context.Background()
	held := c.Sbatch(t, "--hold", "--job-name=held", slurmtest.SleepScript(120))
	running := c.Sbatch(t, "--job-name=train\n"+held+"|RUNNING", slurmtest.SleepScript(120))
	waitJob(t, c, running, "RUNNING")

	jobs, err := cl.Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].ID != running {
		t.Fatalf("Jobs = %+v, want job %s alone", jobs, running)
	}
	if err := cl.Drain(ctx, "forced drain"); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, running, "CANCELLED")
	if got := c.JobState(t, held); got != "PENDING" {
		t.Fatalf("the held job is %s, want PENDING: the agent cancelled a job not on its node", got)
	}
}

// TestCancelNeedsADrain: Cancel cancels nothing on a node Slurm may still
// place jobs on.
func TestCancelNeedsADrain(t *testing.T) {
	t.Parallel()
	c := slurmtest.Start(t)
	cl := newClient(t, c)
	id := c.Submit(t, 120)
	waitJob(t, c, id, "RUNNING")
	if jobs, err := cl.Cancel(context.Background()); err == nil || !strings.Contains(err.Error(), "is not drained") {
		t.Fatalf("Cancel on a node not drained = %+v, %v", jobs, err)
	}
	if got := c.JobState(t, id); got != "RUNNING" {
		t.Fatalf("the job is %s, want it left RUNNING", got)
	}
}

// TestSuspendedJobIsListed: Slurm shows a drained node with a suspended
// job IDLE+DRAIN, drained by its own word; Jobs still lists the job, which
// is what keeps the agent's drain waiting.
func TestSuspendedJobIsListed(t *testing.T) {
	t.Parallel()
	c := slurmtest.Start(t)
	cl := newClient(t, c)
	ctx := context.Background()
	id := c.Submit(t, 120)
	waitJob(t, c, id, "RUNNING")
	if err := cl.Drain(ctx, "maintenance"); err != nil {
		t.Fatal(err)
	}
	c.Run(t, "scontrol", "suspend", id)
	waitJob(t, c, id, "SUSPENDED")
	testutil.EventuallyWithin(t, slurmLimit, "Slurm calling the node drained", func() bool { return node(t, cl).Drained })
	jobs, err := cl.Jobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].ID != id || jobs[0].State != "SUSPENDED" {
		t.Fatalf("Jobs = %+v, %v; want job %s SUSPENDED", jobs, err, id)
	}
}
