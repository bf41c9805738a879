package simnvml

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/internal/testutil"
)

// controlled is a node on a fake clock with a control directory checked
// by hand, and what its control logs.
type controlled struct {
	t     *testing.T
	clock *clockwork.FakeClock
	b     *Backend
	c     *control
	dir   string
	logs  *testutil.SyncBuffer
}

func newControlled(t *testing.T, o Options) *controlled {
	t.Helper()
	clock := clockwork.NewFakeClock()
	o.Clock, o.NodeID = clock, "node-a"
	b := New(o)
	t.Cleanup(b.Stop)
	logs := &testutil.SyncBuffer{}
	dir := t.TempDir()
	return &controlled{t: t, clock: clock, b: b, dir: dir, logs: logs, c: newControl(b, dir, slog.New(slog.NewTextHandler(logs, nil)))}
}

func (c *controlled) write(name, content string) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, name), []byte(content), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// utilization reads every GPU's utilisation after d more of the clock.
func (c *controlled) utilization(d time.Duration) []uint32 {
	c.t.Helper()
	c.clock.Advance(d)
	var out []uint32
	for _, dev := range c.b.devices {
		u, ret := dev.GetUtilizationRates()
		if ret != nvml.SUCCESS {
			c.t.Fatal(ret)
		}
		out = append(out, u.Gpu)
	}
	return out
}

// within reports whether every reading is within 3 points of want.
func within(got []uint32, want uint32) bool {
	for _, g := range got {
		if g+3 < want || g > want+3 {
			return false
		}
	}
	return true
}

// TestControlSteersUtilization: the utilization file holds every GPU at
// its percent for as long as it is there, whatever the phases would do;
// bad content is logged once and changes nothing; without the file the
// phases resume.
func TestControlSteersUtilization(t *testing.T) {
	c := newControlled(t, Options{GPUs: 2, Seed: 7})
	c.c.check()
	if got := c.utilization(25 * time.Second); within(got, 3) {
		t.Fatalf("no file, and the GPUs are at %v already", got)
	}

	c.write(UtilizationFile, "3\n")
	c.c.check()
	c.utilization(30 * time.Second)
	for range 60 {
		if got := c.utilization(time.Minute); !within(got, 3) {
			t.Fatalf("steered to 3%%: %v", got)
		}
	}

	c.write(UtilizationFile, "95")
	c.c.check()
	if got := c.utilization(30 * time.Second); !within(got, 95) {
		t.Fatalf("steered to 95%%: %v", got)
	}

	for _, bad := range []string{"lots", "150", "NaN", "-1"} {
		mark := len(c.logs.String())
		c.write(UtilizationFile, bad)
		for range 3 {
			c.c.check()
		}
		logs := c.logs.String()[mark:]
		if n := strings.Count(logs, "ignored"); n != 1 || !strings.Contains(logs, bad) {
			t.Fatalf("%q logged %d times, want once and quoted:\n%s", bad, n, logs)
		}
		if got := c.utilization(time.Minute); !within(got, 95) {
			t.Fatalf("after %q: %v, want the steer held", bad, got)
		}
	}
	mark := len(c.logs.String())
	c.write(UtilizationFile, "")
	c.c.check()
	if logs := c.logs.String()[mark:]; strings.Contains(logs, "ignored") {
		t.Fatalf("an empty file, as one being written, was complained of:\n%s", logs)
	}

	if err := os.Remove(filepath.Join(c.dir, UtilizationFile)); err != nil {
		t.Fatal(err)
	}
	c.c.check()
	if !strings.Contains(c.logs.String(), "released") {
		t.Fatalf("release not logged:\n%s", c.logs.String())
	}
	for range 120 {
		if got := c.utilization(time.Minute); !within(got, 95) {
			return
		}
	}
	t.Fatal("released, the GPUs stayed at 95% for two hours")
}

// TestControlAppliesEachFaultLineOnce: each line of the node's faults file
// is applied once, as it appears, and a line written again is applied
// again; a line without its newline waits for it; bad lines are logged,
// never applied.
func TestControlAppliesEachFaultLineOnce(t *testing.T) {
	c := newControlled(t, Options{GPUs: 2, Idle: true})
	set, _ := c.b.EventSetCreate()
	for _, d := range c.b.devices {
		d.RegisterEvents(nvml.EventTypeXidCriticalError, set)
	}
	// xids waits for the XIDs the faults raise.
	xids := func() []uint64 {
		t.Helper()
		c.clock.Advance(time.Millisecond)
		var out []uint64
		for {
			e, ret := set.Wait(50)
			if ret != nvml.SUCCESS {
				return out
			}
			out = append(out, e.EventData)
		}
	}
	faults := "node-a" + FaultsSuffix
	c.write("node-b"+FaultsSuffix, "xid=48@gpu0\n")
	c.c.check()
	if got := xids(); len(got) != 0 {
		t.Fatalf("another node's faults applied: %v", got)
	}

	c.write(faults, "xid=13@gpu0\n")
	c.c.check()
	c.c.check()
	if got := xids(); len(got) != 1 || got[0] != 13 {
		t.Fatalf("XIDs %v, want [13] once", got)
	}

	c.write(faults, "xid=13@gpu0\n# a comment\n\nxid=13@gpu0\ntemp=97@gpu1\nmeltdown@gpu0\nxid=79@gpu5\nxid=31@gpu1")
	c.c.check()
	if got := xids(); len(got) != 1 || got[0] != 13 {
		t.Fatalf("XIDs %v, want [13] for the line written again", got)
	}
	if tc, _ := c.b.devices[1].GetTemperature(nvml.TEMPERATURE_GPU); tc != 97 {
		t.Fatalf("gpu1 at %d°C, want the fault's 97", tc)
	}
	logs := c.logs.String()
	if !strings.Contains(logs, `unknown kind \"meltdown\"`) || !strings.Contains(logs, "GPU 5 does not exist") {
		t.Fatalf("bad lines not logged:\n%s", logs)
	}

	c.write(faults, "xid=13@gpu0\n# a comment\n\nxid=13@gpu0\ntemp=97@gpu1\nmeltdown@gpu0\nxid=79@gpu5\nxid=31@gpu1\n")
	c.c.check()
	if got := xids(); len(got) != 1 || got[0] != 31 {
		t.Fatalf("XIDs %v, want [31] once its line ended", got)
	}
	if n := strings.Count(c.logs.String(), "not applied"); n != 2 {
		t.Fatalf("%d lines logged as not applied, want 2 each once:\n%s", n, c.logs.String())
	}
}

// TestControlSteerEndsAndStartsJobs: a GPU steered to 0 lists no job from
// its next read on, so the node is idle; steered high again, it runs one.
func TestControlSteerEndsAndStartsJobs(t *testing.T) {
	_, b := jobNode(t)
	d := b.Device(0)
	procs := func() int {
		p, _ := d.GetComputeRunningProcesses()
		return len(p)
	}
	if procs() != 1 {
		t.Fatal("the busy GPU runs no job")
	}
	b.Steer(0)
	if n := procs(); n != 0 {
		t.Fatalf("steered to 0, the GPU lists %d processes", n)
	}
	b.Steer(90)
	if n := procs(); n != 1 {
		t.Fatalf("steered to 90, the GPU lists %d processes, want its job", n)
	}
}

// TestControlIsFollowedUntilStop: New reads the directory before anything
// reads the GPUs, then again each ControlInterval until Stop.
func TestControlIsFollowedUntilStop(t *testing.T) {
	clock := clockwork.NewFakeClock()
	dir := t.TempDir()
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, UtilizationFile), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("95")
	b := New(Options{GPUs: 1, Idle: true, Clock: clock, ControlDir: dir})
	d := b.Device(0)
	clock.Advance(30 * time.Second)
	if u, _ := d.GetUtilizationRates(); u.Gpu < 90 {
		t.Fatalf("an idle GPU steered to 95%% from the start is at %d%%", u.Gpu)
	}
	write("40")
	testutil.EventuallyWithin(t, 10*time.Second, "the new percent followed", func() bool {
		clock.Advance(ControlInterval)
		u, _ := d.GetUtilizationRates()
		return u.Gpu >= 38 && u.Gpu <= 42
	})
	b.Stop()
	write("95")
	clock.Advance(time.Minute)
	if u, _ := d.GetUtilizationRates(); u.Gpu > 42 {
		t.Fatalf("followed after Stop: %d%%", u.Gpu)
	}
}
