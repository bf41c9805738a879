package kmsg

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeLog serves reads as /dev/kmsg does: one record, or one error, per
// Read. When its reads run out it waits until it is closed, as /dev/kmsg
// waits for the next record, or ends with io.EOF if eof is set.
type fakeLog struct {
	reads chan fakeRead
	eof   bool

	once   sync.Once
	closed chan struct{}
}

type fakeRead struct {
	data string
	err  error
}

func newFakeLog(eof bool, reads ...fakeRead) *fakeLog {
	f := &fakeLog{reads: make(chan fakeRead, len(reads)), eof: eof, closed: make(chan struct{})}
	for _, r := range reads {
		f.reads <- r
	}
	return f
}

func (f *fakeLog) Read(p []byte) (int, error) {
	select {
	case r := <-f.reads:
		return copy(p, r.data), r.err
	default:
	}
	if f.eof {
		return 0, io.EOF
	}
	select {
	case r := <-f.reads:
		return copy(p, r.data), r.err
	case <-f.closed:
		return 0, os.ErrClosed
	}
}

func (f *fakeLog) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

func (f *fakeLog) isClosed() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

func records(lines ...string) []fakeRead {
	var out []fakeRead
	for _, l := range lines {
		out = append(out, fakeRead{data: l})
	}
	return out
}

var boot = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// runAll runs a Reader over log until it returns and collects the XIDs.
func runAll(t *testing.T, log *fakeLog) ([]XID, []error, error) {
	t.Helper()
	var skipped []error
	r := Reader{Boot: boot, Skipped: func(err error) { skipped = append(skipped, err) }}
	out := make(chan XID, 100)
	err := r.Run(context.Background(), log, out)
	close(out)
	var got []XID
	for x := range out {
		got = append(got, x)
	}
	return got, skipped, err
}

// TestReaderDeliversBacklog: the records already in the ring, as
// /dev/kmsg returns them first, come out as XIDs with their sequence
// numbers and times, and the reader closes the log when it ends.
func TestReaderDeliversBacklog(t *testing.T) {
	var reads []fakeRead
	for _, line := range readLines(t, "testdata/driver-xids.kmsg") {
		reads = append(reads, fakeRead{data: line + "\n"})
	}
	log := newFakeLog(true, reads...)
	got, skipped, err := runAll(t, log)
	if err != nil || len(skipped) > 0 {
		t.Fatalf("Run: %v, skipped %v", err, skipped)
	}
	want := readLines(t, "testdata/driver-xids.want")
	if len(got) != len(want) {
		t.Fatalf("%d XIDs, want %d", len(got), len(want))
	}
	if x := got[0]; x.Seq != 1200 || x.Code != 13 || !x.Time.Equal(boot.Add(81*time.Second)) {
		t.Fatalf("first XID %+v, want seq 1200, XID 13 at boot+81s", x)
	}
	if x := got[len(got)-1]; x.Seq != 1241 || x.Code != 8 {
		t.Fatalf("last XID %+v, want seq 1241, XID 8", x)
	}
	if !log.isClosed() {
		t.Fatal("log not closed")
	}
}

func TestReaderRecords(t *testing.T) {
	const xid79 = "4,10,2000000,-;NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n"
	tests := []struct {
		name        string
		reads       []fakeRead
		wantSeqs    []uint64
		wantSkipped int
	}{
		{"dictionary-lines", records(
			"4,10,2000000,-;NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n SUBSYSTEM=pci\n DEVICE=+pci:0000:3b:00.0\n",
			"6,11,2000001,-;pci 0000:3b:00.0: not an XID\n SUBSYSTEM=pci\n",
		), []uint64{10}, 0},
		{"non-xid-and-malformed", records(
			"6,11,1,-;usb 1-1: new high-speed USB device\n",
			"garbage without a header\n",
			"4,x,1,-;NVRM: Xid (PCI:0000:3b:00): 79, bad sequence\n",
			xid79,
		), []uint64{10}, 0},
		{"userspace-may-not-pose-as-the-driver", records(
			"12,12,1,-;NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n",
			xid79,
		), []uint64{10}, 0},
		{"overwritten-records", []fakeRead{
			{data: xid79},
			{err: &os.PathError{Op: "read", Path: "/dev/kmsg", Err: syscall.EPIPE}},
			{data: "4,57,3000000,-;NVRM: Xid (PCI:0000:3b:00): 13, after the gap\n"},
		}, []uint64{10, 57}, 1},
		{"record-too-long-for-the-kernel-to-return", []fakeRead{
			{err: &os.PathError{Op: "read", Path: "/dev/kmsg", Err: syscall.EINVAL}},
			{data: xid79},
		}, []uint64{10}, 1},
		{"record-split-across-reads", records(
			"4,10,2000000,-;NVRM: Xid (PCI:0000:3b",
			":00): 79, GPU has fallen off the bus.\n",
		), []uint64{10}, 0},
		{"several-records-in-one-read", records(
			xid79 + "4,11,2000001,-;NVRM: Xid (PCI:0000:3b:00): 45, cleanup\n",
		), []uint64{10, 11}, 0},
		{"record-longer-than-the-buffer-ends-in-a-later-read", records(
			"4,9,1,-;NVRM: Xid (PCI:0000:3b:00): 31, "+strings.Repeat("x", recordMax/2),
			strings.Repeat("y", recordMax/2)+"\n",
			xid79,
		), []uint64{10}, 1},
		{"record-longer-than-the-buffer-fills-it", records(
			"4,9,1,-;NVRM: Xid (PCI:0000:3b:00): 31, "+strings.Repeat("x", recordMax),
			strings.Repeat("y", 100)+"\n",
			xid79,
		), []uint64{10}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped, err := runAll(t, newFakeLog(true, tt.reads...))
			if err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for _, x := range got {
				seqs = append(seqs, x.Seq)
			}
			if !slices.Equal(seqs, tt.wantSeqs) || len(skipped) != tt.wantSkipped {
				t.Fatalf("XIDs %v, skipped %v; want %v and %d skipped", seqs, skipped, tt.wantSeqs, tt.wantSkipped)
			}
		})
	}
}

// TestReaderFollowsUntilContextEnds: after the backlog the reader waits
// for new records; ending the context closes the log, which ends the
// waiting read, and Run returns nil.
func TestReaderFollowsUntilContextEnds(t *testing.T) {
	log := newFakeLog(false, records("4,1,1,-;NVRM: Xid (PCI:0000:3b:00): 13, backlog\n")...)
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan XID)
	done := make(chan error, 1)
	go func() { done <- Reader{Boot: boot}.Run(ctx, log, out) }()
	if x := <-out; x.Seq != 1 {
		t.Fatalf("backlog XID %+v", x)
	}
	log.reads <- fakeRead{data: "4,2,5,-;NVRM: Xid (PCI:0000:3b:00): 79, new\n"}
	if x := <-out; x.Seq != 2 || x.Text != "new" {
		t.Fatalf("new XID %+v", x)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if !log.isClosed() {
		t.Fatal("log not closed")
	}
}

func TestReaderFailure(t *testing.T) {
	broken := errors.New("device gone")
	log := newFakeLog(false, fakeRead{err: broken})
	_, _, err := runAll(t, log)
	if !errors.Is(err, broken) || !log.isClosed() {
		t.Fatalf("Run = %v (closed %v), want the read error wrapped and the log closed", err, log.isClosed())
	}
}

func TestBootFrom(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		uptime  string
		want    time.Time
		wantErr bool
	}{
		{"proc-uptime", "3600.50 7000.00\n", now.Add(-3600500 * time.Millisecond), false},
		{"empty", "", time.Time{}, true},
		{"not-a-number", "up 1 day\n", time.Time{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bootFrom(now, tt.uptime)
			if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
				t.Fatalf("bootFrom(%q) = %v, %v; want %v (error %v)", tt.uptime, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
