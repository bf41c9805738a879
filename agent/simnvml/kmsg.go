package simnvml

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kernel-log priorities (facility kern), as /dev/kmsg gives them.
const (
	kernWarning = 4
	kernNotice  = 5
	kernInfo    = 6
)

// maxRecords is how many records the simulated kernel keeps, as the real
// one keeps a ring buffer: a reader that falls further behind loses the
// oldest.
const maxRecords = 4096

// record is one kernel-log record, already in /dev/kmsg's format.
type record struct {
	seq  uint64
	usec int64
	line string // "PRIO,SEQ,USEC,FLAGS;TEXT\n"
}

func newRecord(prio int, seq uint64, usec int64, text string) record {
	return record{seq: seq, usec: usec, line: fmt.Sprintf("%d,%d,%d,-;%s\n", prio, seq, usec, kmsgEscape(text))}
}

// kmsgEscape escapes what /dev/kmsg escapes in a record's text: control
// characters, bytes outside ASCII and the backslash become \xNN.
func kmsgEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c >= 0x7f || c == '\\' {
			fmt.Fprintf(&b, `\x%02x`, c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// parseRecord reads back a record written by newRecord.
func parseRecord(line string) (record, bool) {
	head, _, ok := strings.Cut(line, ";")
	fields := strings.Split(head, ",")
	if !ok || len(fields) < 4 || !strings.HasSuffix(line, "\n") {
		return record{}, false
	}
	seq, err1 := strconv.ParseUint(fields[1], 10, 64)
	usec, err2 := strconv.ParseInt(fields[2], 10, 64)
	if err1 != nil || err2 != nil {
		return record{}, false
	}
	return record{seq: seq, usec: usec, line: line}, true
}

// kernelLog is the simulated node's kernel log. A boot's records are also
// kept in a file, so that an agent restarted on the same boot reads them
// again, as it would from /dev/kmsg, and the sequence goes on instead of
// starting over.
type kernelLog struct {
	mu      sync.Mutex
	boot    int // how many boots this process has seen; readers of an earlier one read io.EOF
	records []record
	next    uint64        // the next record's sequence number
	start   time.Time     // when this boot began
	usec    int64         // the last record's timestamp
	wake    chan struct{} // closed and replaced when a record comes or the node reboots
	path    string        // the file the boot's records are kept in; "" for none
	err     error         // the first failure to keep a record
}

func newKernelLog() *kernelLog {
	return &kernelLog{wake: make(chan struct{})}
}

// begin starts a boot's log at now with no records (or the ones resumed),
// keeping them in path. The caller has written the file.
func (l *kernelLog) begin(now time.Time, path string, resumed []record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.boot++
	l.records = resumed
	l.next, l.usec, l.start = 0, 0, now
	if n := len(resumed); n > 0 {
		l.next, l.usec = resumed[n-1].seq+1, resumed[n-1].usec
		l.start = now.Add(-time.Duration(l.usec) * time.Microsecond)
	}
	l.path = path
	close(l.wake)
	l.wake = make(chan struct{})
}

// began is when the boot began.
func (l *kernelLog) began() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.start
}

// since moves the boot's start back to when the boot began, if that is
// earlier than the records alone tell.
func (l *kernelLog) since(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.Before(l.start) {
		l.start = t
	}
}

// write adds a record at now.
func (l *kernelLog) write(now time.Time, prio int, text string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// Timestamps never go back, whatever the clock does.
	l.usec = max(l.usec, now.Sub(l.start).Microseconds())
	r := newRecord(prio, l.next, l.usec, text)
	l.next++
	l.records = append(l.records, r)
	if len(l.records) > maxRecords {
		l.records = append(l.records[:0:0], l.records[len(l.records)-maxRecords:]...)
	}
	if l.path != "" {
		if err := appendLine(l.path, r.line); err != nil && l.err == nil {
			l.err = fmt.Errorf("keep the simulated kernel log: %w", err)
		}
	}
	close(l.wake)
	l.wake = make(chan struct{})
}

func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(line)
	if err := f.Close(); werr == nil {
		werr = err
	}
	return werr
}

// failure returns the first failure to keep a record, if any.
func (l *kernelLog) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// open returns a reader of this boot's log from its oldest record on.
func (l *kernelLog) open() *kmsgReader {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := &kmsgReader{log: l, boot: l.boot, next: l.next, done: make(chan struct{})}
	if len(l.records) > 0 {
		r.next = l.records[0].seq
	}
	return r
}

// kmsgReader reads the kernel log as /dev/kmsg does: one record per Read,
// the records already there first, then each new one as it comes.
type kmsgReader struct {
	log  *kernelLog
	boot int
	next uint64
	done chan struct{}
	once sync.Once
}

// Read returns the next record, waiting for one. It returns io.EOF once the
// reader is closed or the node has rebooted since it was opened;
// syscall.EINVAL when p cannot hold the record, as /dev/kmsg does; and
// syscall.EPIPE once when records it had not read were dropped, after which
// it goes on from the oldest one kept.
func (r *kmsgReader) Read(p []byte) (int, error) {
	l := r.log
	for {
		l.mu.Lock()
		select {
		case <-r.done:
			l.mu.Unlock()
			return 0, io.EOF
		default:
		}
		if l.boot != r.boot {
			l.mu.Unlock()
			return 0, io.EOF
		}
		recs := l.records
		if len(recs) > 0 && recs[0].seq > r.next {
			r.next = recs[0].seq
			l.mu.Unlock()
			return 0, syscall.EPIPE
		}
		i := sort.Search(len(recs), func(i int) bool { return recs[i].seq >= r.next })
		if i < len(recs) {
			rec := recs[i]
			l.mu.Unlock()
			if len(p) < len(rec.line) {
				// As the agent takes the kernel to: the record is passed.
				r.next = rec.seq + 1
				return 0, syscall.EINVAL
			}
			r.next = rec.seq + 1
			return copy(p, rec.line), nil
		}
		wake := l.wake
		l.mu.Unlock()
		select {
		case <-wake:
		case <-r.done:
			return 0, io.EOF
		}
	}
}

// Close ends the reader; a Read waiting for a record returns io.EOF.
func (r *kmsgReader) Close() error {
	r.once.Do(func() { close(r.done) })
	return nil
}

// readRecords reads the kept records of the boot bootID from path; ok is
// false when the file is missing or holds another boot's records.
func readRecords(path, bootID string) (recs []record, ok bool, err error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	// Only whole lines count: the part after the last newline is a line
	// torn by a crash ("…): 79," would read as an XID 7).
	lines := strings.Split(string(b), "\n")
	lines = lines[:len(lines)-1]
	if len(lines) == 0 || lines[0] != bootHeader(bootID) {
		return nil, false, nil
	}
	for _, line := range lines[1:] {
		r, good := parseRecord(line + "\n")
		// A gap ends what can be trusted.
		if !good || (len(recs) > 0 && r.seq != recs[len(recs)-1].seq+1) {
			break
		}
		recs = append(recs, r)
	}
	if len(recs) > maxRecords {
		recs = recs[len(recs)-maxRecords:]
	}
	return recs, true, nil
}

// bootHeader is the first line of a kept kernel log, naming its boot.
func bootHeader(bootID string) string { return "boot " + bootID }
