package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/agent/slurm"
	"github.com/navarch/navarch/internal/display"
	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// fakeSlurm is a scheduler in memory, behaving as Slurm does for one
// node: a drain holds until the node's jobs end, a resume refuses a drain
// someone else set. The agent's side of real Slurm is tested against real
// daemons in agent/slurm and e2e/.
type fakeSlurm struct {
	mu     sync.Mutex
	drain  bool
	reason string
	jobs   []slurm.Job
	down   error // every call fails with it while set
	calls  []string
}

func (f *fakeSlurm) NodeName() string { return "gpu1" }

func (f *fakeSlurm) call(name string) error {
	f.calls = append(f.calls, name)
	return f.down
}

// node is the node as Slurm shows it: as Slurm does, a suspended job does
// not count, and the node shows IDLE (and DRAINED) while one holds it.
func (f *fakeSlurm) node() slurm.Node {
	n := slurm.Node{State: "IDLE", Reason: f.reason, Drain: f.drain, Ours: f.drain && strings.HasPrefix(f.reason, slurm.ReasonPrefix)}
	running := slices.ContainsFunc(f.jobs, func(j slurm.Job) bool { return j.State == "RUNNING" })
	if running {
		n.State = "ALLOCATED"
	}
	if f.drain {
		n.State += "+DRAIN"
		n.Drained = !running
	}
	return n
}

func (f *fakeSlurm) Node(context.Context) (slurm.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("node"); err != nil {
		return slurm.Node{}, err
	}
	return f.node(), nil
}

func (f *fakeSlurm) Drain(_ context.Context, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("drain"); err != nil {
		return err
	}
	f.drain, f.reason = true, slurm.ReasonPrefix+reason
	return nil
}

func (f *fakeSlurm) Resume(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("resume"); err != nil {
		return err
	}
	if f.drain && !f.node().Ours {
		return fmt.Errorf("drained by hand: %w", slurm.ErrNotOurs)
	}
	f.drain, f.reason = false, ""
	return nil
}

func (f *fakeSlurm) Jobs(context.Context) ([]slurm.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("jobs"); err != nil {
		return nil, err
	}
	return append([]slurm.Job(nil), f.jobs...), nil
}

func (f *fakeSlurm) Cancel(context.Context) ([]slurm.Job, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.call("cancel"); err != nil {
		return nil, err
	}
	gone := f.jobs
	f.jobs = nil
	return gone, nil
}

func (f *fakeSlurm) set(fn func(*fakeSlurm)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeSlurm) state() slurm.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.node()
}

func (f *fakeSlurm) called(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c == name {
			return true
		}
	}
	return false
}

func withScheduler(s Scheduler) func(*Options) {
	return func(o *Options) {
		o.Scheduler = s
		o.SchedulerInterval = 100 * time.Millisecond
	}
}

// lastScheduler is the scheduler state of the latest report that had one.
func (f *fakeCP) lastScheduler() *fleetv1.SchedulerState {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.reports) - 1; i >= 0; i-- {
		if s := f.reports[i].GetScheduler(); s != nil {
			return s
		}
	}
	return nil
}

func command(id string, typ fleetv1.CommandType, reason string) *fleetv1.Command {
	return &fleetv1.Command{Id: id, NodeId: "node-a", Type: typ, Reason: reason}
}

// TestCordonAndUncordonTellSlurm: a cordon drains the Slurm node with
// Navarch's reason, the report carries Slurm's state at once, and an
// uncordon resumes it.
func TestCordonAndUncordonTellSlurm(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{}
	startAgent(t, cp, simnvml.Options{}, withScheduler(s))
	testutil.Eventually(t, "Slurm's state reported", func() bool { return cp.lastScheduler().GetState() == "IDLE" })

	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED)
	cp.commands <- command("c1", fleetv1.CommandType_COMMAND_TYPE_CORDON, "xid 79: fell off the bus")
	testutil.Eventually(t, "cordon result", func() bool { return cp.result("c1", true) != nil })
	res := cp.result("c1", true)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || !strings.Contains(res.GetMessage(), "Slurm node gpu1 drained") {
		t.Fatalf("cordon result %v", res)
	}
	if n := s.state(); !n.Drain || n.Reason != slurm.ReasonPrefix+"xid 79: fell off the bus" {
		t.Fatalf("Slurm node after the cordon: %+v", n)
	}
	testutil.Eventually(t, "the drain reported", func() bool {
		st := cp.lastScheduler()
		return st.GetDrain() && st.GetByNavarch() && st.GetState() == "IDLE+DRAIN" && st.GetNodeName() == "gpu1"
	})

	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE)
	cp.commands <- command("c2", fleetv1.CommandType_COMMAND_TYPE_UNCORDON, "")
	testutil.Eventually(t, "uncordon result", func() bool { return cp.result("c2", true) != nil })
	if res := cp.result("c2", true); !strings.Contains(res.GetMessage(), "Slurm node gpu1 resumed") {
		t.Fatalf("uncordon result %v", res)
	}
	if s.state().Drain {
		t.Fatal("the Slurm node is still drained after the uncordon")
	}
}

// TestNeverResumesADrainSetByHand: a node someone drained in Slurm shows
// as such; a cordon keeps their reason and an uncordon leaves it drained,
// saying why.
func TestNeverResumesADrainSetByHand(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{drain: true, reason: "fan noise"}
	startAgent(t, cp, simnvml.Options{}, withScheduler(s))
	testutil.Eventually(t, "the hand drain reported", func() bool {
		st := cp.lastScheduler()
		return st.GetDrain() && !st.GetByNavarch() && st.GetReason() == "fan noise"
	})
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED)
	cp.commands <- command("c1", fleetv1.CommandType_COMMAND_TYPE_CORDON, "xid 48")
	testutil.Eventually(t, "cordon result", func() bool { return cp.result("c1", true) != nil })
	if res := cp.result("c1", true); !strings.Contains(res.GetMessage(), "already drained outside Navarch (reason: fan noise)") {
		t.Fatalf("cordon result %v", res)
	}
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE)
	cp.commands <- command("c2", fleetv1.CommandType_COMMAND_TYPE_UNCORDON, "")
	testutil.Eventually(t, "uncordon result", func() bool { return cp.result("c2", true) != nil })
	if res := cp.result("c2", true); res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED ||
		!strings.Contains(res.GetMessage(), "left drained: it was drained outside Navarch (reason: fan noise)") {
		t.Fatalf("uncordon result %v", res)
	}
	time.Sleep(300 * time.Millisecond) // a few scheduler loops
	if n := s.state(); !n.Drain || n.Reason != "fan noise" || s.called("resume") {
		t.Fatalf("a hand drain was touched: %+v", n)
	}
}

// TestSlurmDownThenBack: a cordon while Slurm cannot be reached fails,
// saying so, and the drain is set as soon as Slurm answers again.
func TestSlurmDownThenBack(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{down: errors.New("scontrol: slurm_load_node error: Unable to contact slurm controller")}
	startAgent(t, cp, simnvml.Options{}, withScheduler(s))
	testutil.Eventually(t, "the error reported", func() bool {
		return strings.Contains(cp.lastScheduler().GetError(), "Unable to contact slurm controller")
	})
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED)
	cp.commands <- command("c1", fleetv1.CommandType_COMMAND_TYPE_CORDON, "xid 79")
	testutil.Eventually(t, "cordon result", func() bool { return cp.result("c1", true) != nil })
	if res := cp.result("c1", true); res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED || !strings.Contains(res.GetMessage(), "Slurm not told yet") {
		t.Fatalf("cordon result %v", res)
	}
	s.set(func(f *fakeSlurm) { f.down = nil })
	testutil.Eventually(t, "the drain set once Slurm is back", func() bool { return s.state().Drain })
	testutil.Eventually(t, "the drain reported, error cleared", func() bool {
		st := cp.lastScheduler()
		return st.GetDrain() && st.GetError() == ""
	})
	if n := s.state(); n.Reason != slurm.ReasonPrefix+"xid 79" {
		t.Fatalf("the drain set later carries %q, want the cordon's reason", n.Reason)
	}
}

// TestDrainWaitsForSlurmJobs: with no GPU process left, a drain still
// waits until Slurm shows no job on the node (DRAINED).
func TestDrainWaitsForSlurmJobs(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{jobs: []slurm.Job{{ID: "17", State: "RUNNING"}}}
	startAgent(t, cp, simnvml.Options{}, withScheduler(s))
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
	cp.commands <- drainCommand("d1", time.Minute, false)
	testutil.Eventually(t, "ack", func() bool { return cp.result("d1", false) != nil })
	if !s.state().Drain {
		t.Fatal("the drain did not drain the Slurm node")
	}
	time.Sleep(500 * time.Millisecond)
	if r := cp.result("d1", true); r != nil {
		t.Fatalf("drain finished with a Slurm job still running: %v", r)
	}
	testutil.Eventually(t, "the job reported", func() bool { return cp.lastScheduler().GetJobs() == 1 })
	s.set(func(f *fakeSlurm) { f.jobs = nil })
	testutil.Eventually(t, "drain done", func() bool { return cp.result("d1", true) != nil })
	if res := cp.result("d1", true); res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED ||
		!strings.Contains(res.GetMessage(), "Slurm node gpu1 is DRAINED") {
		t.Fatalf("drain result %v", res)
	}
	if s.called("cancel") {
		t.Fatal("a drain without force cancelled jobs")
	}
}

// TestForcedDrainCancelsSlurmJobsFirst: at a forced drain's deadline the
// node's Slurm jobs are cancelled before any GPU process is signalled.
func TestForcedDrainCancelsSlurmJobsFirst(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{jobs: []slurm.Job{{ID: "17", State: "RUNNING"}, {ID: "18", State: "RUNNING"}}}
	var order []string
	var mu sync.Mutex
	job := sleeper(t, false)
	r := startAgent(t, cp, simnvml.Options{}, withScheduler(s), func(o *Options) {
		o.Signal = func(pid int, sig syscall.Signal) error {
			mu.Lock()
			if s.called("cancel") {
				order = append(order, "signal after cancel")
			} else {
				order = append(order, "signal before cancel")
			}
			mu.Unlock()
			return syscall.Kill(pid, sig)
		}
	})
	r.sim.Device(0).AttachProcess(job.pid())
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
	cp.commands <- drainCommand("d1", 200*time.Millisecond, true)
	testutil.Eventually(t, "forced drain done", func() bool { return cp.result("d1", true) != nil })
	res := cp.result("d1", true)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || !strings.Contains(res.GetMessage(), "cancelled Slurm jobs 17, 18") ||
		!strings.Contains(res.GetMessage(), "is DRAINED") {
		t.Fatalf("forced drain result %v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) == 0 || order[0] != "signal after cancel" {
		t.Fatalf("signals: %v, want them after the jobs were cancelled", order)
	}
}

// TestForcedDrainDrainsSlurmBeforeCancelling: Slurm was down when the
// drain began and is back before its deadline; the node is drained in
// Slurm before its jobs are cancelled, so that nothing new lands on it.
func TestForcedDrainDrainsSlurmBeforeCancelling(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{jobs: []slurm.Job{{ID: "17", State: "RUNNING"}}, down: errors.New("Unable to contact slurm controller")}
	startAgent(t, cp, simnvml.Options{}, func(o *Options) {
		withScheduler(s)(o)
		o.SchedulerInterval = time.Hour // only the drain itself tells Slurm
	})
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
	cp.commands <- drainCommand("d1", 600*time.Millisecond, true)
	testutil.Eventually(t, "ack", func() bool { return cp.result("d1", false) != nil })
	time.Sleep(200 * time.Millisecond)
	s.set(func(f *fakeSlurm) { f.down = nil; f.calls = nil })
	testutil.Eventually(t, "forced drain done", func() bool { return cp.result("d1", true) != nil })
	if res := cp.result("d1", true); !strings.Contains(res.GetMessage(), "cancelled Slurm jobs 17") {
		t.Fatalf("forced drain result %v", res)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	drain, cancel := slices.Index(s.calls, "drain"), slices.Index(s.calls, "cancel")
	if drain < 0 || cancel < drain {
		t.Fatalf("Slurm calls %v: want the drain before the cancel", s.calls)
	}
}

// TestDrainNeverEndsOnAStaleRead: a drain ends only on a read of Slurm
// made for it; while Slurm cannot be read, what it said before (DRAINED,
// from an earlier drain) does not count.
func TestDrainNeverEndsOnAStaleRead(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{}
	startAgent(t, cp, simnvml.Options{}, withScheduler(s))
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED)
	cp.commands <- command("c1", fleetv1.CommandType_COMMAND_TYPE_CORDON, "xid 79")
	testutil.Eventually(t, "DRAINED reported", func() bool { return cp.lastScheduler().GetDrained() })

	s.set(func(f *fakeSlurm) {
		f.jobs = []slurm.Job{{ID: "18", State: "RUNNING"}}
		f.down = errors.New("Unable to contact slurm controller")
	})
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
	cp.commands <- drainCommand("d1", time.Minute, false)
	testutil.Eventually(t, "the error reported", func() bool { return cp.lastScheduler().GetError() != "" })
	time.Sleep(500 * time.Millisecond)
	if r := cp.result("d1", true); r != nil {
		t.Fatalf("the drain ended while Slurm could not be read: %v", r)
	}
	s.set(func(f *fakeSlurm) { f.down = nil; f.jobs = nil })
	testutil.Eventually(t, "drain done", func() bool { return cp.result("d1", true) != nil })
}

// TestTerminateDrainsSlurmFirst: an agent told to terminate drains its
// node in Slurm before it stops.
func TestTerminateDrainsSlurmFirst(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{}
	r := startAgent(t, cp, simnvml.Options{}, withScheduler(s))
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING)
	cp.commands <- command("t1", fleetv1.CommandType_COMMAND_TYPE_TERMINATE, "scale down")
	select {
	case err := <-r.done:
		r.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop")
	}
	if n := s.state(); !n.Drain || n.Reason != slurm.ReasonPrefix+"scale down" {
		t.Fatalf("the agent stopped with Slurm showing %+v", n)
	}
	if res := cp.result("t1", true); !strings.Contains(res.GetMessage(), "agent stopping; Slurm node gpu1 drained") {
		t.Fatalf("terminate result %v", res)
	}
}

// TestSlurmTextIsReportedClean: a reason someone set by hand in Slurm
// goes to the control plane as one clean line within the API's bounds.
func TestSlurmTextIsReportedClean(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{drain: true, reason: "fan\tnoise\x07 " + strings.Repeat("x", 2000)}
	startAgent(t, cp, simnvml.Options{}, withScheduler(s))
	testutil.Eventually(t, "the reason reported", func() bool { return cp.lastScheduler().GetReason() != "" })
	r := cp.lastScheduler().GetReason()
	if !strings.HasPrefix(r, "fan noise? xxx") || len(r) > maxSchedulerReason || !strings.HasSuffix(r, "…") {
		t.Fatalf("reported reason %q (%d bytes)", display.Cut(r, 40, "…"), len(r))
	}
}

// TestSuspendedJobHoldsADrain: Slurm calls a drained node with a
// suspended job DRAINED; the drain waits for the job all the same.
func TestSuspendedJobHoldsADrain(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{jobs: []slurm.Job{{ID: "19", State: "SUSPENDED"}}}
	startAgent(t, cp, simnvml.Options{}, withScheduler(s))
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
	cp.commands <- drainCommand("d1", time.Minute, false)
	testutil.Eventually(t, "the job reported", func() bool {
		st := cp.lastScheduler()
		return st.GetDrain() && st.GetJobs() == 1 && !st.GetDrained()
	})
	time.Sleep(300 * time.Millisecond)
	if r := cp.result("d1", true); r != nil {
		t.Fatalf("the drain ended with a suspended job on the node: %v", r)
	}
	s.set(func(f *fakeSlurm) { f.jobs = nil })
	testutil.Eventually(t, "drain done", func() bool { return cp.result("d1", true) != nil })
}

// TestUncordonReasonIsNoDrainReason: an uncordon's reason never becomes
// the reason of a drain set later.
func TestUncordonReasonIsNoDrainReason(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{}
	startAgent(t, cp, simnvml.Options{}, withScheduler(s))
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED)
	cp.commands <- command("c1", fleetv1.CommandType_COMMAND_TYPE_CORDON, "xid 79")
	testutil.Eventually(t, "cordon result", func() bool { return cp.result("c1", true) != nil })
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE)
	cp.commands <- command("c2", fleetv1.CommandType_COMMAND_TYPE_UNCORDON, "fixed by hand")
	testutil.Eventually(t, "uncordon result", func() bool { return cp.result("c2", true) != nil })
	// A cordon heard from a heartbeat before its command arrives.
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED)
	testutil.Eventually(t, "drained again", func() bool { return s.state().Drain })
	if r := s.state().Reason; strings.Contains(r, "fixed by hand") {
		t.Fatalf("the drain carries the uncordon's reason: %q", r)
	}
}

// TestForcedDrainStopsNothingOnceUncordoned: a forced drain whose node is
// uncordoned before its deadline (heard from a heartbeat ahead of the
// command) cancels no Slurm job and signals no GPU process: the drain is
// over.
func TestForcedDrainStopsNothingOnceUncordoned(t *testing.T) {
	cp := newFakeCP(t)
	s := &fakeSlurm{drain: true, reason: "fan noise", jobs: []slurm.Job{{ID: "17", State: "RUNNING"}}}
	var mu sync.Mutex
	var signalled []int
	r := startAgent(t, cp, simnvml.Options{}, withScheduler(s), func(o *Options) {
		o.Signal = func(pid int, sig syscall.Signal) error {
			mu.Lock()
			signalled = append(signalled, pid)
			mu.Unlock()
			return syscall.Kill(pid, sig)
		}
	})
	job := sleeper(t, false)
	r.sim.Device(0).AttachProcess(job.pid())
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
	cp.commands <- drainCommand("d1", 600*time.Millisecond, true)
	testutil.Eventually(t, "ack", func() bool { return cp.result("d1", false) != nil })
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE)
	time.Sleep(2 * time.Second) // past the deadline and the kill grace
	if res := cp.result("d1", true); res != nil {
		t.Fatalf("an abandoned drain reported %v", res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(signalled) > 0 || s.called("cancel") {
		t.Fatalf("signalled %v, Slurm calls %v: the node was no longer draining", signalled, s.calls)
	}
}
