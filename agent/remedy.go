package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/navarch/navarch/internal/display"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The remedies the agent carries out for an operator: a GPU reset through
// the driver's tool, and a reboot of the node. Both are refused on an agent
// started with remedies disabled. A reset is refused while compute
// processes run on the GPU, unless forced, when they are stopped first as a
// forced drain stops them. A reboot is refused unless the node is DRAINED,
// as the agent knows it, or forced; the control plane checks both too.

// remediesDisabled is what a refused remedy says on an agent started with
// --no-remedies.
const remediesDisabled = "remedies are disabled on this node (--no-remedies)"

// resultFlush is how long a reboot waits for the results before it to
// reach the control plane.
const resultFlush = 5 * time.Second

// remedyState is what the remedies keep beside the agent: the boot the
// node is on, which a simulated reboot changes; the resets under way; and
// how to end the session, so that the agent registers again from a new
// boot at once.
type remedyState struct {
	mu         sync.Mutex
	bootID     string
	running    map[string]int // GPU resets under way: the GPU, by command id
	endSession context.CancelFunc
}

// bootID is the boot the agent registers from.
func (a *Agent) bootID() string {
	a.remedy.mu.Lock()
	defer a.remedy.mu.Unlock()
	return a.remedy.bootID
}

// sessionStarted keeps how to end the session that just started.
func (a *Agent) sessionStarted(end context.CancelFunc) {
	a.remedy.mu.Lock()
	defer a.remedy.mu.Unlock()
	a.remedy.endSession = end
}

// rebooted takes the node's new boot and ends the session, so that the
// agent registers again from it.
func (a *Agent) rebooted(boot string) {
	// Read the GPUs of the new boot first, as an agent starting on it
	// would, so the first report after the registration shows them as they
	// are now (a GPU a reboot brought back answers again), not as they were.
	a.poll(a.clock.Now())
	a.remedy.mu.Lock()
	defer a.remedy.mu.Unlock()
	a.remedy.bootID = boot
	if a.remedy.endSession != nil {
		a.remedy.endSession()
	}
}

// startReset marks a reset of gpu under way for command id. again is true
// when this command already runs; other names another command resetting
// the same GPU, which a second reset must not run beside.
func (a *Agent) startReset(id string, gpu int) (again bool, other string) {
	a.remedy.mu.Lock()
	defer a.remedy.mu.Unlock()
	if _, ok := a.remedy.running[id]; ok {
		return true, ""
	}
	for rid, g := range a.remedy.running {
		if g == gpu {
			return false, rid
		}
	}
	a.remedy.running[id] = gpu
	return false, ""
}

func (a *Agent) resetEnded(id string) {
	a.remedy.mu.Lock()
	defer a.remedy.mu.Unlock()
	delete(a.remedy.running, id)
}

// refuseRemedy says why the agent will not carry out a remedy it can do
// when can is set, or "" when it will.
func (a *Agent) refuseRemedy(can bool, what string) string {
	switch {
	case a.o.RemediesDisabled:
		return remediesDisabled
	case !can:
		return "this agent cannot " + what
	}
	return ""
}

// resetGPU carries out a RESET_GPU command: refused, or acknowledged and
// run on its own goroutine, since stopping processes and the reset take a
// while.
func (a *Agent) resetGPU(ctx context.Context, cmd *fleetv1.Command) {
	gpu := int(cmd.GetGpuIndex())
	again, other := a.startReset(cmd.GetId(), gpu)
	switch {
	case again:
		// Delivered again after a re-registration while still running.
		a.results.add(result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, "GPU reset already under way"))
		return
	case other != "":
		a.finish(cmd, result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_FAILED,
			fmt.Sprintf("GPU %d is being reset already (command %s); not reset twice at once", gpu, other)))
		return
	}
	fail := func(msg string, pids []uint32) {
		a.resetEnded(cmd.GetId())
		r := result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_FAILED, msg)
		r.RemainingPids = pids
		a.finish(cmd, r)
	}
	if why := a.refuseRemedy(a.o.ResetGPU != nil, "reset GPUs"); why != "" {
		fail(why, nil)
		return
	}
	pids, err := a.gpuProcesses(gpu)
	if err != nil {
		fail(err.Error(), nil)
		return
	}
	if len(pids) > 0 && !cmd.GetForce() {
		fail(fmt.Sprintf("GPU %d not reset: compute processes run on it: %s; stop them, drain the node, or force the reset", gpu, joinPIDs(pids)), pids)
		return
	}
	a.results.add(result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, fmt.Sprintf("resetting GPU %d", gpu)))
	a.background(func() {
		defer a.resetEnded(cmd.GetId())
		var stopped stopOutcome
		if len(pids) > 0 {
			var ok bool
			if stopped, ok = a.stopProcesses(ctx, pids); !ok {
				// The session ended: the control plane hands the command
				// out again after the agent registers.
				return
			}
			if !stopped.stopped() {
				r := result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_FAILED, fmt.Sprintf("GPU %d not reset: %s", gpu, stopped))
				r.SignalledPids, r.RemainingPids = stopped.signalled, stopped.remaining()
				a.finish(cmd, r)
				return
			}
		}
		// The reset runs to its end, or to the tool's timeout, whatever
		// becomes of the session: a reset cut short leaves the GPU worse.
		out, err := a.o.ResetGPU(context.WithoutCancel(ctx), gpu)
		st, msg := fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, out
		if msg == "" {
			msg = fmt.Sprintf("GPU %d reset", gpu)
		}
		if err != nil {
			st, msg = fleetv1.CommandStatus_COMMAND_STATUS_FAILED, fmt.Sprintf("GPU %d reset failed: %v", gpu, err)
			if out != "" {
				msg += "\n" + out
			}
		}
		if len(stopped.signalled) > 0 {
			msg = "first " + stopped.String() + "\n" + msg
		}
		a.log.Info("GPU reset", "gpu", gpu, "status", st, "output", out, "err", err)
		r := result(cmd, st, msg)
		r.SignalledPids = stopped.signalled
		a.finish(cmd, r)
	})
}

// gpuProcesses lists the compute processes on one GPU, read now. A GPU
// that does not list its processes has none the agent knows of; the
// driver's tool refuses a GPU in use by itself.
func (a *Agent) gpuProcesses(gpu int) ([]uint32, error) {
	for _, r := range a.reader.Read(a.clock.Now()) {
		if int(r.Metrics.GetGpuIndex()) == gpu {
			return pidsOf(r.Metrics.GetProcesses()), nil
		}
	}
	return nil, fmt.Errorf("GPU %d not reset: it is not among the GPUs this agent reads", gpu)
}

// reboot carries out a REBOOT command: refused, or acknowledged, its
// result flushed, and the node rebooted. A real reboot takes the agent
// with it; a simulated one hands back a new boot, from which the agent
// registers again at once, and the control plane, seeing the new boot id,
// marks the reboot done.
func (a *Agent) reboot(ctx context.Context, cmd *fleetv1.Command) {
	fail := func(msg string) {
		a.finish(cmd, result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_FAILED, msg))
	}
	if why := a.refuseRemedy(a.o.Reboot != nil, "reboot its node"); why != "" {
		fail(why)
		return
	}
	if l := a.knownLifecycle(); !cmd.GetForce() && l != fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED {
		fail(fmt.Sprintf("not rebooted: the node is not DRAINED as far as this agent knows (%s); drain it first, or force the reboot",
			strings.TrimPrefix(l.String(), "LIFECYCLE_STATE_")))
		return
	}
	a.results.add(result(cmd, fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, "rebooting"))
	a.results.flush(ctx, resultFlush)
	a.log.Warn("rebooting the node on the control plane's command", "command", cmd.GetId(), "reason", cmd.GetReason())
	boot, err := a.o.Reboot(ctx)
	if err != nil {
		fail("reboot failed: " + err.Error())
		return
	}
	a.mu.Lock()
	a.handled[cmd.GetId()] = true
	a.mu.Unlock()
	if boot != "" {
		a.log.Info("node rebooted; registering again", "boot", boot)
		a.rebooted(boot)
	}
}

// maxToolOutput bounds the output of a remedy's tool kept in a result.
const maxToolOutput = 4096

// Timeouts of the remedies' tools. A GPU reset takes seconds, longer on a
// GPU with many NVLinks; a reboot command returns once the reboot has
// begun.
const (
	resetTimeout  = 2 * time.Minute
	rebootTimeout = time.Minute
)

// NvidiaSMIReset resets GPUs with the driver's tool at path, `nvidia-smi
// --gpu-reset -i N`, and returns its output, trimmed and bounded.
func NvidiaSMIReset(path string) func(ctx context.Context, index int) (string, error) {
	return func(ctx context.Context, index int) (string, error) {
		return runTool(ctx, resetTimeout, path, "--gpu-reset", "-i", strconv.Itoa(index))
	}
}

// CommandReboot reboots the node by running argv, such as `systemctl
// reboot`, which returns once the reboot has begun; the new boot id is the
// next registration's to tell.
func CommandReboot(argv []string) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		if len(argv) == 0 {
			return "", errors.New("no reboot command")
		}
		out, err := runTool(ctx, rebootTimeout, argv[0], argv[1:]...)
		if err != nil && out != "" {
			err = fmt.Errorf("%w: %s", err, out)
		}
		return "", err
	}
}

// runTool runs a remedy's tool, bounded by timeout, and returns its
// combined output, trimmed, bounded and made printable; a failure says
// what ran and how it ended.
func runTool(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var buf bytes.Buffer
	c := exec.CommandContext(ctx, name, args...)
	c.Stdout, c.Stderr = &buf, &buf
	c.WaitDelay = time.Second
	err := c.Run()
	out := toolOutput(buf.Bytes())
	line := strings.Join(append([]string{name}, args...), " ")
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return out, fmt.Errorf("%s: no answer within %s", line, timeout)
	case err != nil:
		return out, fmt.Errorf("%s: %w", line, err)
	}
	return out, nil
}

// toolOutput is b as a result message keeps it: valid UTF-8 without
// control characters (each a "?") other than newlines and tabs, trimmed, and cut to
// maxToolOutput bytes at a character, marked with "…".
func toolOutput(b []byte) string {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	return display.Cut(strings.TrimSpace(display.CleanText(s, "\n\t")), maxToolOutput, "…")
}
