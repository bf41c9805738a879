package kmsg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// recordMax is the most a kernel puts in one record, dictionary included
// (CONSOLE_EXT_LOG_MAX). /dev/kmsg refuses a read into a smaller buffer.
const recordMax = 8192

// Reader reads the XIDs in a kernel log.
type Reader struct {
	// Boot is when the node booted: a record's time is Boot plus its
	// timestamp.
	Boot time.Time
	// Skipped, when set, learns of the records that could not be read:
	// ones the kernel overwrote before they were read, and ones too long
	// to read.
	Skipped func(error)
}

// Run reads log until ctx ends or log fails, and sends each XID line to
// out. It starts with the records already in the kernel's ring, as
// /dev/kmsg serves them first: XIDs raised while no one was reading.
//
// Run owns log and closes it, also when ctx ends, which is what ends a
// read that waits for the next record. A log that ends (io.EOF) ends Run
// with nil, as does ctx ending.
//
// Each Read of log should return whole records, as /dev/kmsg does; a
// reader that splits them across reads also works, within recordMax.
func (r Reader) Run(ctx context.Context, log io.ReadCloser, out chan<- XID) error {
	stop := context.AfterFunc(ctx, func() { _ = log.Close() })
	defer func() {
		if stop() {
			_ = log.Close()
		}
	}()
	buf := make([]byte, recordMax)
	var s splitter
	for {
		n, err := log.Read(buf)
		lines, dropped := s.lines(buf[:n])
		if dropped {
			r.skipped(fmt.Errorf("kernel log record longer than %d bytes", recordMax))
		}
		for _, line := range lines {
			if x, ok := r.xid(line); ok {
				select {
				case out <- x:
				case <-ctx.Done():
					return nil
				}
			}
		}
		switch {
		case err == nil:
		case ctx.Err() != nil, errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, syscall.EPIPE):
			// The ring overwrote records before they were read; the next
			// read returns the oldest one left.
			r.skipped(fmt.Errorf("kernel log records overwritten before they were read: %w", err))
		case errors.Is(err, syscall.EINVAL):
			// A record longer than the buffer; the kernel moves past it.
			r.skipped(fmt.Errorf("kernel log record longer than %d bytes: %w", recordMax, err))
		default:
			return fmt.Errorf("read kernel log: %w", err)
		}
	}
}

// xid reads one record line and reports whether it is a driver's XID.
// Only the kernel's own records count: userspace may write to /dev/kmsg,
// but never as the kernel (facility 0).
func (r Reader) xid(line string) (XID, bool) {
	rec, ok := ParseRecord(line)
	if !ok || rec.Facility != 0 {
		return XID{}, false
	}
	x, ok := ParseXID(rec.Text)
	if !ok {
		return XID{}, false
	}
	x.Seq = rec.Seq
	x.Time = r.Boot.Add(rec.SinceBoot)
	return x, true
}

func (r Reader) skipped(err error) {
	if r.Skipped != nil {
		r.Skipped(err)
	}
}

// splitter cuts what reads return into record lines, dropping dictionary
// lines (those that start with a space). A line not yet ended waits for
// the next read; one longer than recordMax is dropped, and lines reports
// that it dropped one.
type splitter struct {
	partial []byte
	// overlong is set while the rest of a too-long line is dropped.
	overlong bool
}

func (s *splitter) lines(data []byte) (out []string, dropped bool) {
	for len(data) > 0 {
		end := bytes.IndexByte(data, '\n')
		if end < 0 {
			if !s.overlong {
				s.partial = append(s.partial, data...)
				if len(s.partial) >= recordMax {
					s.partial, s.overlong, dropped = s.partial[:0], true, true
				}
			}
			return out, dropped
		}
		line := data[:end]
		data = data[end+1:]
		if s.overlong {
			s.overlong = false
			continue
		}
		if len(s.partial) > 0 {
			whole := len(s.partial)+len(line) < recordMax
			line = append(s.partial, line...)
			s.partial = s.partial[:0]
			if !whole {
				dropped = true
				continue
			}
		}
		if len(line) > 0 && line[0] != ' ' {
			out = append(out, string(line))
		}
	}
	return out, dropped
}

// BootTime is when the running kernel booted: now less the time since
// boot that /proc/uptime gives. Kernel log timestamps leave out time spent
// suspended, /proc/uptime does not; servers seldom suspend.
func BootTime(now time.Time) (time.Time, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Time{}, fmt.Errorf("read uptime: %w", err)
	}
	return bootFrom(now, string(b))
}

// bootFrom reads /proc/uptime's "UPTIME IDLE" in seconds.
func bootFrom(now time.Time, uptime string) (time.Time, error) {
	fields := strings.Fields(uptime)
	if len(fields) == 0 {
		return time.Time{}, errors.New("read uptime: empty")
	}
	secs, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || secs < 0 {
		return time.Time{}, fmt.Errorf("read uptime: %q is not a number of seconds", fields[0])
	}
	return now.Add(-time.Duration(secs * float64(time.Second))), nil
}
