package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cpuTime reads a process's user plus system time from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// rssMiB reads a process's resident set size.
func rssMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// peakRSS samples a process's resident set size every second until
// stopped, keeping the largest.
type peakRSS struct {
	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	pid  int
	peak float64
}

func newPeakRSS(pid int) *peakRSS {
	p := &peakRSS{done: make(chan struct{}), pid: pid}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				if rss, err := rssMiB(pid); err == nil && rss > p.peak {
					p.peak = rss
				}
			}
		}
	}()
	return p
}

// stop ends the sampling and returns the peak, counting the size at the
// first stop; later calls return the same.
func (p *peakRSS) stop() float64 {
	p.once.Do(func() {
		close(p.done)
		p.wg.Wait()
		if rss, err := rssMiB(p.pid); err == nil && rss > p.peak {
			p.peak = rss
		}
	})
	return p.peak
}

// processWindow measures a process over a measurement window: the CPU it
// used, its peak resident memory, and the window's length.
type processWindow struct {
	pid   int
	cpu0  time.Duration
	began time.Time
	peak  *peakRSS
}

// startWindow opens a window on process pid. Close it with end, or with
// close when it is abandoned.
func startWindow(pid int) (*processWindow, error) {
	cpu0, err := cpuTime(pid)
	if err != nil {
		return nil, err
	}
	return &processWindow{pid: pid, cpu0: cpu0, began: time.Now(), peak: newPeakRSS(pid)}, nil
}

// end closes the window, in which the process answered calls: what they
// cost, and the peak resident memory over the window in MiB.
func (w *processWindow) end(calls int64) (callCost, float64, error) {
	cpu1, err := cpuTime(w.pid)
	peak := w.peak.stop()
	if err != nil {
		return callCost{}, peak, err
	}
	return callCost{cpu: cpu1 - w.cpu0, calls: calls, over: time.Since(w.began)}, peak, nil
}

// close stops the window's sampling; after end it does nothing.
func (w *processWindow) close() { w.peak.stop() }
