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
	// Drain stops the scheduler placing work on the node, for reason; on
	// a drain of its own it sets the reason anew.
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

// How long a command waits for the scheduler before it reports that it
// could not be told: a cordon's or uncordon's result, and a terminate,
// after which the agent stops either way.
const (
	schedulerCommandLimit   = 5 * time.Minute
	terminateSchedulerLimit = 30 * time.Second
)

// drainCheckInterval bounds how often a drain asks the scheduler whether
// jobs are left, so that a mass drain does not flood its controller.
const drainCheckInterval = 5 * time.Second

// Bounds of what the agent reports of the scheduler, within the API's.
const (
	maxSchedulerText   = 256
	maxSchedulerReason = 1024
	maxSchedulerError  = 4096
)

// schedulerState is what the agent knows of the scheduler.
type schedulerState struct {
	// turn serialises syncs, so that a command's and the loop's do not
	// cross. It is a one-slot channel,
	// not a mutex, so that waiting for it ends with the waiter's context:
	// a sync holds it across Slurm calls, each up to a minute.
	turn chan struct{}
	// reasonMu guards reason and newReason, which a command sets before it
	// waits for its turn, so that a command that never gets one still
	// leaves its reason. reason is the last cordon or drain reason an
	// operator or the policy gave, which a drain the agent sets carries;
	// newReason is set until the scheduler has it.
	reasonMu  sync.Mutex
	reason    string
	newReason bool

	// seenMu guards last.
	seenMu sync.Mutex
	// last is the state last read, reported with every health report.
	last *fleetv1.SchedulerState

	// kick asks the loop to sync now; changed asks the report loop to
	// send the state now.
	kick, changed chan struct{}
}

func newSchedulerState() *schedulerState {
	return &schedulerState{turn: make(chan struct{}, 1), kick: make(chan struct{}, 1), changed: make(chan struct{}, 1)}
}

// take waits for the scheduler's turn, or for ctx to end; give hands it
// back.
func (s *schedulerState) take(ctx context.Context) error {
	select {
	case s.turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the scheduler's last call to end: %w", ctx.Err())
	}
}

func (s *schedulerState) give() { <-s.turn }

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

// stateOf is a read of the scheduler as the agent reports it. What the
// scheduler says is anyone's text: it goes as one clean line within the
// API's bounds, so that it can never cost the report it rides in. Drained
// needs no job left as well as Slurm's word: Slurm shows a drained node
// IDLE+DRAIN while a suspended job still holds it.
func (a *Agent) stateOf(n slurm.Node, jobs int) *fleetv1.SchedulerState {
	return &fleetv1.SchedulerState{
		Scheduler: schedulerName,
		NodeName:  display.OneLine(a.o.Scheduler.NodeName(), maxSchedulerText),
		State:     display.OneLine(n.State, maxSchedulerText),
		Reason:    display.OneLine(n.Reason, maxSchedulerReason),
		Drain:     n.Drain,
		Drained:   n.Drained && jobs == 0,
		ByNavarch: n.Ours,
		Jobs:      uint32(jobs),
	}
}

// seen records a fresh read, or, with st nil, why none could be made
// (keeping what was read before), and wakes the report loop when what is
// reported changed.
func (a *Agent) seen(st *fleetv1.SchedulerState, err error) {
	a.sched.seenMu.Lock()
	prev := a.sched.last
	next := st
	if next == nil {
		next = &fleetv1.SchedulerState{Scheduler: schedulerName, NodeName: display.OneLine(a.o.Scheduler.NodeName(), maxSchedulerText)}
		if prev != nil {
			next = proto.CloneOf(prev)
		}
		next.Error = display.OneLine(err.Error(), maxSchedulerError)
	}
	a.sched.last = next
	a.sched.seenMu.Unlock()
	if proto.Equal(prev, next) {
		return
	}
	switch {
	case err != nil && prev.GetError() == "":
		a.log.Warn("cannot reach the scheduler", "scheduler", schedulerName, "err", err)
	case err == nil && prev.GetError() != "":
		a.log.Info("the scheduler answers again", "scheduler", schedulerName)
	}
	signal(a.sched.changed)
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
// lifecycle as the agent knows it once no other sync runs: drained while
// the node takes no work, resumed when it is ACTIVE again if the drain
// was Navarch's. A reason, when given, is the one a drain carries from
// now on. It reports what it read and returns it, with what it did in
// words for a command's result ("" when nothing was needed); with an
// error it could not read the scheduler afresh, and did may still say
// what it did before that.
func (a *Agent) syncScheduler(ctx context.Context, reason string) (did string, st *fleetv1.SchedulerState, err error) {
	if reason != "" {
		a.sched.reasonMu.Lock()
		a.sched.reason, a.sched.newReason = reason, true
		a.sched.reasonMu.Unlock()
	}
	if err := a.sched.take(ctx); err != nil {
		return "", nil, err
	}
	defer a.sched.give()
	return a.syncLocked(ctx)
}

// drainReason is the reason a drain set now carries, and whether the
// scheduler has yet to be given it. An ACTIVE node has none: the next
// drain's reason is the next cordon's.
func (a *Agent) drainReason(l fleetv1.LifecycleState) (string, bool) {
	a.sched.reasonMu.Lock()
	defer a.sched.reasonMu.Unlock()
	if l == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE {
		a.sched.reason, a.sched.newReason = "", false
	}
	r := a.sched.reason
	if r == "" {
		r = "node is " + display.Lifecycle(l)
	}
	return r, a.sched.newReason
}

// reasonGiven records that the scheduler has reason, unless a command
// gave another meanwhile.
func (a *Agent) reasonGiven(reason string) {
	a.sched.reasonMu.Lock()
	defer a.sched.reasonMu.Unlock()
	if a.sched.reason == reason {
		a.sched.newReason = false
	}
}

// syncLocked is syncScheduler for a caller that has the scheduler's turn.
func (a *Agent) syncLocked(ctx context.Context) (did string, st *fleetv1.SchedulerState, err error) {
	s := a.o.Scheduler
	defer func() {
		// A call cut short by its caller (an uncordon ending a drain, the
		// agent stopping) says nothing about the scheduler.
		if err != nil && ctx.Err() == nil {
			a.seen(nil, err)
		}
	}()
	l := a.knownLifecycle()
	reason, newReason := a.drainReason(l)
	n, err := s.Node(ctx)
	if err != nil {
		return "", nil, err
	}
	byHand := display.OneLine(orNone(n.Reason), maxSchedulerText)
	acted := false
	switch {
	case wantsDrain(l) && (!n.Drain || n.Ours):
		if !n.Drain || newReason {
			if err := s.Drain(ctx, reason); err != nil {
				return "", nil, err
			}
			acted = true
			a.reasonGiven(reason)
			if !n.Drain {
				a.log.Info("drained the node in the scheduler", "scheduler", schedulerName, "scheduler_node", s.NodeName(), "reason", reason)
			}
		}
		did = fmt.Sprintf("Slurm node %s drained", s.NodeName())
	case wantsDrain(l):
		did = fmt.Sprintf("Slurm node %s was already drained outside Navarch (%s); left as it is", s.NodeName(), byHand)
	case l == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE && n.Drain && n.Ours:
		acted = true
		err := s.Resume(ctx)
		switch {
		case errors.Is(err, slurm.ErrNotOurs):
			// Someone drained it again between the read and the resume.
			did = fmt.Sprintf("Slurm node %s left drained: it was drained outside Navarch (%v), and Navarch resumes only its own drains", s.NodeName(), err)
		case err != nil:
			return "", nil, err
		default:
			did = fmt.Sprintf("Slurm node %s resumed", s.NodeName())
			a.log.Info("resumed the node in the scheduler", "scheduler", schedulerName, "scheduler_node", s.NodeName())
		}
	case l == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE && n.Drain:
		did = fmt.Sprintf("Slurm node %s left drained: it was drained outside Navarch (%s), and Navarch resumes only its own drains", s.NodeName(), byHand)
	}
	if acted {
		if n, err = s.Node(ctx); err != nil {
			return did, nil, err
		}
	}
	// Jobs matter while the node drains; counting them at other times
	// would only cost the controller a call.
	jobs := 0
	if n.Drain {
		list, err := s.Jobs(ctx)
		if err != nil {
			return did, nil, err
		}
		jobs = len(list)
	}
	st = a.stateOf(n, jobs)
	a.seen(st, nil)
	return did, st, nil
}

// schedulerLoop reads the scheduler every interval, and whenever the
// node's lifecycle changes, and brings it in line: a drain that failed
// while the scheduler was down is set when it is back, and a drain or
// resume someone undid by hand is redone.
func (a *Agent) schedulerLoop(ctx context.Context) {
	t := a.clock.NewTicker(a.o.SchedulerInterval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		_, _, _ = a.syncScheduler(cctx, "")
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		case <-a.sched.kick:
		}
	}
}

// schedulerCommand tells the scheduler of the lifecycle a command put the
// node in, with the command's reason for a drain, and says what it did
// for the command's result; failed is true when the scheduler could not
// be told (the loop keeps trying). last says the agent stops after this
// command, so nothing will try again.
func (a *Agent) schedulerCommand(ctx context.Context, reason string, last bool) (msg string, failed bool) {
	if a.o.Scheduler == nil {
		return "", false
	}
	did, _, err := a.syncScheduler(ctx, reason)
	switch {
	case err != nil && did == "" && last:
		// The agent stops after this: nothing will try again.
		return fmt.Sprintf("; Slurm not told (%v)", err), false
	case err != nil && did == "":
		return fmt.Sprintf("; Slurm not told yet (%v): the agent tries again every %s", err, a.o.SchedulerInterval), true
	case err != nil:
		return fmt.Sprintf("; %s, but reading it back failed: %v", did, err), false
	case did == "":
		return "", false
	}
	return "; " + did, false
}

// finishTelling finishes cmd with msg once the scheduler has been told of
// the lifecycle the command put the node in, within limit. A controller
// that does not answer holds each call for up to a minute, so the command
// is acknowledged at once and the scheduler told on a goroutine of its
// own, bound to the agent's life rather than to this session's: the
// commands after this one do not wait, and a re-registration does not cut
// it short. reason is the drain's reason from now on ("" keeps the one
// before). then, when set, runs after the result is queued, and stops the
// agent.
func (a *Agent) finishTelling(cmd *fleetv1.Command, msg, reason string, limit time.Duration, then func()) {
	if a.o.Scheduler == nil {
		a.finish(cmd, result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, msg))
		if then != nil {
			a.background(then)
		}
		return
	}
	a.mu.Lock()
	a.handled[cmd.GetId()] = true
	a.telling[cmd.GetId()] = true
	a.mu.Unlock()
	a.results.add(result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, "telling Slurm"))
	a.background(func() {
		ctx, cancel := context.WithTimeout(a.life, limit)
		note, failed := a.schedulerCommand(ctx, reason, then != nil)
		cancel()
		a.mu.Lock()
		delete(a.telling, cmd.GetId())
		a.mu.Unlock()
		a.results.add(result(cmd, outcome(failed), msg+note))
		if then != nil {
			then()
		}
	})
}

// schedulerIdle reports whether the scheduler shows no job left on the
// node (Slurm's DRAINED) on a read made now, and what it shows. Without a
// scheduler the node is idle as far as one can tell.
func (a *Agent) schedulerIdle(ctx context.Context) (bool, string) {
	if a.o.Scheduler == nil {
		return true, ""
	}
	_, st, err := a.syncScheduler(ctx, "")
	switch {
	case err != nil:
		return false, fmt.Sprintf("Slurm not reachable: %v", err)
	case st.GetDrained():
		return true, fmt.Sprintf("Slurm node %s is DRAINED", st.GetNodeName())
	case !st.GetDrain():
		return false, fmt.Sprintf("Slurm node %s is not drained (%s)", st.GetNodeName(), st.GetState())
	}
	return false, fmt.Sprintf("Slurm node %s is %s with %d job(s)", st.GetNodeName(), st.GetState(), st.GetJobs())
}

// draining reports whether a node in lifecycle l is being emptied: a
// forced drain may stop its work. A cordoned node is not.
func draining(l fleetv1.LifecycleState) bool {
	return l == fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING || l == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING
}

// cancelJobs cancels the node's scheduler jobs at a forced drain's
// deadline, and says what it did for the result; failed is true when jobs
// may be left. It cancels only while the node still drains in Navarch and
// the scheduler shows it drained (so that nothing new lands on it), all in
// one turn, so that no resume comes in between. abandon is true when the
// drain is over (an uncordon heard, the agent stopping): the caller stops
// nothing either.
func (a *Agent) cancelJobs(ctx context.Context) (msg string, failed, abandon bool) {
	if a.o.Scheduler == nil {
		return "", false, false
	}
	if err := a.sched.take(ctx); err != nil {
		return "", true, true
	}
	defer a.sched.give()
	if ctx.Err() != nil || !draining(a.knownLifecycle()) {
		return "", true, true
	}
	_, st, err := a.syncLocked(ctx)
	why := ""
	switch {
	case ctx.Err() != nil || !draining(a.knownLifecycle()):
		return "", true, true
	case err != nil:
		why = err.Error()
	case !st.GetDrain():
		why = "the node is not drained in Slurm"
	}
	if why != "" {
		a.log.Warn("not cancelling the node's scheduler jobs", "scheduler", schedulerName, "why", why)
		return fmt.Sprintf("Slurm jobs not cancelled (%s); ", why), true, false
	}
	jobs, err := a.o.Scheduler.Cancel(ctx)
	if err != nil {
		a.log.Warn("cancelling the node's scheduler jobs", "scheduler", schedulerName, "err", err)
		return fmt.Sprintf("cancelling Slurm jobs failed: %v; ", err), true, false
	}
	if len(jobs) == 0 {
		return "", false, false
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	a.log.Warn("cancelled the node's scheduler jobs", "scheduler", schedulerName, "jobs", ids)
	return fmt.Sprintf("cancelled Slurm jobs %s; ", strings.Join(ids, ", ")), false, false
}

// awaitSchedulerIdle waits up to the kill grace for the scheduler to show
// no job left after a forced drain cancelled them, and says what it
// shows, and whether it is idle.
func (a *Agent) awaitSchedulerIdle(ctx context.Context) (string, bool) {
	until := a.clock.Now().Add(a.o.KillGrace)
	for {
		idle, note := a.schedulerIdle(ctx)
		if idle || !a.clock.Now().Before(until) {
			return note, idle
		}
		if sleep(ctx, a.clock, time.Second) != nil {
			return note, idle
		}
	}
}

func orNone(reason string) string {
	if reason == "" {
		return "no reason given"
	}
	return "reason: " + reason
}
