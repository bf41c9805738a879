package simnvml

import (
	"os/exec"
	"slices"
	"strconv"
	"time"
)

// simJob is the process standing in for the job of a busy phase.
type simJob struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and been reaped
}

// Jobs: each busy phase of the workload runs one job process. reapJob ends
// the phase when its job ended (finished, or signalled by a drain) and the
// job when its phase ended; startJob starts one for a busy phase that has
// none, if the node takes work. The caller holds d.mu and the backend's
// lock.

func (d *Device) reapJob(now time.Time) {
	if d.job == nil {
		return
	}
	switch {
	case !alive(d.job.pid()):
		d.stopJob()
		if d.load.Busy() {
			d.load.Rest(d.backend.rng, now)
		}
	case !d.load.Busy() || d.load.Remaining(now) <= 0:
		d.stopJob()
	}
}

func (d *Device) startJob(now time.Time) {
	b := d.backend
	if d.job != nil || !d.load.Busy() || b.stopped {
		return
	}
	if !b.schedulable.Load() {
		d.load.Rest(b.rng, now)
		return
	}
	secs := int(d.load.Remaining(now).Seconds()) + 1
	cmd := exec.Command(b.jobBin, strconv.Itoa(secs))
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		d.load.Rest(b.rng, now)
		return
	}
	j := &simJob{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(j.done)
	}()
	d.job = j
	d.pids = append(d.pids, uint32(cmd.Process.Pid))
}

func (j *simJob) pid() uint32 { return uint32(j.cmd.Process.Pid) }

// stopJob kills the device's job, if any, and forgets its pid at once, so
// that a pid the kernel hands out again is never taken for it. The caller
// holds d.mu.
func (d *Device) stopJob() {
	if d.job == nil {
		return
	}
	_ = d.job.cmd.Process.Kill()
	<-d.job.done
	pid := d.job.pid()
	d.pids = slices.DeleteFunc(d.pids, func(p uint32) bool { return p == pid })
	d.job = nil
}
