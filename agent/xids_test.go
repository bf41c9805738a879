package agent

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/agent/kmsg"
	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestXIDMerge walks NVML events and kernel-log lines through the merge,
// each at its time after t0, and checks which NVML events go out when
// their grace has passed.
func TestXIDMerge(t *testing.T) {
	type input struct {
		after  time.Duration
		kernel bool // a kernel-log line, else an NVML event
		gpu    int32
		code   uint32
	}
	nvml := func(after time.Duration, gpu int32, code uint32) input { return input{after, false, gpu, code} }
	line := func(after time.Duration, gpu int32, code uint32) input { return input{after, true, gpu, code} }
	tests := []struct {
		name   string
		inputs []input
		// at is when the test asks what is due, after t0.
		at   time.Duration
		want []xidKey
	}{
		{"nvml-alone-after-the-grace", []input{nvml(0, 1, 48)}, nvmlGrace, []xidKey{{1, 48}}},
		{"nvml-alone-within-the-grace", []input{nvml(0, 1, 48)}, nvmlGrace - time.Millisecond, nil},
		{"nvml-then-line", []input{nvml(0, 2, 13), line(2*time.Second, 2, 13)}, time.Minute, nil},
		{"line-then-nvml", []input{line(0, 2, 13), nvml(3*time.Second, 2, 13)}, time.Minute, nil},
		{"line-too-long-before-nvml", []input{line(0, 2, 13), nvml(nvmlGrace+time.Second, 2, 13)}, time.Minute, []xidKey{{2, 13}}},
		{"line-for-another-gpu", []input{nvml(0, 1, 13), line(time.Second, 2, 13)}, time.Minute, []xidKey{{1, 13}}},
		{"line-for-another-code", []input{nvml(0, 2, 13), line(time.Second, 2, 43)}, time.Minute, []xidKey{{2, 13}}},
		{"burst-matched-by-one-line", []input{nvml(0, 2, 13), nvml(10*time.Millisecond, 2, 13), line(time.Second, 2, 13), nvml(2*time.Second, 2, 13)}, time.Minute, nil},
		{"oldest-due-first", []input{nvml(0, 1, 48), nvml(3*time.Second, 3, 94)}, nvmlGrace + time.Second, []xidKey{{1, 48}}},
	}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newXIDMerge(true)
			for _, in := range tt.inputs {
				e := &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: in.gpu, Xid: in.code}
				if in.kernel {
					m.fromKernel(e, t0.Add(in.after))
				} else {
					m.fromNVML(e, t0.Add(in.after))
				}
			}
			var got []xidKey
			for _, e := range m.due(t0.Add(tt.at)) {
				got = append(got, keyOf(e))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("due %v, want %v", got, tt.want)
			}
		})
	}
}

// TestXIDMergeKernelGone: when the kernel log stops, the held events go
// out at once, and later ones are not held.
func TestXIDMergeKernelGone(t *testing.T) {
	t0 := time.Now()
	m := newXIDMerge(true)
	m.fromNVML(&fleetv1.HealthEvent{GpuIndex: 0, Xid: 79}, t0)
	if at, ok := m.next(); !ok || !at.Equal(t0.Add(nvmlGrace)) {
		t.Fatalf("next %v %v, want the held event due after the grace", at, ok)
	}
	if got := m.kernelGone(); len(got) != 1 || got[0].GetXid() != 79 {
		t.Fatalf("released %v, want the held XID 79", got)
	}
	if _, ok := m.next(); ok || m.kernel {
		t.Fatal("still holding after the kernel log went")
	}
}

func TestKernelXIDEvent(t *testing.T) {
	boot := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	gpus := gpusByBus([]*fleetv1.Gpu{
		{Index: 0, Uuid: "GPU-a", PciBusId: "00000000:3B:00.0"},
		{Index: 1, Uuid: "GPU-b", PciBusId: "00000000:86:00.0"},
	})
	tests := []struct {
		name        string
		line        string
		wantGPU     int32
		wantUUID    string
		wantMessage string
	}{
		{"known-bus", "NVRM: Xid (PCI:0000:86:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
			1, "GPU-b", "pid='<unknown>', name=<unknown>, GPU has fallen off the bus."},
		{"unknown-bus", "NVRM: Xid (PCI:0000:af:00): 79, GPU has fallen off the bus.",
			-1, "", "GPU has fallen off the bus. [PCI 00000000:AF:00.0: no GPU of this node's inventory]"},
		{"no-text", "NVRM: Xid (PCI:0000:3b:00): 46", 0, "GPU-a", "XID 46 reported by the driver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, ok := kmsg.ParseXID(tt.line)
			if !ok {
				t.Fatalf("%q does not parse", tt.line)
			}
			x.Seq, x.Time = 812, boot.Add(time.Hour)
			e := kernelXIDEvent(x, gpus)
			if e.GetKind() != fleetv1.EventKind_EVENT_KIND_XID || e.GetGpuIndex() != tt.wantGPU || e.GetGpuUuid() != tt.wantUUID ||
				e.GetXid() != x.Code || e.GetKernelSeq() != 812 || !e.GetTime().AsTime().Equal(x.Time) || e.GetMessage() != tt.wantMessage {
				t.Fatalf("event %v; want GPU %d (%q), XID %d, seq 812, message %q", e, tt.wantGPU, tt.wantUUID, x.Code, tt.wantMessage)
			}
		})
	}
}

// fakeKernelLog serves records as /dev/kmsg does, one per Read, and
// waits for the next until it is closed.
type fakeKernelLog struct {
	records chan string
	once    sync.Once
	closed  chan struct{}
}

func newFakeKernelLog() *fakeKernelLog {
	return &fakeKernelLog{records: make(chan string, 16), closed: make(chan struct{})}
}

func (f *fakeKernelLog) Read(p []byte) (int, error) {
	select {
	case r := <-f.records:
		return copy(p, r), nil
	case <-f.closed:
		return 0, os.ErrClosed
	}
}

func (f *fakeKernelLog) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

// kernelBus is a GPU's bus id as the driver's XID lines write it.
func kernelBus(t *testing.T, nvmlBusID string) string {
	t.Helper()
	b, ok := kmsg.ParseBusID(nvmlBusID)
	if !ok {
		t.Fatalf("bus id %q", nvmlBusID)
	}
	return fmt.Sprintf("PCI:%04x:%02x:%02x", b.Domain, b.Bus, b.Device)
}

func xidEvents(cp *fakeCP, code uint32) []*fleetv1.HealthEvent {
	var out []*fleetv1.HealthEvent
	for _, e := range cp.events() {
		if e.GetKind() == fleetv1.EventKind_EVENT_KIND_XID && e.GetXid() == code {
			out = append(out, e)
		}
	}
	return out
}

// nvmlTaken reports whether the agent logged that it took NVML's XID
// named by attrs: held for its kernel-log line, or, with held false,
// either held or dropped as that line already came.
func nvmlTaken(logs *testutil.SyncBuffer, attrs string, held bool) bool {
	for _, l := range strings.Split(logs.String(), "\n") {
		if !strings.HasSuffix(l, attrs) {
			continue
		}
		if strings.Contains(l, `msg="XID from NVML waits for its kernel log line"`) ||
			!held && strings.Contains(l, `msg="XID from NVML already came from the kernel log"`) {
			return true
		}
	}
	return false
}

// TestKernelLogXIDs: with a kernel log, an XID arrives once, with the
// driver's text and the kernel's sequence number, though NVML reports it
// too; an XID the log does not show still arrives from NVML once its grace
// has passed; and a line for a bus id the node lacks arrives for the node.
func TestKernelLogXIDs(t *testing.T) {
	cp := newFakeCP(t)
	clock := clockwork.NewFakeClock()
	klog := newFakeKernelLog()
	boot := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	var logs testutil.SyncBuffer
	r := startAgent(t, cp, simnvml.Options{GPUs: 4}, func(o *Options) {
		o.Clock = clock
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.KernelLog = func() (io.ReadCloser, error) { return klog, nil }
		o.KernelBoot = func() (time.Time, error) { return boot, nil }
	})
	cp.mu.Lock()
	gpu2 := cp.registrations[0].GetGpus()[2]
	cp.mu.Unlock()

	// NVML reports the XID; the agent holds it for its line.
	r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 13, GPU: 2})
	testutil.Eventually(t, "the NVML event held", func() bool { return nvmlTaken(&logs, "gpu=2 xid=13", true) })
	const text = "pid='<unknown>', name=<unknown>, Graphics Exception: ESR 0x57c730=0xc04000b 0x57c734=0x24"
	klog.records <- fmt.Sprintf("4,700,5000000,-;NVRM: Xid (%s): 13, %s\n", kernelBus(t, gpu2.GetPciBusId()), text)
	testutil.Eventually(t, "the kernel log's XID 13", func() bool { return len(xidEvents(cp, 13)) > 0 })
	e := xidEvents(cp, 13)[0]
	if e.GetGpuIndex() != 2 || e.GetGpuUuid() != gpu2.GetUuid() || e.GetKernelSeq() != 700 || e.GetMessage() != text ||
		!e.GetTime().AsTime().Equal(boot.Add(5*time.Second)) {
		t.Fatalf("XID 13 event %v; want GPU 2, seq 700, the driver's text, at boot+5s", e)
	}

	// An XID only NVML reports.
	r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 48, GPU: 1})
	testutil.Eventually(t, "the NVML event held", func() bool { return nvmlTaken(&logs, "gpu=1 xid=48", true) })
	if n := len(xidEvents(cp, 48)); n != 0 {
		t.Fatalf("%d XID 48 events before the grace passed", n)
	}
	clock.Advance(nvmlGrace)
	testutil.Eventually(t, "NVML's XID 48 after the grace", func() bool { return len(xidEvents(cp, 48)) == 1 })
	if e := xidEvents(cp, 48)[0]; e.GetGpuIndex() != 1 || e.GetKernelSeq() != 0 {
		t.Fatalf("XID 48 event %v; want GPU 1 from NVML", e)
	}

	// A line for a bus id no GPU of the node has. Events arrive in order,
	// so once it is there, an XID 13 released after the grace would be too.
	klog.records <- "4,701,6000000,-;NVRM: Xid (PCI:0000:fe:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
	testutil.Eventually(t, "the unknown GPU's XID 79", func() bool { return len(xidEvents(cp, 79)) == 1 })
	if e := xidEvents(cp, 79)[0]; e.GetGpuIndex() != -1 || e.GetKernelSeq() != 701 || !strings.Contains(e.GetMessage(), "00000000:FE:00.0") {
		t.Fatalf("XID 79 event %v; want the node's, seq 701, naming bus 00000000:FE:00.0", e)
	}
	if n := len(xidEvents(cp, 13)); n != 1 {
		t.Fatalf("%d XID 13 events, want the kernel log's alone", n)
	}
}

// TestUnreadableKernelLog: a kernel log that cannot be opened is said once,
// and NVML's XIDs go out at once, as without one.
func TestUnreadableKernelLog(t *testing.T) {
	cp := newFakeCP(t)
	var logs testutil.SyncBuffer
	var opens atomic.Int32
	r := startAgent(t, cp, simnvml.Options{GPUs: 2}, func(o *Options) {
		o.Clock = clockwork.NewFakeClock()
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		o.KernelLog = func() (io.ReadCloser, error) {
			opens.Add(1)
			return nil, &fs.PathError{Op: "open", Path: "/dev/kmsg", Err: fs.ErrPermission}
		}
	})
	r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 79, GPU: 1})
	testutil.Eventually(t, "NVML's XID 79 at once", func() bool { return len(xidEvents(cp, 79)) == 1 })
	if n := strings.Count(logs.String(), "kernel log not readable"); n != 1 || opens.Load() != 1 {
		t.Fatalf("said %d times after %d opens, want once:\n%s", n, opens.Load(), logs.String())
	}
}

// TestSimulatedKernelLog: a simulated node's XID reaches the control plane
// once, from its kernel log, with the text the simulator wrote, the
// record's sequence number and a time on the simulated boot's clock.
func TestSimulatedKernelLog(t *testing.T) {
	cp := newFakeCP(t)
	clock := clockwork.NewFakeClock()
	var logs testutil.SyncBuffer
	r := startAgent(t, cp, simnvml.Options{GPUs: 2}, func(o *Options) {
		sim := o.NVML.(*simnvml.Backend)
		o.Clock = clock
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.KernelLog = func() (io.ReadCloser, error) { return sim.KernelLog(), nil }
		o.KernelBoot = func() (time.Time, error) { return sim.KernelBoot(), nil }
	})
	const text = "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)"
	before := time.Now()
	r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 154, GPU: 1, Text: text})
	testutil.Eventually(t, "the simulated XID 154", func() bool { return len(xidEvents(cp, 154)) == 1 })
	e := xidEvents(cp, 154)[0]
	if e.GetGpuIndex() != 1 || e.GetKernelSeq() == 0 || !strings.HasSuffix(e.GetMessage(), text) {
		t.Fatalf("XID 154 event %v; want GPU 1 from the kernel log with the simulator's text", e)
	}
	if at := e.GetTime().AsTime(); at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("XID 154 at %v, want about %v", at, before)
	}
	testutil.Eventually(t, "NVML's XID 154 taken", func() bool { return nvmlTaken(&logs, "gpu=1 xid=154", false) })
	clock.Advance(nvmlGrace)
	r.sim.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 43, GPU: 0})
	testutil.Eventually(t, "the simulated XID 43", func() bool { return len(xidEvents(cp, 43)) == 1 })
	if n := len(xidEvents(cp, 154)); n != 1 {
		t.Fatalf("%d XID 154 events, want the kernel log's alone", n)
	}
}

// TestKernelLogReopensAfterItEnds: a kernel log that ends, as a simulated
// node's does at a simulated reboot, is opened again, and its XIDs read.
func TestKernelLogReopensAfterItEnds(t *testing.T) {
	cp := newFakeCP(t)
	clock := clockwork.NewFakeClock()
	next := newFakeKernelLog()
	next.records <- "4,3,1000000,-;NVRM: Xid (PCI:0000:01:00): 31, after the reboot\n"
	var opens atomic.Int32
	startAgent(t, cp, simnvml.Options{GPUs: 1}, func(o *Options) {
		o.Clock = clock
		o.KernelLog = func() (io.ReadCloser, error) {
			if opens.Add(1) == 1 {
				return io.NopCloser(strings.NewReader("")), nil
			}
			return next, nil
		}
		o.KernelBoot = func() (time.Time, error) { return clock.Now(), nil }
	})
	testutil.Eventually(t, "the log opened again", func() bool {
		clock.Advance(kernelReopen)
		return opens.Load() == 2
	})
	testutil.Eventually(t, "the XID of the log opened again", func() bool { return len(xidEvents(cp, 31)) == 1 })
	if e := xidEvents(cp, 31)[0]; e.GetKernelSeq() != 3 || e.GetGpuIndex() != -1 {
		t.Fatalf("XID 31 event %v; want seq 3 for the node (bus 0000:01:00 is no simulated GPU's)", e)
	}
}
