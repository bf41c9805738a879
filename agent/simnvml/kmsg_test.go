package simnvml

import (
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/internal/faultspec"
)

// kmsgRecord is a /dev/kmsg record taken apart.
type kmsgRecord struct {
	prio, xid  int
	seq        uint64
	usec       int64
	flags      string
	text, rest string // rest: the Xid line after "CODE, "
	bus        string
}

var (
	kmsgForm = regexp.MustCompile(`^(\d+),(\d+),(\d+),([^;,]*)(?:,[^;]*)?;([^\n]*)\n$`)
	xidForm  = regexp.MustCompile(`^NVRM: Xid \(PCI:([0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2})\): (\d+), (.*)$`)
)

// parseKmsg reads a record as a /dev/kmsg reader would, failing the test
// when it is not in that format.
func parseKmsg(t *testing.T, line string) kmsgRecord {
	t.Helper()
	m := kmsgForm.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("not a kmsg record: %q", line)
	}
	var r kmsgRecord
	r.prio, _ = strconv.Atoi(m[1])
	r.seq, _ = strconv.ParseUint(m[2], 10, 64)
	r.usec, _ = strconv.ParseInt(m[3], 10, 64)
	r.flags, r.text = m[4], m[5]
	if x := xidForm.FindStringSubmatch(r.text); x != nil {
		r.bus, r.rest = x[1], x[3]
		r.xid, _ = strconv.Atoi(x[2])
	}
	return r
}

type readResult struct {
	line string
	err  error
}

// readOne reads one record, or gives up after wait.
func readOne(r io.Reader, wait time.Duration) (readResult, bool) {
	ch := make(chan readResult, 1)
	go func() {
		buf := make([]byte, 8192)
		n, err := r.Read(buf)
		ch <- readResult{string(buf[:n]), err}
	}()
	select {
	case res := <-ch:
		return res, true
	case <-time.After(wait):
		return readResult{}, false
	}
}

// readN reads n records.
func readN(t *testing.T, r io.Reader, n int) []string {
	t.Helper()
	var out []string
	for range n {
		res, ok := readOne(r, 5*time.Second)
		if !ok || res.err != nil {
			t.Fatalf("after %q: %v (read done: %v)", out, res.err, ok)
		}
		out = append(out, res.line)
	}
	return out
}

// readAll reads the records there are, then closes r.
func readAll(t *testing.T, r io.ReadCloser) []string {
	t.Helper()
	defer r.Close()
	var out []string
	for {
		res, ok := readOne(r, 200*time.Millisecond)
		if !ok {
			return out
		}
		if res.err != nil {
			t.Fatalf("after %q: %v", out, res.err)
		}
		out = append(out, res.line)
	}
}

// xidLines keeps the records that are Xid lines.
func xidLines(t *testing.T, lines []string) []kmsgRecord {
	t.Helper()
	var out []kmsgRecord
	for _, l := range lines {
		if r := parseKmsg(t, l); r.xid != 0 {
			out = append(out, r)
		}
	}
	return out
}

func TestKernelLogRecordsAreKmsg(t *testing.T) {
	clock := clockwork.NewFakeClock()
	b := New(Options{GPUs: 4, Idle: true, Clock: clock})
	lines := readAll(t, b.KernelLog())
	if len(lines) == 0 {
		t.Fatal("a new boot's log is empty")
	}
	for i, l := range lines {
		if r := parseKmsg(t, l); r.seq != uint64(i) || r.flags != "-" {
			t.Fatalf("record %d of a new boot: %+v", i, r)
		}
	}
	clock.Advance(1500 * time.Millisecond)
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 149, Text: "NETIR_LINK_EVT Fatal XC0 i0 Link 02 (0x004505c6 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)", GPU: 2})
	clock.Advance(time.Second)
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 13, GPU: 0})
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 77, GPU: 3, Text: "odd \\ text é"})

	all := readAll(t, b.KernelLog())
	var last kmsgRecord
	for i, l := range all {
		r := parseKmsg(t, l)
		if r.seq != uint64(i) || r.usec < last.usec {
			t.Fatalf("record %q after %+v", l, last)
		}
		last = r
	}
	xids := xidLines(t, all)
	want := []struct {
		xid       int
		bus, rest string
		usec      int64
	}{
		{149, "0000:3a:00", "NETIR_LINK_EVT Fatal XC0 i0 Link 02 (0x004505c6 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)", 1_500_000},
		{13, "0000:18:00", "pid='<unknown>', name=<unknown>, Graphics Engine Exception", 2_500_000},
		// kmsg escapes the backslash and bytes outside ASCII.
		{77, "0000:5d:00", `pid='<unknown>', name=<unknown>, odd \x5c text \xc3\xa9`, 2_500_000},
	}
	if len(xids) != len(want) {
		t.Fatalf("Xid lines %+v", xids)
	}
	for i, w := range want {
		if x := xids[i]; x.xid != w.xid || x.bus != w.bus || x.rest != w.rest || x.usec != w.usec || x.prio != kernWarning {
			t.Fatalf("Xid line %+v, want %+v", x, w)
		}
	}
}

func TestXIDNamesTheProcessOnTheGPU(t *testing.T) {
	b := New(Options{GPUs: 1, Idle: true})
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep program to stand in for a job:", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	b.Device(0).AttachProcess(uint32(cmd.Process.Pid))
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 43, GPU: 0})
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 154, GPU: 0, Text: "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)"})
	xids := xidLines(t, readAll(t, b.KernelLog()))
	wantProcess := fmt.Sprintf("pid=%d, name=sleep, GPU stopped processing", cmd.Process.Pid)
	// The driver writes a recovery action's change without a process.
	if len(xids) != 2 || xids[0].rest != wantProcess || !strings.HasPrefix(xids[1].rest, "GPU recovery action changed") {
		t.Fatalf("Xid lines %+v, want %q and no process for 154", xids, wantProcess)
	}
}

// TestKernelLogReaderBlocksUntilClosed: a reader opened later gets the
// records already there, then waits for the next; Close ends the wait and
// later reads are io.EOF.
func TestKernelLogReaderBlocksUntilClosed(t *testing.T) {
	b := New(Options{GPUs: 1, Idle: true})
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 31, GPU: 0})
	r := b.KernelLog()
	there := len(readAll(t, b.KernelLog()))
	readN(t, r, there)

	done := make(chan readResult, 1)
	go func() {
		buf := make([]byte, 4096)
		n, err := r.Read(buf)
		done <- readResult{string(buf[:n]), err}
	}()
	select {
	case res := <-done:
		t.Fatalf("read returned %+v with no new record", res)
	case <-time.After(100 * time.Millisecond):
	}
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 45, GPU: 0})
	if res := <-done; res.err != nil || parseKmsg(t, res.line).xid != 45 {
		t.Fatalf("waiting read: %+v", res)
	}

	go func() {
		buf := make([]byte, 4096)
		_, err := r.Read(buf)
		done <- readResult{err: err}
	}()
	time.Sleep(50 * time.Millisecond)
	r.Close()
	if res := <-done; !errors.Is(res.err, io.EOF) {
		t.Fatalf("a waiting read after Close: %v, want io.EOF", res.err)
	}
	if _, err := r.Read(make([]byte, 4096)); !errors.Is(err, io.EOF) {
		t.Fatalf("a read of a closed log: %v, want io.EOF", err)
	}
}

func TestKernelLogReadErrors(t *testing.T) {
	b := New(Options{GPUs: 1, Idle: true})
	t.Run("short-buffer", func(t *testing.T) {
		r := b.KernelLog()
		defer r.Close()
		if _, err := r.Read(make([]byte, 4)); !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("a short read: %v, want EINVAL as /dev/kmsg", err)
		}
		// The kernel moves past the record before it finds the buffer
		// short, so the next read is the next record.
		if r := parseKmsg(t, readN(t, r, 1)[0]); r.seq != 1 {
			t.Fatalf("after a short read: %+v, want the next record", r)
		}
	})
	t.Run("fell-behind", func(t *testing.T) {
		r := b.KernelLog()
		defer r.Close()
		for range maxRecords {
			b.klog.write(b.clock.Now(), kernInfo, "filler")
		}
		if _, err := r.Read(make([]byte, 4096)); !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("a reader past the ring: %v, want EPIPE", err)
		}
		oldest := parseKmsg(t, readN(t, r, 1)[0])
		if oldest.seq == 0 || oldest.text != "filler" {
			t.Fatalf("after EPIPE: %+v, want the oldest record kept", oldest)
		}
	})
	t.Run("after-reboot", func(t *testing.T) {
		r := b.KernelLog()
		defer r.Close()
		if err := b.Reboot(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Read(make([]byte, 4096)); !errors.Is(err, io.EOF) {
			t.Fatalf("a reader of the last boot: %v, want io.EOF", err)
		}
	})
}
