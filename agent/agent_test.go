package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

type running struct {
	a    *Agent
	sim  *simnvml.Backend
	done chan error
	stop context.CancelFunc
}

// startAgent runs the real agent on a simulated node against cp.
func startAgent(t *testing.T, cp *fakeCP, sim simnvml.Options, tweak ...func(*Options)) *running {
	t.Helper()
	if sim.GPUs == 0 {
		sim.GPUs = 4
	}
	// Quiet GPUs, unless the test wants their jobs.
	sim.Idle = !sim.Jobs
	backend := simnvml.New(sim)
	t.Cleanup(backend.Stop)
	// The fake control plane is plain gRPC on loopback: these tests are of
	// the agent's logic; the real control plane's tests use TLS.
	conn, err := rpcclient.Dial(rpcclient.Target{Addr: cp.addr, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	o := Options{
		NodeID: "node-a", Hostname: "host-a", BootID: "boot-1", Simulated: true, Version: "test",
		Conn: conn, NVML: backend, PollInterval: 50 * time.Millisecond, KillGrace: 500 * time.Millisecond,
		Labels: map[string]string{"zone": "a"},
	}
	for _, fn := range tweak {
		fn(&o)
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, sim: backend, done: make(chan error, 1), stop: cancel}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("agent did not stop")
		}
	})
	testutil.Eventually(t, "registration", func() bool { regs, _ := cp.counts(); return regs > 0 })
	return r
}

func TestRegistersAndHeartbeats(t *testing.T) {
	cp := newFakeCP(t)
	startAgent(t, cp, simnvml.Options{GPUs: 4})
	testutil.Eventually(t, "heartbeats", func() bool { _, beats := cp.counts(); return beats >= 3 })
	cp.mu.Lock()
	reg := cp.registrations[0]
	hb := cp.heartbeats[len(cp.heartbeats)-1]
	cp.mu.Unlock()
	if reg.GetNodeId() != "node-a" || reg.GetHostname() != "host-a" || !reg.GetSimulated() || reg.GetBootId() != "boot-1" ||
		reg.GetDriverVersion() != "550.54.15" || reg.GetCudaVersion() != "12.4" || reg.GetLabels()["zone"] != "a" {
		t.Fatalf("registration %v", reg)
	}
	if len(reg.GetGpus()) != 4 || !strings.HasPrefix(reg.GetGpus()[3].GetUuid(), "GPU-") || reg.GetGpus()[0].GetNvlinkCount() != 18 ||
		reg.GetGpus()[0].GetSlowdownTemperatureCelsius() != 87 || reg.GetGpus()[0].GetPciBusId() == "" {
		t.Fatalf("inventory %v", reg.GetGpus())
	}
	if len(hb.GetSamples()) != 4 || hb.GetSamples()[0].GetTemperatureCelsius() == 0 {
		t.Fatalf("heartbeat samples %v", hb.GetSamples())
	}
	// The first report carries a full snapshot.
	testutil.Eventually(t, "first snapshot", func() bool {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		return len(cp.reports) > 0 && len(cp.reports[0].GetMetrics()) == 4 && cp.reports[0].GetGpuCount() == 4
	})
}

// TestGPUThatDoesNotAnswerAtStart: the agent watches the GPUs that answer
// and registers the one that does not as unanswered, under its own index.
func TestGPUThatDoesNotAnswerAtStart(t *testing.T) {
	cp := newFakeCP(t)
	startAgent(t, cp, simnvml.Options{GPUs: 4, Faults: []faultspec.Spec{{Kind: faultspec.GPULost, GPU: 2}}})
	testutil.Eventually(t, "heartbeats", func() bool { _, beats := cp.counts(); return beats >= 2 })
	cp.mu.Lock()
	reg := cp.registrations[0]
	hb := cp.heartbeats[len(cp.heartbeats)-1]
	cp.mu.Unlock()
	var indexes []uint32
	for _, g := range reg.GetGpus() {
		indexes = append(indexes, g.GetIndex())
	}
	if !slices.Equal(indexes, []uint32{0, 1, 3}) {
		t.Fatalf("registered GPUs %v, want 0, 1 and 3", indexes)
	}
	if u := reg.GetUnansweredGpus(); len(u) != 1 || u[0].GetIndex() != 2 || !strings.Contains(strings.ToLower(u[0].GetReason()), "lost") {
		t.Fatalf("unanswered %v", u)
	}
	if len(hb.GetSamples()) != 3 || hb.GetSamples()[2].GetGpuIndex() != 3 {
		t.Fatalf("heartbeat samples %v", hb.GetSamples())
	}
}

func TestXIDPushedAtOnce(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	testutil.Eventually(t, "first report", func() bool { return cp.reportCount() > 0 })
	r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 79, GPU: 2})
	testutil.Eventually(t, "XID 79", func() bool {
		for _, e := range cp.events() {
			if e.GetKind() == fleetv1.EventKind_EVENT_KIND_XID && e.GetXid() == 79 && e.GetGpuIndex() == 2 && e.GetGpuUuid() != "" {
				return true
			}
		}
		return false
	})
}

// TestSimulatedFaultsAreDetected injects each fault kind of the grammar and
// checks the agent reports the matching event.
func TestSimulatedFaultsAreDetected(t *testing.T) {
	rows := []struct {
		spec string
		kind fleetv1.EventKind
	}{
		{"xid=13@gpu0+0s", fleetv1.EventKind_EVENT_KIND_XID},
		{"temp=97@gpu1+0s", fleetv1.EventKind_EVENT_KIND_THERMAL},
		{"ecc-dbe@gpu2+0s", fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED},
		{"row-remap-pending@gpu3+0s", fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING},
		{"row-remap-failure@gpu0+0s", fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE},
		{"nvlink-down@gpu1+0s", fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN},
		{"gpu-lost@gpu2+0s", fleetv1.EventKind_EVENT_KIND_GPU_LOST},
	}
	for _, row := range rows {
		t.Run(strings.SplitN(row.spec, "@", 2)[0], func(t *testing.T) {
			spec, err := faultspec.Parse(row.spec)
			if err != nil {
				t.Fatal(err)
			}
			cp := newFakeCP(t)
			r := startAgent(t, cp, simnvml.Options{})
			testutil.Eventually(t, "first report", func() bool { return len(cp.events()) == 0 && cp.reportCount() > 0 })
			r.sim.Inject(spec)
			testutil.Eventually(t, row.kind.String(), func() bool {
				for _, e := range cp.events() {
					if e.GetKind() == row.kind && int(e.GetGpuIndex()) == spec.GPU {
						return true
					}
				}
				return false
			})
		})
	}
}

func TestLostGPUComesBack(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	r.sim.Inject(faultspec.Spec{Kind: faultspec.GPULost, GPU: 1})
	has := func(kind fleetv1.EventKind) func() bool {
		return func() bool {
			return slices.ContainsFunc(cp.events(), func(e *fleetv1.HealthEvent) bool { return e.GetKind() == kind && e.GetGpuIndex() == 1 })
		}
	}
	testutil.Eventually(t, "GPU lost", has(fleetv1.EventKind_EVENT_KIND_GPU_LOST))
	// The lost GPU is left out of heartbeats.
	testutil.Eventually(t, "heartbeat without GPU 1", func() bool {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		hb := cp.heartbeats[len(cp.heartbeats)-1]
		return len(hb.GetSamples()) == 3
	})
	r.sim.Heal(1)
	testutil.Eventually(t, "GPU recovered", has(fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED))
}

// TestEventsSurviveOutage: events seen while the control plane is down are
// delivered after it comes back, all of them, in order.
func TestEventsSurviveOutage(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	testutil.Eventually(t, "first report", func() bool { return cp.reportCount() > 0 })
	cp.stop()
	for i := range 20 {
		r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: uint32(100 + i), GPU: i % 4})
	}
	testutil.Eventually(t, "events buffered", func() bool { return r.a.Pending() == 20 })
	cp.start()
	testutil.Eventually(t, "events delivered", func() bool { return len(cp.events()) >= 20 })
	var xids []uint32
	for _, e := range cp.events() {
		xids = append(xids, e.GetXid())
	}
	for i := range 20 {
		if xids[i] != uint32(100+i) {
			t.Fatalf("delivered out of order or lost: %v", xids)
		}
	}
	// The agent lets go of the events once their report's answer is back,
	// a moment after the control plane has them.
	testutil.Eventually(t, "buffer emptied", func() bool { return r.a.Pending() == 0 })
	if r.a.Dropped() != 0 {
		t.Fatalf("dropped %d", r.a.Dropped())
	}
}

// TestEventsGoOutAsSoonAsTheControlPlaneIsBack: after an outage long
// enough to stretch the report retries to seconds, the buffered XID goes
// out within reconnectSpread of heartbeats getting through again, not at
// the next retry. The agent runs on a fake clock, so only the wake-up can
// deliver it.
func TestEventsGoOutAsSoonAsTheControlPlaneIsBack(t *testing.T) {
	cp := newFakeCP(t)
	clock := clockwork.NewFakeClock()
	r := startAgent(t, cp, simnvml.Options{}, func(o *Options) { o.Clock = clock })
	testutil.Eventually(t, "first report", func() bool { return cp.reportCount() > 0 })
	cp.setUnreachable(true)
	r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 48, GPU: 1})
	testutil.Eventually(t, "first refused report", func() bool { _, n := cp.refused(); return n == 1 })
	// Let the retries back off: 0.5–1 s, 1–2 s, 2–4 s, then 2.5–5 s.
	for want := 2; want <= 4; want++ {
		testutil.Eventually(t, "a refused retry", func() bool {
			clock.Advance(100 * time.Millisecond)
			_, n := cp.refused()
			return n >= want
		})
	}
	testutil.Eventually(t, "a refused heartbeat", func() bool {
		clock.Advance(50 * time.Millisecond)
		b, _ := cp.refused()
		return b > 0
	})
	cp.setUnreachable(false)
	// The next retry is at least 2.5 s away; the wake-up comes within a
	// heartbeat retry (about 50 ms here) and reconnectSpread.
	var advanced time.Duration
	testutil.Eventually(t, "XID delivered", func() bool {
		if len(cp.events()) == 1 {
			return true
		}
		if advanced < 50*time.Millisecond+reconnectSpread {
			clock.Advance(10 * time.Millisecond)
			advanced += 10 * time.Millisecond
		}
		return false
	})
}

// TestBufferOverflowDropsOldest: past the buffer's size the oldest events
// go, and the control plane is told how many.
func TestBufferOverflowDropsOldest(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{}, func(o *Options) { o.EventBuffer = 5 })
	testutil.Eventually(t, "first report", func() bool { return cp.reportCount() > 0 })
	cp.stop()
	for i := range 12 {
		r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: uint32(200 + i), GPU: 0})
		testutil.Eventually(t, "XID read", func() bool { return r.a.Pending()+int(r.a.Dropped()) == i+1 })
	}
	cp.start()
	testutil.Eventually(t, "events delivered", func() bool { return len(cp.events()) >= 5 })
	var xids []uint32
	for _, e := range cp.events() {
		xids = append(xids, e.GetXid())
	}
	if !slices.Equal(xids, []uint32{207, 208, 209, 210, 211}) {
		t.Fatalf("delivered %v, want the newest five", xids)
	}
	cp.mu.Lock()
	dropped := cp.reports[len(cp.reports)-1].GetDroppedEvents()
	cp.mu.Unlock()
	if dropped != 7 {
		t.Fatalf("control plane told of %d dropped events, want 7", dropped)
	}
}

func TestReRegistersWhenForgotten(t *testing.T) {
	cp := newFakeCP(t)
	startAgent(t, cp, simnvml.Options{})
	cp.mu.Lock()
	cp.heartbeatErr = notFound()
	cp.mu.Unlock()
	testutil.Eventually(t, "second registration", func() bool { regs, _ := cp.counts(); return regs >= 2 })
}

func TestRefusedRegistrationIsFatal(t *testing.T) {
	cp := newFakeCP(t)
	cp.registerErr = status.Error(codes.InvalidArgument, "node_id: \"bad id\" has ' ' at offset 3")
	backend := simnvml.New(simnvml.Options{GPUs: 1})
	conn, _ := rpcclient.Dial(rpcclient.Target{Addr: cp.addr, Insecure: true})
	defer conn.Close()
	a, err := New(Options{NodeID: "bad id", Conn: conn, NVML: backend})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "node_id") {
		t.Fatalf("Run = %v, want the refusal", err)
	}
}

// job is a real process that stands in for a GPU job; it is reaped as soon
// as it exits, as its parent would.
type job struct {
	*exec.Cmd
	reaped chan struct{}
}

func (j *job) pid() uint32 { return uint32(j.Process.Pid) }

func (j *job) kill() {
	_ = j.Process.Kill()
	<-j.reaped
}

func sleeper(t *testing.T, ignoreTERM bool) *job {
	t.Helper()
	script := "exec sleep 60"
	if ignoreTERM {
		script = "trap '' TERM; while true; do sleep 0.05; done"
	}
	j := &job{Cmd: exec.Command("sh", "-c", script), reaped: make(chan struct{})}
	if err := j.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = j.Wait(); close(j.reaped) }()
	t.Cleanup(j.kill)
	return j
}

func drainCommand(id string, deadline time.Duration, force bool) *fleetv1.Command {
	return &fleetv1.Command{
		Id: id, NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_DRAIN,
		Drain: &fleetv1.DrainSpec{Deadline: timestamppb.New(time.Now().Add(deadline)), Force: force},
	}
}

func TestDrainWaitsForProcesses(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	jobs := []*job{sleeper(t, false), sleeper(t, false)}
	r.sim.Device(0).AttachProcess(jobs[0].pid())
	r.sim.Device(3).AttachProcess(jobs[1].pid())
	cp.commands <- drainCommand("cmd-1", time.Minute, false)
	testutil.Eventually(t, "ack", func() bool { return cp.result("cmd-1", false) != nil })
	if got := cp.result("cmd-1", false).GetStatus(); got != fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED {
		t.Fatalf("first result %s", got)
	}
	jobs[0].kill()
	time.Sleep(300 * time.Millisecond)
	if cp.result("cmd-1", true) != nil {
		t.Fatal("drain finished with a GPU job still running")
	}
	jobs[1].kill()
	testutil.Eventually(t, "drain done", func() bool { return cp.result("cmd-1", true) != nil })
	res := cp.result("cmd-1", true)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || len(res.GetSignalledPids()) != 0 {
		t.Fatalf("result %v", res)
	}
}

func TestForcedDrainSignalsTermThenKill(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	polite, stubborn := sleeper(t, false), sleeper(t, true)
	r.sim.Device(1).AttachProcess(polite.pid())
	r.sim.Device(2).AttachProcess(stubborn.pid())
	cp.commands <- drainCommand("cmd-9", 300*time.Millisecond, true)
	testutil.Eventually(t, "forced drain done", func() bool { return cp.result("cmd-9", true) != nil })
	res := cp.result("cmd-9", true)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		t.Fatalf("result %v", res)
	}
	want := []uint32{polite.pid(), stubborn.pid()}
	slices.Sort(want)
	got := slices.Clone(res.GetSignalledPids())
	slices.Sort(got)
	if !slices.Equal(got, want) || len(res.GetRemainingPids()) != 0 {
		t.Fatalf("signalled %v remaining %v, want %v and none", res.GetSignalledPids(), res.GetRemainingPids(), want)
	}
	for _, j := range []*job{polite, stubborn} {
		select {
		case <-j.reaped:
		case <-time.After(5 * time.Second):
			t.Fatalf("job %d still running", j.pid())
		}
	}
}

// TestForcedDrainRefusesProtectedPIDs: whatever NVML lists, a forced drain
// never signals pid 0, init, the agent, its process group's leader or a
// pid the kernel would read as negative; it signals the real job and
// reports the others as refused and still running.
func TestForcedDrainRefusesProtectedPIDs(t *testing.T) {
	cp := newFakeCP(t)
	job := sleeper(t, false)
	var mu sync.Mutex
	var sent []uint32
	r := startAgent(t, cp, simnvml.Options{}, func(o *Options) {
		o.Signal = func(pid int, sig syscall.Signal) error {
			mu.Lock()
			sent = append(sent, uint32(pid))
			mu.Unlock()
			if pid != int(job.pid()) {
				// Never pass a protected pid on to the kernel, even when
				// the agent gets it wrong.
				return nil
			}
			return syscall.Kill(pid, sig)
		}
	})
	protected := []uint32{0, 1, uint32(os.Getpid()), math.MaxUint32}
	// The simulated GPU lists only live processes, and the leader of the
	// test's process group may already have exited (a shell that started
	// go test in the background, say); then there is nothing to refuse.
	if pgrp := syscall.Getpgrp(); pgrp != os.Getpid() && leaderRuns(pgrp) {
		protected = append(protected, uint32(pgrp))
	}
	for _, pid := range protected {
		r.sim.Device(0).AttachProcess(pid)
	}
	r.sim.Device(1).AttachProcess(job.pid())
	cp.commands <- drainCommand("cmd-12", 200*time.Millisecond, true)
	testutil.Eventually(t, "forced drain done", func() bool { return cp.result("cmd-12", true) != nil })
	res := cp.result("cmd-12", true)
	mu.Lock()
	signalled := slices.Clone(sent)
	mu.Unlock()
	for _, pid := range signalled {
		if pid != job.pid() {
			t.Fatalf("signalled protected pid %d (all signals: %v)", pid, signalled)
		}
	}
	want := slices.Clone(protected)
	slices.Sort(want)
	want = slices.Compact(want)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED ||
		!slices.Equal(res.GetSignalledPids(), []uint32{job.pid()}) || !slices.Equal(res.GetRemainingPids(), want) ||
		!strings.Contains(res.GetMessage(), "refused to signal 0 (the agent's own process group), 1 (init)") {
		t.Fatalf("result %v, want the job signalled and %v refused", res, want)
	}
	select {
	case <-job.reaped:
	case <-time.After(5 * time.Second):
		t.Fatal("the job was not stopped")
	}
}

func TestDrainWithoutForceLeavesJobsAtDeadline(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	job := sleeper(t, false)
	r.sim.Device(0).AttachProcess(job.pid())
	cp.commands <- drainCommand("cmd-2", 200*time.Millisecond, false)
	testutil.Eventually(t, "drain at deadline", func() bool { return cp.result("cmd-2", true) != nil })
	res := cp.result("cmd-2", true)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || !slices.Equal(res.GetRemainingPids(), []uint32{job.pid()}) {
		t.Fatalf("result %v", res)
	}
	select {
	case <-job.reaped:
		t.Fatal("a drain without force killed the job")
	default:
	}
}

func TestUncordonStopsDrain(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	job := sleeper(t, false)
	r.sim.Device(0).AttachProcess(job.pid())
	cp.commands <- drainCommand("cmd-3", time.Minute, true)
	testutil.Eventually(t, "ack", func() bool { return cp.result("cmd-3", false) != nil })
	cp.commands <- &fleetv1.Command{Id: "cmd-4", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_UNCORDON}
	testutil.Eventually(t, "uncordon", func() bool { return cp.result("cmd-4", true) != nil })
	if msg := cp.result("cmd-4", true).GetMessage(); !strings.Contains(msg, "stopped 1 drain") {
		t.Fatalf("uncordon said %q", msg)
	}
	time.Sleep(200 * time.Millisecond)
	if cp.result("cmd-3", true) != nil {
		t.Fatal("the cancelled drain went on")
	}
	select {
	case <-job.reaped:
		t.Fatal("the cancelled drain killed the job")
	default:
	}
}

// TestNewDrainReplacesDrainUnderWay: an operator hurrying a stuck drain
// sends a forced one with a short deadline; the first drain stops and the
// new one signals the job.
func TestNewDrainReplacesDrainUnderWay(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	job := sleeper(t, false)
	r.sim.Device(0).AttachProcess(job.pid())
	cp.commands <- drainCommand("cmd-10", time.Hour, false)
	testutil.Eventually(t, "ack", func() bool { return cp.result("cmd-10", false) != nil })
	cp.commands <- drainCommand("cmd-11", 200*time.Millisecond, true)
	testutil.Eventually(t, "forced drain done", func() bool { return cp.result("cmd-11", true) != nil })
	if res := cp.result("cmd-11", true); !slices.Equal(res.GetSignalledPids(), []uint32{job.pid()}) {
		t.Fatalf("forced drain result %v", res)
	}
	time.Sleep(200 * time.Millisecond)
	if cp.result("cmd-10", true) != nil {
		t.Fatal("the replaced drain reported a result")
	}
}

func TestDiagnosticsAndCordon(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	cp.commands <- &fleetv1.Command{Id: "cmd-5", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_CORDON}
	cp.commands <- &fleetv1.Command{Id: "cmd-6", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS}
	testutil.Eventually(t, "diagnostics", func() bool { return cp.result("cmd-6", true) != nil })
	if res := cp.result("cmd-5", true); res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		t.Fatalf("cordon %v", res)
	}
	res := cp.result("cmd-6", true)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || !strings.Contains(res.GetMessage(), "on 4 GPUs passed") {
		t.Fatalf("diagnostics %v", res)
	}
	r.sim.Inject(faultspec.Spec{Kind: faultspec.ECCDBE, GPU: 3})
	cp.commands <- &fleetv1.Command{Id: "cmd-7", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS}
	testutil.Eventually(t, "diagnostics again", func() bool { return cp.result("cmd-7", true) != nil })
	res = cp.result("cmd-7", true)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED || !strings.Contains(res.GetMessage(), "FAIL gpu3 ecc") {
		t.Fatalf("diagnostics after a DBE: %v", res)
	}
}

func TestTerminateCommandStopsAgent(t *testing.T) {
	cp := newFakeCP(t)
	r := startAgent(t, cp, simnvml.Options{})
	cp.commands <- &fleetv1.Command{Id: "cmd-8", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_TERMINATE}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
		r.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop")
	}
	if res := cp.result("cmd-8", true); res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		t.Fatalf("terminate result %v", res)
	}
}

// TestHeartbeatDelivery: told to fetch commands on heartbeat hints, the
// agent holds no long poll and still carries a command out.
func TestHeartbeatDelivery(t *testing.T) {
	cp := newFakeCP(t)
	cp.delivery = nodev1.CommandDelivery_COMMAND_DELIVERY_HEARTBEAT
	startAgent(t, cp, simnvml.Options{})
	cp.commands <- &fleetv1.Command{Id: "cmd-1", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_CORDON}
	testutil.Eventually(t, "cordon carried out", func() bool { return cp.result("cmd-1", true) != nil })
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, w := range cp.polls {
		if w != 0 {
			t.Fatalf("the agent long-polled (%s) in heartbeat delivery", w)
		}
	}
}

// TestSimulatedJobsFollowLifecycle: the agent tells the simulated GPUs the
// node's lifecycle; a forced drain signals their real job processes, and
// the node takes no new jobs while it is not ACTIVE.
func TestSimulatedJobsFollowLifecycle(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep program to stand in for jobs")
	}
	cp := newFakeCP(t)
	var sim atomic.Pointer[simnvml.Backend]
	r := startAgent(t, cp, simnvml.Options{GPUs: 2, Jobs: true, Seed: 3}, func(o *Options) {
		o.OnLifecycle = func(l fleetv1.LifecycleState) {
			if s := sim.Load(); s != nil {
				s.SetSchedulable(l == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE)
			}
		}
	})
	sim.Store(r.sim)
	running := func() int {
		n := 0
		for i := range 2 {
			ps, _ := r.sim.Device(i).GetComputeRunningProcesses()
			n += len(ps)
		}
		return n
	}
	testutil.Eventually(t, "jobs running", func() bool { return running() == 2 })
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
	cp.commands <- drainCommand("cmd-9", 300*time.Millisecond, true)
	testutil.Eventually(t, "drain result", func() bool { return cp.result("cmd-9", true) != nil })
	res := cp.result("cmd-9", true)
	if res.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || len(res.GetSignalledPids()) != 2 || len(res.GetRemainingPids()) != 0 {
		t.Fatalf("forced drain of the jobs: %v", res)
	}
	_, beats := cp.counts()
	testutil.Eventually(t, "more heartbeats", func() bool { _, b := cp.counts(); return b >= beats+3 })
	if r.sim.Schedulable() || running() != 0 {
		t.Fatalf("drained node: schedulable %t, %d jobs", r.sim.Schedulable(), running())
	}
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE)
	cp.commands <- &fleetv1.Command{Id: "cmd-10", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_UNCORDON}
	testutil.Eventually(t, "schedulable again", r.sim.Schedulable)
}

// TestStaleHeartbeatAnswerKeepsCommandLifecycle: a heartbeat answered
// before a drain was queued, and delivered after the agent started the
// drain, does not tell the node it is ACTIVE again.
func TestStaleHeartbeatAnswerKeepsCommandLifecycle(t *testing.T) {
	cp := newFakeCP(t)
	var mu sync.Mutex
	var seen []fleetv1.LifecycleState
	startAgent(t, cp, simnvml.Options{}, func(o *Options) {
		o.OnLifecycle = func(l fleetv1.LifecycleState) {
			mu.Lock()
			seen = append(seen, l)
			mu.Unlock()
		}
	})
	hold := make(chan struct{})
	cp.mu.Lock()
	cp.hold = hold
	cp.mu.Unlock()
	testutil.Eventually(t, "a heartbeat held", func() bool { cp.mu.Lock(); defer cp.mu.Unlock(); return cp.held == 1 })
	cp.setLifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
	cp.commands <- drainCommand("cmd-11", time.Hour, false)
	testutil.Eventually(t, "drain acknowledged", func() bool { return cp.result("cmd-11", false) != nil })
	close(hold)
	_, beats := cp.counts()
	testutil.Eventually(t, "more heartbeats", func() bool { _, b := cp.counts(); return b >= beats+2 })
	mu.Lock()
	defer mu.Unlock()
	i := slices.Index(seen, fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING)
	if i < 0 || slices.Contains(seen[i:], fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE) {
		t.Fatalf("lifecycles seen: %v", seen)
	}
}

// leaderRuns reports whether pid exists and is not a zombie.
func leaderRuns(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && err != syscall.EPERM {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// TestRefusedCertificateNeverRejoinsInALoop: while the control plane
// refuses the node's certificate, the agent joins again once at once and
// then only every rejoinRetry, whether the join fails (no token) or
// succeeds and the new certificate is refused too, so a token's uses are
// not spent in a loop.
func TestRefusedCertificateNeverRejoinsInALoop(t *testing.T) {
	tests := []struct {
		name    string
		joinErr error
	}{
		{"joined-but-still-refused", nil},
		{"no-token", errors.New("no join token")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := newFakeCP(t)
			clock := clockwork.NewFakeClock()
			var joins atomic.Int32
			startAgent(t, cp, simnvml.Options{}, func(o *Options) {
				o.Clock = clock
				o.Rejoin = func(context.Context) error { joins.Add(1); return tt.joinErr }
			})
			// An operator resets the node's identity mid-session: every
			// call is refused from now on.
			refused := status.Error(codes.Unauthenticated, "client certificate refused")
			cp.mu.Lock()
			cp.registerErr, cp.heartbeatErr = refused, refused
			cp.mu.Unlock()
			testutil.Eventually(t, "the first join", func() bool {
				clock.Advance(100 * time.Millisecond) // to the next heartbeat
				return joins.Load() == 1
			})
			// Without the fake clock moving, no further join may come.
			time.Sleep(300 * time.Millisecond)
			if n := joins.Load(); n != 1 {
				t.Fatalf("%d joins before rejoinRetry passed, want 1", n)
			}
			testutil.Eventually(t, "the join after rejoinRetry", func() bool {
				clock.Advance(rejoinRetry / 10)
				return joins.Load() == 2
			})
		})
	}
}
