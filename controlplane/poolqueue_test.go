package controlplane_test

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/provider/providertest"
	"github.com/navarch/navarch/internal/slurmtest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestPoolScalesOnSlurmQueue: a pool that scales on its partition's queue
// grows by the nodes real Slurm says pending jobs wait for, and says so.
func TestPoolScalesOnSlurmQueue(t *testing.T) {
	c := slurmtest.Start(t)
	clock := clockwork.NewFakeClockAt(time.Now())
	p := &providertest.Recorder{}
	h := newHarness(t, withFakeClock(clock), withProviders(p), withConfig(func(cfg *controlplane.Config) {
		cfg.Slurm.Conf = c.Conf()
	}))
	ctx := ctxT(t)
	spec := &fleetv1.PoolSpec{
		Providers: []string{"test"}, Min: 1, Max: 3,
		Autoscaling: &fleetv1.Autoscaling{Queue: &fleetv1.QueueScaling{Partition: slurmtest.Partition}},
	}
	if _, err := h.ops.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: "hpc", Spec: spec}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	if w := h.pool("hpc").GetWanted(); w != 1 {
		t.Fatalf("wanted %d with an empty queue", w)
	}
	// One job holds the cluster's only node; the next waits for it.
	running := c.Sbatch(t, "--exclusive", slurmtest.SleepScript(120))
	testutil.EventuallyWithin(t, 30*time.Second, "job "+running+" RUNNING", func() bool { return c.JobState(t, running) == "RUNNING" })
	c.Sbatch(t, slurmtest.SleepScript(60))
	grown := func() bool { h.pass(); return h.pool("hpc").GetWanted() == 2 }
	for deadline := time.Now().Add(30 * time.Second); !grown(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pool did not grow for the waiting job; decisions %v; the queue:\n%s", h.pool("hpc").GetDecisions(),
				c.Run(t, "squeue", "--array", "--noconvert", "--Format=JobID:0|,Partition:0|,State:0|,NumNodes:0|,EligibleTime:0|,Dependency:0|,Reason:0"))
		}
	}
	if !hasDecision(h.pool("hpc"), fleetv1.PoolAction_POOL_ACTION_SCALE, "pending job") {
		t.Fatalf("decisions %v", h.pool("hpc").GetDecisions())
	}
	if got := h.poolNodes("hpc")[provisioning]; len(got) != 2 {
		t.Fatalf("pool nodes %v", h.poolNodes("hpc"))
	}
}
