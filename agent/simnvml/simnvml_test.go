package simnvml

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/simload"
	"github.com/navarch/navarch/internal/testutil"
)

func TestIsAnNVMLServer(t *testing.T) {
	var lib nvml.Interface = New(Options{GPUs: 3, Idle: true})
	if ret := lib.Init(); ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS || n != 3 {
		t.Fatalf("count %d %v", n, ret)
	}
	d, _ := lib.DeviceGetHandleByIndex(2)
	name, _ := d.GetName()
	uuid, _ := d.GetUUID()
	if name != "NVIDIA H100 80GB HBM3" || uuid == "" {
		t.Fatalf("name %q uuid %q", name, uuid)
	}
	byUUID, ret := lib.DeviceGetHandleByUUID(uuid)
	if ret != nvml.SUCCESS || byUUID != d {
		t.Fatal("lookup by UUID failed")
	}
	if pages, ret := d.GetRetiredPages(nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR); ret != nvml.SUCCESS || len(pages) != 0 {
		t.Fatalf("retired pages of a new GPU: %v %v, want none", pages, ret)
	}
}

// TestTelemetryFollowsTheWorkload: under load utilization, power and
// temperature rise together and stay within the GPU's limits.
func TestTelemetryFollowsTheWorkload(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := New(Options{GPUs: 1, Clock: clock, Seed: 7})
	d := b.Device(0)
	util0, _ := d.GetUtilizationRates()
	temp0, _ := d.GetTemperature(nvml.TEMPERATURE_GPU)
	power0, _ := d.GetPowerUsage()
	clock.Advance(25 * time.Second)
	util1, _ := d.GetUtilizationRates()
	temp1, _ := d.GetTemperature(nvml.TEMPERATURE_GPU)
	power1, _ := d.GetPowerUsage()
	if util1.Gpu < 60 || util1.Gpu <= util0.Gpu || temp1 <= temp0 || power1 <= power0 {
		t.Fatalf("busy GPU: util %d→%d, temp %d→%d, power %d→%d", util0.Gpu, util1.Gpu, temp0, temp1, power0, power1)
	}
	for range 200 {
		clock.Advance(17 * time.Second)
		u, _ := d.GetUtilizationRates()
		tc, _ := d.GetTemperature(nvml.TEMPERATURE_GPU)
		p, _ := d.GetPowerUsage()
		if u.Gpu > 100 || tc < 25 || tc >= slowdownTemp || p > simload.PowerLimitMilliwatts || p < simload.IdlePowerMilliwatts {
			t.Fatalf("implausible: util %d temp %d power %d", u.Gpu, tc, p)
		}
	}
}

func TestFaultsFireAtTheirDelay(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := New(Options{GPUs: 4, Clock: clock, Idle: true, Faults: []faultspec.Spec{
		{Kind: faultspec.Temp, Value: 97, GPU: 1, Delay: 2 * time.Second},
		{Kind: faultspec.GPULost, GPU: 3, Delay: 5 * time.Second},
	}})
	d1, d3 := b.Device(1), b.Device(3)
	clock.Advance(time.Second)
	if tc, _ := d1.GetTemperature(nvml.TEMPERATURE_GPU); tc == 97 {
		t.Fatal("thermal fault fired early")
	}
	clock.Advance(time.Second)
	testutil.Eventually(t, "thermal fault", func() bool { tc, _ := d1.GetTemperature(nvml.TEMPERATURE_GPU); return tc == 97 })
	if r, _ := d1.GetCurrentClocksEventReasons(); r&nvml.ClocksThrottleReasonHwThermalSlowdown == 0 {
		t.Fatalf("no thermal slowdown reason: %x", r)
	}
	clock.Advance(3 * time.Second)
	testutil.Eventually(t, "GPU lost", func() bool { _, ret := d3.GetUUID(); return ret == nvml.ERROR_GPU_IS_LOST })
	b.Heal(3)
	if _, ret := d3.GetUUID(); ret != nvml.SUCCESS {
		t.Fatalf("healed GPU: %v", ret)
	}
}

func TestChaosInjectsFaults(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := New(Options{GPUs: 8, Clock: clock, Idle: true, Seed: 42, ChaosInterval: time.Second})
	set, _ := b.EventSetCreate()
	for i := range 8 {
		d, _ := b.DeviceGetHandleByIndex(i)
		d.RegisterEvents(nvml.EventTypeXidCriticalError, set)
	}
	// Chaos schedules each fault from the previous one's goroutine, so the
	// clock moves in small steps while the test waits.
	testutil.Eventually(t, "an XID from chaos", func() bool {
		clock.Advance(time.Second)
		_, ret := set.Wait(1)
		return ret == nvml.SUCCESS
	})
	b.Stop()
}

// jobNode is a one-GPU node on a fake clock whose jobs are real processes.
func jobNode(t *testing.T) (*clockwork.FakeClock, *Backend) {
	t.Helper()
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Skip("no sleep program to stand in for jobs")
	}
	clock := clockwork.NewFakeClock()
	b := New(Options{GPUs: 1, Clock: clock, Seed: 7, Jobs: true})
	t.Cleanup(b.Stop)
	return clock, b
}

// TestJobsAreRealProcesses: with Jobs, a busy GPU runs a real process that
// NVML lists; when it is signalled the GPU goes idle; no new job starts
// while the node takes no work; Stop ends the jobs.
func TestJobsAreRealProcesses(t *testing.T) {
	clock, b := jobNode(t)
	d := b.Device(0)
	procs := func() []nvml.ProcessInfo {
		t.Helper()
		p, ret := d.GetComputeRunningProcesses()
		if ret != nvml.SUCCESS {
			t.Fatal(ret)
		}
		return p
	}
	clock.Advance(time.Second)
	ps := procs()
	if len(ps) != 1 {
		t.Fatalf("busy GPU lists %d processes, want its job", len(ps))
	}
	pid := int(ps[0].Pid)
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("job %d is not a live process: %v", pid, err)
	}

	// Cordoned, then drained by force: the job is signalled and the GPU
	// goes idle.
	b.SetSchedulable(false)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyWithin(t, 5*time.Second, "the signalled job gone from the GPU's processes", func() bool { return len(procs()) == 0 })
	clock.Advance(30 * time.Second)
	if u, _ := d.GetUtilizationRates(); u.Gpu > 10 {
		t.Fatalf("GPU without a job at %d%%", u.Gpu)
	}
	for range 60 {
		clock.Advance(10 * time.Second)
		if ps := procs(); len(ps) > 0 {
			t.Fatalf("a job started on a node that takes no work: %v", ps)
		}
	}

	// Uncordoned: work lands again.
	b.SetSchedulable(true)
	for i := 0; len(procs()) == 0; i++ {
		if i > 60 {
			t.Fatal("no job started after the node took work again")
		}
		clock.Advance(10 * time.Second)
	}
	pid = int(procs()[0].Pid)
	b.Stop()
	if alive(uint32(pid)) {
		t.Fatalf("job %d outlived Stop", pid)
	}
}

// TestLostGPUEndsItsJob: a GPU that falls off the bus takes its job with
// it, and its pid is forgotten at once.
func TestLostGPUEndsItsJob(t *testing.T) {
	_, b := jobNode(t)
	d := b.Device(0)
	ps, _ := d.GetComputeRunningProcesses()
	if len(ps) != 1 {
		t.Fatalf("busy GPU lists %v", ps)
	}
	b.Inject(faultspec.Spec{Kind: faultspec.GPULost, GPU: 0})
	if alive(ps[0].Pid) {
		t.Fatalf("job %d outlived its GPU", ps[0].Pid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pids) != 0 {
		t.Fatalf("lost GPU still lists pids %v", d.pids)
	}
}
