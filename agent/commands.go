package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// handle carries out one command. Long-running work (a drain) runs on its
// own goroutine; every outcome goes back through the result queue.
func (a *Agent) handle(ctx context.Context, cmd *fleetv1.Command) {
	a.mu.Lock()
	_, draining := a.drains[cmd.GetId()]
	telling := a.telling[cmd.GetId()]
	done := a.handled[cmd.GetId()]
	a.mu.Unlock()
	switch {
	case draining:
		// Delivered again after a re-registration while still running: say
		// so and carry on.
		a.results.add(result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, "drain already under way"))
		return
	case telling:
		a.results.add(result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, "still telling Slurm"))
		return
	}
	if done {
		return
	}
	a.log.Info("command", "id", cmd.GetId(), "type", cmd.GetType(), "reason", cmd.GetReason())
	switch cmd.GetType() {
	case fleetv1.CommandType_COMMAND_TYPE_CORDON:
		a.commandLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED)
		a.finishTelling(cmd, "cordoned: this node takes no new work", cmd.GetReason(), schedulerCommandLimit, nil)
	case fleetv1.CommandType_COMMAND_TYPE_UNCORDON:
		a.commandLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE)
		n := a.cancelDrains()
		msg := "uncordoned: this node takes work again"
		if n > 0 {
			msg += fmt.Sprintf("; stopped %d drain(s)", n)
		}
		a.finishTelling(cmd, msg, "", schedulerCommandLimit, nil)
	case fleetv1.CommandType_COMMAND_TYPE_DRAIN:
		a.commandLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
		// A new drain (another deadline, force, or the drain before a
		// terminate) replaces the one under way, which the control plane
		// has already cancelled.
		a.cancelDrains()
		a.results.add(result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, "draining"))
		// Bound to the agent's life, not this session's: a
		// re-registration does not end a drain (its redelivery is
		// answered "drain already under way").
		dctx, cancel := context.WithCancel(a.life)
		a.mu.Lock()
		a.drains[cmd.GetId()] = cancel
		a.mu.Unlock()
		a.background(func() {
			defer cancel()
			// Told before the wait begins; a scheduler that cannot be
			// told now is told by the scheduler loop, and the drain
			// waits for it.
			if _, failed := a.schedulerCommand(dctx, cmd.GetReason(), false); failed {
				a.log.Warn("draining in the scheduler failed; the agent tries again", "scheduler", schedulerName)
			}
			r := a.drain(dctx, cmd)
			a.mu.Lock()
			_, current := a.drains[cmd.GetId()]
			delete(a.drains, cmd.GetId())
			a.mu.Unlock()
			if r == nil || !current {
				// Cancelled (an uncordon, a newer drain) as it ended: the
				// control plane has already set this drain aside.
				return
			}
			if r.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
				// The control plane marks the node DRAINED on this result;
				// a reboot asked right after must not wait for a
				// heartbeat to say so.
				a.commandLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED)
			}
			a.finish(cmd, r)
		})
	case fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS:
		a.finish(cmd, a.diagnose(cmd))
	case fleetv1.CommandType_COMMAND_TYPE_RESET_GPU:
		a.resetGPU(ctx, cmd)
	case fleetv1.CommandType_COMMAND_TYPE_REBOOT:
		a.reboot(ctx, cmd)
	case fleetv1.CommandType_COMMAND_TYPE_TERMINATE:
		a.commandLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING)
		// The scheduler is told to place nothing more here before the
		// agent stops, within a bound: the node is going either way.
		a.finishTelling(cmd, "agent stopping", cmd.GetReason(), terminateSchedulerLimit, func() {
			// Give the result a moment to reach the control plane, then stop.
			a.results.flush(a.life, 5*time.Second)
			a.log.Info("terminating on the control plane's command")
			a.stop()
		})
	default:
		a.finish(cmd, result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_FAILED, fmt.Sprintf("this agent does not know command type %s", cmd.GetType())))
	}
}

func (a *Agent) finish(cmd *fleetv1.Command, r *nodev1.ReportCommandResultRequest) {
	a.mu.Lock()
	a.handled[cmd.GetId()] = true
	a.mu.Unlock()
	a.results.add(r)
}

// outcome is a command's status: FAILED when part of it could not be
// done.
func outcome(failed bool) fleetv1.CommandStatus {
	if failed {
		return fleetv1.CommandStatus_COMMAND_STATUS_FAILED
	}
	return fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
}

func result(cmd *fleetv1.Command, st fleetv1.CommandStatus, msg string) *nodev1.ReportCommandResultRequest {
	return &nodev1.ReportCommandResultRequest{NodeId: cmd.GetNodeId(), CommandId: cmd.GetId(), Status: st, Message: msg}
}

func (a *Agent) cancelDrains() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := len(a.drains)
	for id, cancel := range a.drains {
		cancel()
		a.handled[id] = true
		delete(a.drains, id)
	}
	return n
}

// drain waits for the GPU compute processes to end and, with a scheduler,
// for it to show no job left on the node (Slurm's DRAINED), or for the
// deadline. With force it cancels the scheduler's jobs at the deadline,
// then signals the GPU processes left, TERM then KILL after the grace, and
// reports which processes it signalled. A cancelled drain (uncordon)
// reports nothing: the control plane already cancelled it.
func (a *Agent) drain(ctx context.Context, cmd *fleetv1.Command) *nodev1.ReportCommandResultRequest {
	spec := cmd.GetDrain()
	deadline := a.clock.Now().Add(time.Hour)
	if spec.GetDeadline() != nil {
		deadline = spec.GetDeadline().AsTime()
	}
	tick := min(a.o.PollInterval, time.Second)
	var asked time.Time // when the scheduler was last asked
	for {
		procs, err := a.reader.Processes()
		if err != nil {
			return result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_FAILED, "cannot list GPU processes: "+err.Error())
		}
		if len(procs) == 0 {
			if a.o.Scheduler == nil {
				return result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, "no GPU processes left")
			}
			if now := a.clock.Now(); now.Sub(asked) >= min(drainCheckInterval, a.o.SchedulerInterval) || !now.Before(deadline) {
				asked = now
				if idle, note := a.schedulerIdle(ctx); idle {
					return result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, "no GPU processes left; "+note)
				}
			}
		}
		if !a.clock.Now().Before(deadline) {
			pids := pidsOf(procs)
			if !spec.GetForce() {
				msg := "deadline passed with no GPU process left"
				if len(pids) > 0 {
					msg = fmt.Sprintf("deadline passed with %d GPU processes still running: %s", len(pids), joinPIDs(pids))
				}
				if _, note := a.schedulerIdle(ctx); note != "" {
					msg += "; " + note
				}
				r := result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, msg)
				r.RemainingPids = pids
				return r
			}
			return a.forceStop(ctx, cmd, pids)
		}
		if sleep(ctx, a.clock, tick) != nil {
			return nil
		}
	}
}

// forceStop stops what a drain left at its deadline and reports it: the
// scheduler's jobs are cancelled first, so that they end as the scheduler
// ends them and are not requeued onto a node still running them; the GPU
// processes left after the grace are signalled.
func (a *Agent) forceStop(ctx context.Context, cmd *fleetv1.Command, listed []uint32) *nodev1.ReportCommandResultRequest {
	cancelled, jobsLeft, abandon := a.cancelJobs(ctx)
	if abandon {
		// The drain ended while it waited (an uncordon heard first, the
		// agent stopping): its processes are no longer its to stop.
		return nil
	}
	if cancelled != "" && !jobsLeft {
		grace := a.clock.Now().Add(a.o.KillGrace)
		for len(listed) > 0 && a.clock.Now().Before(grace) {
			if sleep(ctx, a.clock, 200*time.Millisecond) != nil {
				return nil
			}
			listed = a.remaining(listed)
		}
	}
	stop, ok := a.stopProcesses(ctx, listed)
	if !ok {
		return nil
	}
	msg := "deadline passed; " + cancelled + stop.String()
	if a.o.Scheduler != nil {
		note, idle := a.awaitSchedulerIdle(ctx)
		msg += "; " + note
		jobsLeft = jobsLeft || !idle
	}
	// FAILED says something was left: a process, or a Slurm job. The
	// control plane ends the drain all the same.
	st := outcome(!stop.stopped() || jobsLeft)
	r := result(cmd, st, msg)
	r.SignalledPids = stop.signalled
	r.RemainingPids = stop.remaining()
	return r
}

// stopOutcome is what stopping GPU processes came to.
type stopOutcome struct {
	signalled []uint32
	// left still ran after KILL; refused are the pids the agent would not
	// signal, each with why in why.
	left, refused []uint32
	why           []string
	errs          []string
}

// stopped reports whether every process went.
func (s stopOutcome) stopped() bool { return len(s.left) == 0 && len(s.refused) == 0 }

// remaining are the pids still running, sorted.
func (s stopOutcome) remaining() []uint32 {
	out := slices.Concat(s.left, s.refused)
	slices.Sort(out)
	return out
}

func (s stopOutcome) String() string {
	msg := fmt.Sprintf("signalled %d GPU processes: %s", len(s.signalled), joinPIDs(s.signalled))
	if len(s.left) > 0 {
		msg += fmt.Sprintf("; still running after KILL: %s", joinPIDs(s.left))
	}
	if len(s.refused) > 0 {
		msg += "; refused to signal " + strings.Join(s.why, ", ")
	}
	if len(s.errs) > 0 {
		msg += "; errors: " + strings.Join(s.errs, "; ")
	}
	return msg
}

// stopProcesses sends TERM to every pid it may signal, waits up to the
// grace for them to go, then KILLs the rest. The pids it refuses to signal
// are kept apart, each with why. It reports false when ctx ended first.
func (a *Agent) stopProcesses(ctx context.Context, listed []uint32) (stopOutcome, bool) {
	var out stopOutcome
	var pids []uint32
	for _, pid := range listed {
		if reason := refusal(pid); reason != "" {
			out.refused = append(out.refused, pid)
			out.why = append(out.why, fmt.Sprintf("%d (%s)", pid, reason))
			a.log.Warn("refused to signal a listed GPU process", "pid", pid, "reason", reason)
			continue
		}
		pids = append(pids, pid)
	}
	send := func(sig syscall.Signal, targets []uint32) {
		for _, pid := range targets {
			err := a.o.Signal(int(pid), sig)
			switch {
			case err == nil:
				if !slices.Contains(out.signalled, pid) {
					out.signalled = append(out.signalled, pid)
				}
				a.log.Warn("signalled GPU process", "pid", pid, "signal", sig)
			case errors.Is(err, syscall.ESRCH):
				// Already gone.
			default:
				out.errs = append(out.errs, fmt.Sprintf("%s to %d: %v", sig, pid, err))
			}
		}
	}
	send(syscall.SIGTERM, pids)
	left := pids
	deadline := a.clock.Now().Add(a.o.KillGrace)
	for len(left) > 0 && a.clock.Now().Before(deadline) {
		if sleep(ctx, a.clock, 200*time.Millisecond) != nil {
			return out, false
		}
		left = a.remaining(pids)
	}
	if len(left) > 0 {
		send(syscall.SIGKILL, left)
		for range 10 {
			if sleep(ctx, a.clock, 200*time.Millisecond) != nil {
				return out, false
			}
			if left = a.remaining(pids); len(left) == 0 {
				break
			}
		}
	}
	out.left = left
	return out, true
}

// refusal says why the agent will not signal pid, or "" when it may. NVML
// lists whatever the driver says, and a process in another pid namespace
// can be listed as 0; kill(2) reads the pid as a signed pid_t, so 0 and
// anything above MaxInt32 would signal a whole process group or every
// process the agent may signal.
func refusal(pid uint32) string {
	switch {
	case pid == 0:
		return "the agent's own process group"
	case pid > math.MaxInt32:
		return "not a process id: the kernel reads it as negative"
	case pid == 1:
		return "init"
	case int(pid) == os.Getpid():
		return "the agent itself"
	case int(pid) == syscall.Getpgrp():
		return "the leader of the agent's process group"
	}
	return ""
}

// remaining returns the pids that still hold a GPU.
func (a *Agent) remaining(pids []uint32) []uint32 {
	procs, err := a.reader.Processes()
	if err != nil {
		return pids
	}
	now := pidsOf(procs)
	var out []uint32
	for _, p := range pids {
		if slices.Contains(now, p) {
			out = append(out, p)
		}
	}
	return out
}

func pidsOf(procs []*fleetv1.GpuProcess) []uint32 {
	out := make([]uint32, 0, len(procs))
	for _, p := range procs {
		out = append(out, p.GetPid())
	}
	slices.Sort(out)
	return out
}

func joinPIDs(pids []uint32) string {
	parts := make([]string, len(pids))
	for i, p := range pids {
		parts[i] = fmt.Sprint(p)
	}
	return strings.Join(parts, ", ")
}

// diagnose runs the NVML self-check and reports it as the command's result.
func (a *Agent) diagnose(cmd *fleetv1.Command) *nodev1.ReportCommandResultRequest {
	checks := a.reader.Diagnose(a.clock.Now())
	var sb strings.Builder
	failed := 0
	for _, c := range checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
			failed++
		}
		fmt.Fprintf(&sb, "%s gpu%d %-11s %s\n", mark, c.GPU, c.Name, c.Detail)
	}
	st := fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
	head := fmt.Sprintf("diagnostics: %d checks on %d GPUs passed\n", len(checks), a.reader.Count())
	if failed > 0 {
		st = fleetv1.CommandStatus_COMMAND_STATUS_FAILED
		head = fmt.Sprintf("diagnostics: %d of %d checks failed\n", failed, len(checks))
	}
	return result(cmd, st, head+sb.String())
}

// resultQueue delivers command results in order, retrying until the
// control plane has each one.
type resultQueue struct {
	a     *Agent
	mu    sync.Mutex
	queue []*nodev1.ReportCommandResultRequest
	ready chan struct{}
	empty chan struct{} // closed while the queue is empty
}

func newResultQueue(a *Agent) *resultQueue {
	q := &resultQueue{a: a, ready: make(chan struct{}, 1), empty: make(chan struct{})}
	close(q.empty)
	return q
}

func (q *resultQueue) add(r *nodev1.ReportCommandResultRequest) {
	q.mu.Lock()
	if len(q.queue) == 0 {
		q.empty = make(chan struct{})
	}
	q.queue = append(q.queue, r)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// flush waits until every queued result is delivered, or the timeout.
func (q *resultQueue) flush(ctx context.Context, timeout time.Duration) {
	q.mu.Lock()
	empty := q.empty
	q.mu.Unlock()
	t := q.a.clock.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-empty:
	case <-t.Chan():
	case <-ctx.Done():
	}
}

func (q *resultQueue) run(ctx context.Context) {
	b := newBackoff(500*time.Millisecond, 15*time.Second)
	for {
		q.mu.Lock()
		var next *nodev1.ReportCommandResultRequest
		if len(q.queue) > 0 {
			next = q.queue[0]
		}
		q.mu.Unlock()
		if next == nil {
			select {
			case <-ctx.Done():
				return
			case <-q.ready:
				continue
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := q.a.node.ReportCommandResult(cctx, next)
		cancel()
		switch status.Code(err) {
		case codes.OK, codes.FailedPrecondition, codes.NotFound, codes.InvalidArgument:
			if err != nil {
				q.a.log.Info("command result not taken", "command", next.GetCommandId(), "err", status.Convert(err).Message())
			}
			q.mu.Lock()
			q.queue = q.queue[1:]
			if len(q.queue) == 0 {
				close(q.empty)
			}
			q.mu.Unlock()
			b.reset()
		default:
			if ctx.Err() != nil {
				return
			}
			if q.a.retryAfter(ctx, b.next()) != nil {
				return
			}
		}
	}
}
