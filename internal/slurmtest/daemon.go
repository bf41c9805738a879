package slurmtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stopLimit is how long a daemon has to exit after SIGTERM, and the jobs
// to end after scancel, before they are killed.
const stopLimit = 10 * time.Second

// logLines is how much of each log a failed test shows.
const logLines = 60

// daemon is one running munged, slurmctld or slurmd.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startDaemon starts one daemon in the foreground with the cluster's
// slurm.conf, its output in <name>.out.
func (c *Cluster) startDaemon(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := os.Create(c.path(name + ".out"))
	if err != nil {
		t.Fatalf("slurm cluster: %v", err)
	}
	defer out.Close()
	cmd := exec.Command(c.bins[name], args...)
	// SLURM_CONF is also what marks the cluster's processes: slurmd
	// hands its environment to the slurmstepd of every job, and sbatch
	// its own to the job.
	cmd.Env = append(os.Environ(), c.Env()...)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a ^C at the terminal reaches the test
	// alone, which then stops the cluster in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("slurm cluster: start %s: %v", name, err)
	}
	d := &daemon{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	c.daemons = append(c.daemons, d)
}

// checkDaemons fails the test, with the logs, if a daemon has exited.
func (c *Cluster) checkDaemons(t testing.TB) {
	t.Helper()
	for _, d := range c.daemons {
		select {
		case <-d.done:
			t.Fatalf("slurm cluster: %s exited: %v (its log follows the test)", d.name, d.err)
		default:
		}
	}
}

// stop ends the cluster: cancels its jobs and waits for them, stops the
// daemons, kills whatever of the cluster is still running, logs the logs
// if the test failed, and removes the cluster's folder.
func (c *Cluster) stop(t testing.TB) {
	if c.running("slurmctld") && c.running("slurmd") {
		c.cancelJobs(t)
	}
	// slurmd before slurmctld, and MUNGE last, as each needs the next.
	for i := len(c.daemons) - 1; i >= 0; i-- {
		c.daemons[i].stop(t)
	}
	// A job's slurmstepd may outlast its job in the queue by a moment.
	within(5*time.Second, func() bool { return len(c.processes()) == 0 })
	for _, pid := range c.processes() {
		t.Errorf("slurm cluster: process %d (%s) outlived the cluster; killed", pid, cmdline(pid))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if t.Failed() {
		c.logLogs(t)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		t.Errorf("slurm cluster: remove %s: %v", c.dir, err)
	}
}

// cancelJobs cancels every job of the cluster and waits until none is
// left: slurmd leaves running jobs behind when it stops.
func (c *Cluster) cancelJobs(t testing.TB) {
	if _, err := c.output("scancel", "--partition="+Partition); err != nil {
		t.Errorf("slurm cluster: %v", err)
		return
	}
	ended := within(stopLimit, func() bool {
		out, err := c.output("squeue", "--noheader", "--format=%i")
		return err == nil && strings.TrimSpace(out) == ""
	})
	if !ended {
		t.Errorf("slurm cluster: jobs still queued %s after scancel", stopLimit)
	}
}

// within polls cond until it holds or limit passes, and says whether it
// held. Unlike testutil.Eventually it does not end the test: stopping a
// cluster must go on to the end whatever fails on the way.
func within(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func (c *Cluster) running(name string) bool {
	for _, d := range c.daemons {
		if d.name != name {
			continue
		}
		select {
		case <-d.done:
			return false
		default:
			return true
		}
	}
	return false
}

// stop sends SIGTERM and waits; SIGKILL if the daemon outstays stopLimit.
func (d *daemon) stop(t testing.TB) {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopLimit):
		t.Errorf("slurm cluster: %s did not stop within %s of SIGTERM; killed", d.name, stopLimit)
		d.cmd.Process.Kill()
		<-d.done
	}
}

// processes lists the processes whose environment names this cluster's
// slurm.conf: its daemons, the slurmstepd of its jobs and the jobs.
func (c *Cluster) processes() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	marker := []byte("SLURM_CONF=" + c.conf + "\x00")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if bytes.HasPrefix(env, marker) || bytes.Contains(env, append([]byte{0}, marker...)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func cmdline(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// logLogs logs the end of each daemon's log: its log file, or what it
// printed when it stopped before opening one (a slurm.conf it refused).
func (c *Cluster) logLogs(t testing.TB) {
	for _, d := range c.daemons {
		name := d.name + ".log"
		b, err := os.ReadFile(c.path(name))
		if err != nil {
			name = d.name + ".out"
			if b, err = os.ReadFile(c.path(name)); err != nil {
				continue
			}
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > logLines {
			lines = lines[len(lines)-logLines:]
		}
		t.Logf("slurm cluster: %s (last %d lines):\n%s", name, len(lines), strings.Join(lines, "\n"))
	}
}
