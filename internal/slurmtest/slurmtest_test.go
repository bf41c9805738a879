package slurmtest

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/testutil"
)

// TestJobLifecycle: a submitted job runs on the node, which shows it, and
// is known as COMPLETED once it ends.
func TestJobLifecycle(t *testing.T) {
	t.Parallel()
	c := Start(t)
	id := c.Submit(t, 2)
	testutil.EventuallyWithin(t, 20*time.Second, "job "+id+" RUNNING", func() bool {
		return c.JobState(t, id) == "RUNNING"
	})
	if got := c.NodeState(t); got != "MIXED" {
		t.Errorf("node state with one job on it = %q, want MIXED", got)
	}
	testutil.EventuallyWithin(t, 20*time.Second, "job "+id+" COMPLETED", func() bool {
		return c.JobState(t, id) == "COMPLETED"
	})
	testutil.EventuallyWithin(t, 20*time.Second, "node IDLE again", func() bool {
		return c.NodeState(t) == "IDLE"
	})
}

// TestStartsAgainWhenAPortIsTaken: a port taken between being chosen and
// being bound (by a test running beside) costs another start on other
// ports, not the test.
func TestStartsAgainWhenAPortIsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	calls := 0
	choosePorts = func(n int) ([]int, error) {
		calls++
		ports, err := freePorts(n)
		if calls == 1 && err == nil {
			ports[1] = taken.Addr().(*net.TCPAddr).Port // slurmd's
		}
		return ports, err
	}
	defer func() { choosePorts = freePorts }()
	c := Start(t)
	if calls != 2 {
		t.Fatalf("ports chosen %d times, want 2", calls)
	}
	if got := c.NodeState(t); got != "IDLE" {
		t.Fatalf("node state %q after starting again, want IDLE", got)
	}
}

// TestClustersAreSeparate: two clusters run at once, each with its own
// configuration and jobs, and stopping one leaves nothing of it running
// while the other goes on.
func TestClustersAreSeparate(t *testing.T) {
	t.Parallel()
	kept := Start(t)
	var stopped *Cluster
	t.Run("stopped", func(t *testing.T) {
		stopped = Start(t)
		if stopped.Conf() == kept.Conf() {
			t.Fatalf("both clusters use %s", kept.Conf())
		}
		id := stopped.Submit(t, 60)
		testutil.EventuallyWithin(t, 20*time.Second, "job "+id+" RUNNING", func() bool {
			return stopped.JobState(t, id) == "RUNNING"
		})
		if out := kept.Run(t, "squeue", "--noheader", "--format=%i"); strings.TrimSpace(out) != "" {
			t.Errorf("the other cluster's queue shows jobs: %q", out)
		}
	})
	if pids := stopped.processes(); len(pids) > 0 {
		t.Errorf("processes of the stopped cluster still run: %v", pids)
	}
	if _, err := os.Stat(stopped.Conf()); !os.IsNotExist(err) {
		t.Errorf("the stopped cluster's folder is still there: %v", err)
	}
	if got := kept.NodeState(t); got != "IDLE" {
		t.Errorf("the other cluster's node = %q, want IDLE", got)
	}
	if len(kept.processes()) < 3 {
		t.Errorf("the other cluster runs %d processes, want its three daemons at least", len(kept.processes()))
	}
}
