package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/agent/slurm"
	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Scheduler is the workload scheduler beside the agent: Slurm, through
// agent/slurm. The agent makes the node's lifecycle the scheduler's: a
// cordon or drain drains the node there too, an uncordon resumes it (only
// a drain Navarch set), a drain ends when the scheduler has no job left
// on the node, and a forced drain cancels the node's jobs at the deadline
// before it signals GPU processes.
type Scheduler interface {
	// NodeName is the node's name in the scheduler.
	NodeName() string
	// Node reads the node's state in the scheduler.
	Node(ctx context.Context) (slurm.Node, error)
	// Drain stops the scheduler placing work on the node, for reason.
	Drain(ctx context.Context, reason string) error
	// Resume lets it place work again; it refuses (slurm.ErrNotOurs) a
	// drain Navarch did not set.
	Resume(ctx context.Context) error
	// Jobs lists the jobs that hold the node.
	Jobs(ctx context.Context) ([]slurm.Job, error)
	// Cancel cancels every job on the node and returns them.
	Cancel(ctx context.Context) ([]slurm.Job, error)
}

// schedulerName is what the agent calls its scheduler in reports and
// results; Slurm is the only one it works with.
const schedulerName = "slurm"

// drainCheckInterval bounds how often a drain asks the scheduler whether
// jobs are left, so that a mass drain does not flood its controller.
const drainCheckInterval = 5 * time.Second

// schedulerState is what the agent knows of the scheduler.
type schedulerState struct {
	// mu serialises syncs, so a command's and the loop's do not cross.
	mu sync.Mutex
	// reason is the last cordon or drain reason an operator or the policy
	// gave, which a drain the agent sets again carries.
	reason string

	// seenMu guards last.
	seenMu sync.Mutex
	// last is the state last read, reported with every full snapshot.
	last *fleetv1.SchedulerState

	// kick asks the loop to sync now; changed asks the report loop to
	// send the state now.
	kick, changed chan struct{}
}

func newSchedulerState() *schedulerState {
	return &schedulerState{kick: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// schedulerReport is the scheduler's state for a report; nil without a
// scheduler or before it was first read.
func (a *Agent) schedulerReport() *fleetv1.SchedulerState {
	if a.o.Scheduler == nil {
		return nil
	}
	a.sched.seenMu.Lock()
	defer a.sched.seenMu.Unlock()
	return a.sched.last
}

// schedulerChanged is the channel that says the state changed; nil (never
// ready) without a scheduler.
func (a *Agent) schedulerChanged() <-chan struct{} {
	if a.o.Scheduler == nil {
		return nil
	}
	return a.sched.changed
}

// seen records what was read, or why nothing could be (err, keeping what
// was read before), and wakes the report loop when it changed.
func (a *Agent) seen(n *slurm.Node, jobs int, err error) {
	a.sched.seenMu.Lock()
	prev := a.sched.last
	next := &fleetv1.SchedulerState{Scheduler: schedulerName, NodeName: a.o.Scheduler.NodeName()}
	if n != nil {
		next.State, next.Reason = n.State, n.Reason
		next.Drain, next.Drained, next.ByNavarch = n.Drain, n.Drained, n.Ours
		next.Jobs = uint32(jobs)
	} else if prev != nil {
		next = proto.CloneOf(prev)
	}
	next.Error = ""
	if err != nil {
		next.Error = err.Error()
	}
	a.sched.last = next
	a.sched.seenMu.Unlock()
	if !proto.Equal(prev, next) {
		if err != nil && (prev == nil || prev.GetError() == "") {
			a.log.Warn("cannot reach the scheduler", "scheduler", schedulerName, "err", err)
		}
		signal(a.sched.changed)
	}
}

// wantsDrain reports whether a node in lifecycle l takes no new work.
func wantsDrain(l fleetv1.LifecycleState) bool {
	switch l {
	case fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING,
		fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED, fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING:
		return true
	}
	return false
}

// syncScheduler brings the scheduler's drain in line with the node's
// lifecycle l: drained while the node takes no work, resumed when it is
// ACTIVE again if the drain was Navarch's. It says what it did, in words,
// for a command's result ("" when nothing was needed), and reports what
// the scheduler then shows.
func (a *Agent) syncScheduler(ctx context.Context, l fleetv1.LifecycleState) (string, error) {
	s := a.o.Scheduler
	a.sched.mu.Lock()
	defer a.sched.mu.Unlock()
	n, err := s.Node(ctx)
	if err != nil {
		a.seen(nil, 0, err)
		return "", err
	}
	var did string
	switch {
	case wantsDrain(l) && !n.Drain:
		reason := a.sched.reason
		if reason == "" {
			reason = "node is " + display.Lifecycle(l)
		}
		if err := s.Drain(ctx, reason); err != nil {
			a.seen(&n, 0, err)
			return "", err
		}
		did = fmt.Sprintf("Slurm node %s drained", s.NodeName())
		a.log.Info("drained the node in the scheduler", "scheduler", schedulerName, "scheduler_node", s.NodeName(), "reason", reason)
	case wantsDrain(l) && !n.Ours:
		did = fmt.Sprintf("Slurm node %s was already drained outside Navarch (%s); left as it is", s.NodeName(), orNone(n.Reason))
	case l == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE && n.Drain && n.Ours:
		if err := s.Resume(ctx); err != nil && !errors.Is(err, slurm.ErrNotOurs) {
			a.seen(&n, 0, err)
			return "", err
		}
		did = fmt.Sprintf("Slurm node %s resumed", s.NodeName())
		a.log.Info("resumed the node in the scheduler", "scheduler", schedulerName, "scheduler_node", s.NodeName())
	case l == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE && n.Drain:
		did = fmt.Sprintf("Slurm node %s left drained: it was drained outside Navarch (%s), and Navarch resumes only its own drains", s.NodeName(), orNone(n.Reason))
	}
	if did != "" {
		if n, err = s.Node(ctx); err != nil {
			a.seen(nil, 0, err)
			return did, nil
		}
	}
	jobs, err := s.Jobs(ctx)
	a.seen(&n, len(jobs), err)
	return did, nil
}

// schedulerLoop reads the scheduler every interval, and whenever the
// node's lifecycle changes, and brings it in line: a drain that failed
// while the scheduler was down is set when it is back, and a drain or
// resume someone undid by hand is redone.
func (a *Agent) schedulerLoop(ctx context.Context) {
	t := a.clock.NewTicker(a.o.SchedulerInterval)
	defer t.Stop()
	for {
		if l := a.knownLifecycle(); l != fleetv1.LifecycleState_LIFECYCLE_STATE_UNSPECIFIED {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			_, _ = a.syncScheduler(cctx, l)
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		case <-a.sched.kick:
		}
	}
}

// schedulerCommand tells the scheduler of the lifecycle a command put the
// node in, keeping the command's reason for a drain, and says what it did
// for the command's result; failed is true when the scheduler could not
// be told (the loop keeps trying).
func (a *Agent) schedulerCommand(ctx context.Context, l fleetv1.LifecycleState, reason string) (msg string, failed bool) {
	if a.o.Scheduler == nil {
		return "", false
	}
	if wantsDrain(l) {
		a.sched.mu.Lock()
		a.sched.reason = reason
		a.sched.mu.Unlock()
	}
	did, err := a.syncScheduler(ctx, l)
	if err != nil {
		return fmt.Sprintf("; Slurm not told yet (%v): the agent tries again every %s", err, a.o.SchedulerInterval), true
	}
	if did == "" {
		return "", false
	}
	return "; " + did, false
}

// schedulerIdle reports whether the scheduler shows no job left on the
// node (Slurm's DRAINED), and what it shows otherwise. Without a scheduler
// the node is idle as far as one can tell.
func (a *Agent) schedulerIdle(ctx context.Context) (bool, string) {
	if a.o.Scheduler == nil {
		return true, ""
	}
	l := fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING
	if _, err := a.syncScheduler(ctx, l); err != nil {
		return false, fmt.Sprintf("Slurm not reachable: %v", err)
	}
	st := a.schedulerReport()
	if st.GetDrained() {
		return true, fmt.Sprintf("Slurm node %s is DRAINED", st.GetNodeName())
	}
	return false, fmt.Sprintf("Slurm node %s is %s with %d job(s)", st.GetNodeName(), st.GetState(), st.GetJobs())
}

// cancelJobs cancels the node's scheduler jobs at a forced drain's
// deadline, and says what it did for the result.
func (a *Agent) cancelJobs(ctx context.Context) string {
	if a.o.Scheduler == nil {
		return ""
	}
	jobs, err := a.o.Scheduler.Cancel(ctx)
	if err != nil {
		a.log.Warn("cancelling the node's scheduler jobs", "scheduler", schedulerName, "err", err)
		return fmt.Sprintf("cancelling Slurm jobs failed: %v; ", err)
	}
	if len(jobs) == 0 {
		return ""
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	a.log.Warn("cancelled the node's scheduler jobs", "scheduler", schedulerName, "jobs", ids)
	return fmt.Sprintf("cancelled Slurm jobs %s; ", strings.Join(ids, ", "))
}

func orNone(reason string) string {
	if reason == "" {
		return "no reason given"
	}
	return "reason: " + reason
}

// awaitSchedulerIdle waits up to the kill grace for the scheduler to show
// no job left after a forced drain cancelled them, and says what it shows.
func (a *Agent) awaitSchedulerIdle(ctx context.Context) string {
	until := a.clock.Now().Add(a.o.KillGrace)
	for {
		idle, note := a.schedulerIdle(ctx)
		if idle || !a.clock.Now().Before(until) {
			return note
		}
		if sleep(ctx, a.clock, time.Second) != nil {
			return note
		}
	}
}
