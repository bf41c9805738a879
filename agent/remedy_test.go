package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// fakeRemedies stands in for nvidia-smi and the reboot command, and
// remembers what the agent asked of them.
type fakeRemedies struct {
	mu       sync.Mutex
	resets   []int
	reboots  int
	resetErr error
	// newBoot is what a reboot answers; empty is a real reboot's answer.
	newBoot string
	// beforeReset runs as a reset starts, to see what the GPU is like then.
	beforeReset func()
}

func (f *fakeRemedies) options(o *Options) {
	o.ResetGPU = func(_ context.Context, i int) (string, error) {
		if f.beforeReset != nil {
			f.beforeReset()
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.resets = append(f.resets, i)
		if f.resetErr != nil {
			return "GPU in a bad way", f.resetErr
		}
		return "GPU 00000000:1B:00.0 was successfully reset.", nil
	}
	o.Reboot = func(context.Context) (string, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reboots++
		return f.newBoot, nil
	}
}

func (f *fakeRemedies) done() (resets []int, reboots int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.resets), f.reboots
}

func resetCommand(id string, gpu uint32, force bool) *fleetv1.Command {
	return &fleetv1.Command{Id: id, NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_RESET_GPU, GpuIndex: gpu, Force: force}
}

func rebootCommand(id string, force bool) *fleetv1.Command {
	return &fleetv1.Command{Id: id, NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_REBOOT, Force: force, BootId: "boot-1"}
}

// finalResult waits for the command's final result.
func finalResult(t *testing.T, cp *fakeCP, id string) *nodev1.ReportCommandResultRequest {
	t.Helper()
	testutil.Eventually(t, id+" finished", func() bool { return cp.result(id, true) != nil })
	return cp.result(id, true)
}

func TestResetRefusedWhileProcessesRun(t *testing.T) {
	cp := newFakeCP(t)
	fake := &fakeRemedies{}
	r := startAgent(t, cp, simnvml.Options{}, fake.options)
	job := sleeper(t, false)
	r.sim.Device(1).AttachProcess(job.pid())
	cp.commands <- resetCommand("cmd-1", 1, false)
	res := finalResult(t, cp, "cmd-1")
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED || !slices.Equal(res.GetRemainingPids(), []uint32{job.pid()}) ||
		!strings.Contains(res.GetMessage(), fmt.Sprint("compute processes run on it: ", job.pid())) {
		t.Fatalf("result %v", res)
	}
	if resets, _ := fake.done(); len(resets) != 0 {
		t.Fatalf("reset GPUs %v with a job on GPU 1", resets)
	}
	select {
	case <-job.reaped:
		t.Fatal("a reset without force stopped the job")
	default:
	}

	// A job on another GPU is no reason to refuse.
	cp.commands <- resetCommand("cmd-2", 0, false)
	if res := finalResult(t, cp, "cmd-2"); res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED ||
		!strings.Contains(res.GetMessage(), "successfully reset") {
		t.Fatalf("reset of GPU 0: %v", res)
	}
	if resets, _ := fake.done(); !slices.Equal(resets, []int{0}) {
		t.Fatalf("reset GPUs %v, want [0]", resets)
	}
}

// TestForcedResetStopsProcessesFirst: a forced reset acknowledges, signals
// the GPU's processes TERM, then KILL for one that ignores TERM, and resets
// only once they are gone.
func TestForcedResetStopsProcessesFirst(t *testing.T) {
	cp := newFakeCP(t)
	polite, stubborn := sleeper(t, false), sleeper(t, true)
	var runningAtReset []uint32
	var r *running
	fake := &fakeRemedies{}
	fake.beforeReset = func() {
		ps, _ := r.sim.Device(2).GetComputeRunningProcesses()
		for _, p := range ps {
			runningAtReset = append(runningAtReset, p.Pid)
		}
	}
	r = startAgent(t, cp, simnvml.Options{}, fake.options)
	r.sim.Device(2).AttachProcess(polite.pid())
	r.sim.Device(2).AttachProcess(stubborn.pid())
	cp.commands <- resetCommand("cmd-3", 2, true)
	res := finalResult(t, cp, "cmd-3")
	if ack := cp.result("cmd-3", false); ack.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED {
		t.Fatalf("first result %v, want the acknowledgement", ack)
	}
	want := []uint32{polite.pid(), stubborn.pid()}
	slices.Sort(want)
	got := slices.Clone(res.GetSignalledPids())
	slices.Sort(got)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || !slices.Equal(got, want) ||
		!strings.Contains(res.GetMessage(), "successfully reset") {
		t.Fatalf("result %v, want the reset after signalling %v", res, want)
	}
	if resets, _ := fake.done(); !slices.Equal(resets, []int{2}) || len(runningAtReset) != 0 {
		t.Fatalf("reset GPUs %v with %v still running", resets, runningAtReset)
	}
	for _, j := range []*job{polite, stubborn} {
		select {
		case <-j.reaped:
		case <-time.After(5 * time.Second):
			t.Fatalf("job %d still running", j.pid())
		}
	}
}

func TestResetToolFailureFailsTheCommand(t *testing.T) {
	cp := newFakeCP(t)
	fake := &fakeRemedies{resetErr: errors.New("exit status 3")}
	startAgent(t, cp, simnvml.Options{}, fake.options)
	cp.commands <- resetCommand("cmd-4", 3, false)
	res := finalResult(t, cp, "cmd-4")
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED ||
		res.GetMessage() != "GPU 3 reset failed: exit status 3\nGPU in a bad way" {
		t.Fatalf("result %v", res)
	}
}

// TestRebootNeedsADrainedNode: without force, the agent reboots only a
// node it knows to be DRAINED.
func TestRebootNeedsADrainedNode(t *testing.T) {
	cp := newFakeCP(t)
	fake := &fakeRemedies{}
	startAgent(t, cp, simnvml.Options{}, fake.options)
	cp.commands <- rebootCommand("cmd-5", false)
	res := finalResult(t, cp, "cmd-5")
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED || !strings.Contains(res.GetMessage(), "not DRAINED as far as this agent knows (ACTIVE)") {
		t.Fatalf("result %v", res)
	}
	if _, reboots := fake.done(); reboots != 0 {
		t.Fatal("rebooted an ACTIVE node")
	}
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED)
	_, beats := cp.counts()
	testutil.Eventually(t, "a heartbeat answered DRAINED", func() bool { _, b := cp.counts(); return b >= beats+2 })
	cp.commands <- rebootCommand("cmd-6", false)
	testutil.Eventually(t, "reboot", func() bool { _, n := fake.done(); return n == 1 })
	if ack := cp.result("cmd-6", false); ack.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED {
		t.Fatalf("result before the reboot %v, want the acknowledgement", ack)
	}
	if res := cp.result("cmd-6", true); res != nil {
		t.Fatalf("a real reboot reported %v; only the next registration tells", res)
	}
}

// TestSimulatedRebootRegistersFromTheNewBoot: a reboot that hands back a
// new boot id (the simulated node's) makes the agent register again at
// once, from that boot.
func TestSimulatedRebootRegistersFromTheNewBoot(t *testing.T) {
	cp := newFakeCP(t)
	fake := &fakeRemedies{newBoot: "boot-2"}
	startAgent(t, cp, simnvml.Options{}, fake.options)
	cp.commands <- rebootCommand("cmd-7", true)
	testutil.Eventually(t, "registration from the new boot", func() bool {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		return len(cp.registrations) == 2 && cp.registrations[1].GetBootId() == "boot-2"
	})
	cp.mu.Lock()
	first := cp.registrations[0].GetBootId()
	cp.mu.Unlock()
	if first != "boot-1" || cp.result("cmd-7", false).GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED {
		t.Fatalf("first boot %q, result %v", first, cp.result("cmd-7", false))
	}
	// Handed out again, it is not carried out twice.
	cp.commands <- rebootCommand("cmd-7", true)
	time.Sleep(200 * time.Millisecond)
	if _, reboots := fake.done(); reboots != 1 {
		t.Fatalf("%d reboots", reboots)
	}
}

// TestNoRemediesRefusesBoth: an agent started with remedies disabled says
// so at registration and refuses a reset and a reboot, forced or not.
func TestNoRemediesRefusesBoth(t *testing.T) {
	cp := newFakeCP(t)
	fake := &fakeRemedies{}
	startAgent(t, cp, simnvml.Options{}, fake.options, func(o *Options) { o.RemediesDisabled = true })
	cp.mu.Lock()
	disabled := cp.registrations[0].GetRemediesDisabled()
	cp.mu.Unlock()
	if !disabled {
		t.Fatal("the registration does not say remedies are disabled")
	}
	cp.commands <- resetCommand("cmd-8", 0, true)
	cp.commands <- rebootCommand("cmd-9", true)
	for _, id := range []string{"cmd-8", "cmd-9"} {
		res := finalResult(t, cp, id)
		if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED || res.GetMessage() != "remedies are disabled on this node (--no-remedies)" {
			t.Fatalf("%s: %v", id, res)
		}
	}
	if resets, reboots := fake.done(); len(resets) != 0 || reboots != 0 {
		t.Fatalf("carried out %v resets and %d reboots", resets, reboots)
	}
}

// TestRemedyTools runs the real tools' wrappers on stand-in scripts.
func TestRemedyTools(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	tests := []struct {
		name    string
		run     func() (string, error)
		out     string
		errText string // empty: no error
	}{
		{"reset-passes-the-index", func() (string, error) {
			return NvidiaSMIReset(script("smi-ok", `echo "args: $*"; printf '\r\n'`))(ctx, 3)
		}, "args: --gpu-reset -i 3", ""},
		{"reset-failure-keeps-output", func() (string, error) {
			return NvidiaSMIReset(script("smi-busy", "echo 'GPU is in use' >&2; exit 3"))(ctx, 0)
		}, "GPU is in use", "--gpu-reset -i 0: exit status 3"},
		{"reset-tool-missing", func() (string, error) {
			return NvidiaSMIReset(filepath.Join(dir, "absent"))(ctx, 0)
		}, "", "no such file"},
		{"reboot-runs-the-command", func() (string, error) {
			return CommandReboot([]string{"sh", "-c", "exit 0"})(ctx)
		}, "", ""},
		{"reboot-failure-says-why", func() (string, error) {
			return CommandReboot([]string{script("reboot-refused", "echo 'Access denied'; exit 1")})(ctx)
		}, "", "Access denied"},
		{"tool-timeout", func() (string, error) {
			return runTool(ctx, 100*time.Millisecond, "sleep", "5")
		}, "", "no answer within 100ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.run()
			if out != tt.out {
				t.Errorf("output %q, want %q", out, tt.out)
			}
			if (err == nil) != (tt.errText == "") || (err != nil && !strings.Contains(err.Error(), tt.errText)) {
				t.Errorf("error %v, want one saying %q", err, tt.errText)
			}
		})
	}
}

func TestToolOutputIsBoundedAndPrintable(t *testing.T) {
	long := strings.Repeat("é", maxToolOutput)
	got := toolOutput([]byte("  ok\x1b[0m\r\n" + long))
	if len(got) > maxToolOutput || !strings.HasPrefix(got, "ok?[0m\n") || !strings.HasSuffix(got, "é…") {
		t.Fatalf("%d bytes: %q…", len(got), got[:20])
	}
	if got := toolOutput([]byte("bad \xff byte\n")); got != "bad ? byte" {
		t.Fatalf("%q", got)
	}
}

// TestNoSecondResetOfAGPUUnderReset: a reset of a GPU that another command
// is resetting fails at once, rather than running the tool twice.
func TestNoSecondResetOfAGPUUnderReset(t *testing.T) {
	cp := newFakeCP(t)
	release := make(chan struct{})
	fake := &fakeRemedies{beforeReset: func() { <-release }}
	startAgent(t, cp, simnvml.Options{}, fake.options)
	cp.commands <- resetCommand("cmd-a", 1, false)
	testutil.Eventually(t, "the first reset acknowledged", func() bool { return cp.result("cmd-a", false) != nil })
	cp.commands <- resetCommand("cmd-b", 1, true)
	res := finalResult(t, cp, "cmd-b")
	close(release)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED || !strings.Contains(res.GetMessage(), "being reset already (command cmd-a)") {
		t.Fatalf("second reset: %v", res)
	}
	if res := finalResult(t, cp, "cmd-a"); res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		t.Fatalf("first reset: %v", res)
	}
	if resets, _ := fake.done(); !slices.Equal(resets, []int{1}) {
		t.Fatalf("the tool ran for %v, want once for GPU 1", resets)
	}
}
