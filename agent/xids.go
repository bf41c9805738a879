package agent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent/gpu"
	"github.com/navarch/navarch/agent/kmsg"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// XIDs reach the agent two ways: NVML's event set gives the code, and the
// driver's "NVRM: Xid" line in the kernel log gives the code with the
// driver's text (which NVLink unit failed, what recovery the driver asks
// for) and the kernel's sequence number. Where the kernel log is read, its
// lines are the XIDs the agent reports, and an NVML event stands in only
// for a line that never came.

// nvmlGrace is how long an XID from NVML waits for the same GPU's and
// code's kernel-log line before it is reported on its own, and how long a
// line makes NVML's events for that GPU and code redundant. The driver
// prints the line and raises the event on the same error path, so the two
// arrive within milliseconds of each other; seconds leave room for a
// loaded node's scheduling without holding back long an XID that the log
// does not show.
const nvmlGrace = 5 * time.Second

// kernelReopen is how long the agent waits to open the kernel log again
// after it ended. /dev/kmsg never ends; a simulated node's log ends at a
// simulated reboot, and the new boot's log opens once the reboot is done.
const kernelReopen = time.Second

// xidLoop pushes every XID as it comes: from the kernel log at once, from
// NVML at once without a kernel log, else after nvmlGrace unless its
// kernel-log line came.
func (a *Agent) xidLoop(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	nvmlXIDs := make(chan gpu.XIDEvent, 64)
	nvmlDone := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		nvmlDone <- a.reader.WatchXIDs(ctx, nvmlXIDs, func(g int, err error) {
			a.log.Warn("GPU cannot report XIDs", "gpu", g, "err", err)
		}, a.clock.Now)
	}()
	gpus := gpusByBus(a.inv.GPUs)
	kernelXIDs, kernelDone := a.readKernelLog(ctx, &wg)
	merge := newXIDMerge(kernelXIDs != nil)
	var reopen clockwork.Timer
	for {
		var due, reopened <-chan time.Time
		var dueTimer clockwork.Timer
		if at, ok := merge.next(); ok {
			dueTimer = a.clock.NewTimer(at.Sub(a.clock.Now()))
			due = dueTimer.Chan()
		}
		if reopen != nil {
			reopened = reopen.Chan()
		}
		select {
		case <-ctx.Done():
		case err := <-nvmlDone:
			nvmlXIDs, nvmlDone = nil, nil
			if err != nil {
				a.log.Error("XID events from NVML unavailable", "err", err, "kernel_log", kernelXIDs != nil)
			}
		case x := <-nvmlXIDs:
			e := xidEvent(x)
			if !merge.kernel {
				a.pushXIDs("nvml", e)
				break
			}
			if merge.fromNVML(e, a.clock.Now()) {
				a.log.Debug("XID from NVML waits for its kernel log line", "gpu", x.GPU, "xid", x.XID)
			} else {
				a.log.Debug("XID from NVML already came from the kernel log", "gpu", x.GPU, "xid", x.XID)
			}
		case x := <-kernelXIDs:
			e := kernelXIDEvent(x, gpus)
			merge.fromKernel(e, a.clock.Now())
			a.pushXIDs("kernel log", e)
		case err := <-kernelDone:
			kernelXIDs, kernelDone = nil, nil
			if err != nil {
				a.log.Warn("kernel log unreadable; XIDs come from NVML alone from now on", "err", err)
				a.pushXIDs("nvml", merge.kernelGone()...)
				break
			}
			reopen = a.clock.NewTimer(kernelReopen)
		case <-reopened:
			reopen = nil
			if kernelXIDs, kernelDone = a.readKernelLog(ctx, &wg); kernelXIDs == nil {
				a.pushXIDs("nvml", merge.kernelGone()...)
			}
		case <-due:
			a.pushXIDs("nvml", merge.due(a.clock.Now())...)
		}
		if dueTimer != nil {
			dueTimer.Stop()
		}
		if ctx.Err() != nil {
			if reopen != nil {
				reopen.Stop()
			}
			return
		}
	}
}

// pushXIDs logs XID events, counts them in the metrics (those from before
// the agent started, the kernel log's backlog, only as the last XID) and
// queues them for the control plane, which is told of the backlog too.
func (a *Agent) pushXIDs(source string, evs ...*fleetv1.HealthEvent) {
	for _, e := range evs {
		a.log.Warn("XID", "gpu", e.GetGpuIndex(), "xid", e.GetXid(), "source", source, "kernel_seq", e.GetKernelSeq(), "detail", e.GetMessage())
		a.xids.add(e)
	}
	a.buf.push(evs...)
}

// readKernelLog opens the kernel log and reads its XIDs on a goroutine of
// wg until ctx ends or the log does; done says why it ended. Both channels
// are nil when there is no kernel log to read, which it logs.
func (a *Agent) readKernelLog(ctx context.Context, wg *sync.WaitGroup) (xids <-chan kmsg.XID, done <-chan error) {
	if a.o.KernelLog == nil {
		return nil, nil
	}
	log, err := a.o.KernelLog()
	if err != nil {
		a.log.Warn("kernel log not readable; XIDs come from NVML alone, without the driver's text", "err", err)
		return nil, nil
	}
	boot, err := a.kernelBoot()
	if err != nil {
		_ = log.Close()
		a.log.Warn("kernel log not read: when its boot began is unknown; XIDs come from NVML alone", "err", err)
		return nil, nil
	}
	// Unbuffered, so that every XID read is taken before done says the
	// log ended.
	out := make(chan kmsg.XID)
	end := make(chan error, 1)
	r := kmsg.Reader{Boot: boot, Skipped: func(err error) { a.log.Warn("kernel log records skipped", "err", err) }}
	wg.Add(1)
	go func() {
		defer wg.Done()
		end <- r.Run(ctx, log, out)
	}()
	return out, end
}

func (a *Agent) kernelBoot() (time.Time, error) {
	if a.o.KernelBoot != nil {
		return a.o.KernelBoot()
	}
	return kmsg.BootTime(a.clock.Now())
}

// gpusByBus indexes the inventory by PCI bus id, which the driver's XID
// lines name GPUs by.
func gpusByBus(gpus []*fleetv1.Gpu) map[kmsg.BusID]*fleetv1.Gpu {
	out := make(map[kmsg.BusID]*fleetv1.Gpu, len(gpus))
	for _, g := range gpus {
		if bus, ok := kmsg.ParseBusID(g.GetPciBusId()); ok {
			out[bus] = g
		}
	}
	return out
}

// kernelXIDEvent is the event for a kernel-log XID line. A line for a bus
// id the inventory lacks (a GPU that did not answer at start, say) is
// still reported, for the node, naming the bus id after the driver's
// text, which the control plane reads from the start.
func kernelXIDEvent(x kmsg.XID, gpus map[kmsg.BusID]*fleetv1.Gpu) *fleetv1.HealthEvent {
	e := &fleetv1.HealthEvent{
		Kind:      fleetv1.EventKind_EVENT_KIND_XID,
		GpuIndex:  -1,
		Xid:       x.Code,
		Time:      timestamppb.New(x.Time),
		Message:   x.Text,
		KernelSeq: x.Seq,
	}
	if e.Message == "" {
		e.Message = fmt.Sprintf("XID %d reported by the driver", x.Code)
	}
	if g, ok := gpus[x.Bus]; ok {
		e.GpuIndex, e.GpuUuid = int32(g.GetIndex()), g.GetUuid()
	} else {
		e.Message += fmt.Sprintf(" [PCI %s: no GPU of this node's inventory]", x.Bus)
	}
	return e
}

// xidMerge holds NVML's XID events back while a kernel log is read, and
// drops those whose kernel-log line came within nvmlGrace of them.
type xidMerge struct {
	// kernel is set while a kernel log is read; without one nothing is
	// held.
	kernel bool
	// lines is when a kernel-log line last came for each GPU and code; it
	// holds at most one entry per GPU and code.
	lines map[xidKey]time.Time
	// held are the NVML events waiting for their line, oldest first.
	held []heldXID
}

type xidKey struct {
	gpu  int32
	code uint32
}

type heldXID struct {
	key xidKey
	due time.Time
	ev  *fleetv1.HealthEvent
}

func newXIDMerge(kernel bool) *xidMerge {
	return &xidMerge{kernel: kernel, lines: make(map[xidKey]time.Time)}
}

func keyOf(e *fleetv1.HealthEvent) xidKey { return xidKey{e.GetGpuIndex(), e.GetXid()} }

// fromNVML takes an NVML event that came at now: dropped when its line
// came within nvmlGrace before, else held until nvmlGrace has passed. It
// reports whether it holds the event.
func (m *xidMerge) fromNVML(e *fleetv1.HealthEvent, now time.Time) bool {
	k := keyOf(e)
	if at, ok := m.lines[k]; ok && now.Sub(at) <= nvmlGrace {
		return false
	}
	m.held = append(m.held, heldXID{key: k, due: now.Add(nvmlGrace), ev: e})
	return true
}

// fromKernel takes a kernel-log line's event that came at now and drops
// the NVML events held for the same GPU and code.
func (m *xidMerge) fromKernel(e *fleetv1.HealthEvent, now time.Time) {
	k := keyOf(e)
	m.lines[k] = now
	m.held = slices.DeleteFunc(m.held, func(h heldXID) bool { return h.key == k })
}

// due releases the held events whose grace has passed by now.
func (m *xidMerge) due(now time.Time) []*fleetv1.HealthEvent {
	n := 0
	for n < len(m.held) && !m.held[n].due.After(now) {
		n++
	}
	return m.release(n)
}

// next is when the oldest held event is due.
func (m *xidMerge) next() (time.Time, bool) {
	if len(m.held) == 0 {
		return time.Time{}, false
	}
	return m.held[0].due, true
}

// kernelGone releases every held event: no line will come for them.
func (m *xidMerge) kernelGone() []*fleetv1.HealthEvent {
	m.kernel = false
	return m.release(len(m.held))
}

func (m *xidMerge) release(n int) []*fleetv1.HealthEvent {
	out := make([]*fleetv1.HealthEvent, 0, n)
	for _, h := range m.held[:n] {
		out = append(out, h.ev)
	}
	m.held = slices.Delete(m.held, 0, n)
	return out
}
