// Package kmsg reads the kernel log as /dev/kmsg serves it and finds the
// NVIDIA driver's XID lines in it: the code, the GPU by PCI bus id, what
// the driver said beside the code, and the kernel's sequence number and
// time for the line.
//
// The record format is the kernel's (Documentation/ABI/testing/dev-kmsg):
// one record per read, "PRIO,SEQ,USEC,FLAGS;TEXT\n", followed by
// dictionary lines that start with a space.
package kmsg

import (
	"strconv"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/display"
)

// Record is one kernel log record.
type Record struct {
	// Facility is the syslog facility; 0 is the kernel itself. Userspace
	// may write to /dev/kmsg but never with facility 0.
	Facility int
	// Level is the syslog level, 0 (emergency) to 7 (debug).
	Level int
	// Seq is the record's sequence number within the boot.
	Seq uint64
	// SinceBoot is when the kernel logged the record.
	SinceBoot time.Duration
	// Text is the message, with the kernel's \xNN escapes undone and made
	// safe to report: valid UTF-8, no control characters, at most
	// maxText bytes.
	Text string
}

// maxText is the longest text kept of a record: the kernel's own limit
// for one printk line, so only a record that no kernel writes is cut.
const maxText = 1024

// ParseRecord parses one record line, "PRIO,SEQ,USEC,FLAGS;TEXT", without
// its dictionary lines. Fields after FLAGS, which later kernels may add,
// are ignored.
func ParseRecord(line string) (Record, bool) {
	header, text, ok := strings.Cut(strings.TrimSuffix(line, "\n"), ";")
	if !ok {
		return Record{}, false
	}
	fields := strings.Split(header, ",")
	if len(fields) < 3 {
		return Record{}, false
	}
	prio, err := strconv.ParseUint(fields[0], 10, 16)
	if err != nil {
		return Record{}, false
	}
	seq, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return Record{}, false
	}
	usec, err := strconv.ParseInt(fields[2], 10, 64)
	if err != nil || usec < 0 || usec > int64(time.Duration(1<<63-1)/time.Microsecond) {
		return Record{}, false
	}
	return Record{
		Facility:  int(prio >> 3),
		Level:     int(prio & 7),
		Seq:       seq,
		SinceBoot: time.Duration(usec) * time.Microsecond,
		Text:      clean(unescape(text)),
	}, true
}

// unescape undoes the kernel's escaping of a record's text: every byte
// below a space, above '~', and the backslash itself is written \xNN.
func unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// clean makes text safe to report: the control plane refuses events whose
// message is not valid UTF-8 or holds control characters.
func clean(s string) string {
	return display.Cut(display.CleanText(s, ""), maxText, "")
}
