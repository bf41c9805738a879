// Package slurmtest starts a real single-node Slurm cluster for a test:
// its own munged, slurmctld and slurmd, with a slurm.conf, a MUNGE key,
// ports, state and logs of its own in a temporary folder, so several
// clusters may run at once on one machine. The cluster's one node is named
// after this host's short name, as an agent names its Slurm node by
// default. Everything it starts, jobs included, is stopped when the test
// ends.
//
// It needs Debian's slurmctld, slurmd, slurm-client and munge packages
// (`go tool task slurm` installs them); without them a test skips, and
// under CI it fails.
package slurmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/testutil"
)

// Partition is the cluster's one partition, the default, holding the node.
const Partition = "debug"

// commandTimeout bounds every Slurm command the harness runs, so a wedged
// daemon fails the test instead of hanging it.
const commandTimeout = 20 * time.Second

// startLimit is how long the node may take to come up IDLE.
const startLimit = 30 * time.Second

// Cluster is a running single-node Slurm cluster.
type Cluster struct {
	dir     string
	conf    string
	node    string
	bins    map[string]string
	daemons []*daemon
}

// binaries are the programs a cluster needs: the daemons and the commands
// it and its tests run.
var binaries = []string{"munged", "slurmctld", "slurmd", "scontrol", "sbatch", "squeue", "scancel", "sinfo"}

// Start starts a cluster for t and waits until its node is IDLE. It stops
// the cluster when t ends, and if t failed logs the daemons' logs.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bins := findBinaries(t)
	node, err := shortHostname()
	if err != nil {
		t.Fatalf("slurm cluster: %v", err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatalf("slurm cluster: who runs the daemons: %v", err)
	}
	// A folder of our own rather than t.TempDir: MUNGE's socket path must
	// fit in a sockaddr_un, and a test's name can be long.
	dir, err := os.MkdirTemp("", "slurmtest")
	if err != nil {
		t.Fatalf("slurm cluster: %v", err)
	}
	c := &Cluster{dir: dir, conf: filepath.Join(dir, "slurm.conf"), node: node, bins: bins}
	t.Cleanup(func() { c.stop(t) })
	// munged wants the folders on its paths to be writable by their
	// owner alone and the clients to be able to reach its socket.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("slurm cluster: %v", err)
	}
	for _, sub := range []string{"state", "spool"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("slurm cluster: %v", err)
		}
	}
	key := make([]byte, 128)
	rand.Read(key)
	if err := os.WriteFile(filepath.Join(dir, "munge.key"), key, 0o600); err != nil {
		t.Fatalf("slurm cluster: write MUNGE key: %v", err)
	}
	munged := []string{"--foreground",
		"--socket=" + c.path("munge.socket"),
		"--key-file=" + c.path("munge.key"),
		"--pid-file=" + c.path("munged.pid"),
		"--seed-file=" + c.path("munged.seed"),
	}
	if os.Geteuid() == 0 {
		// munged refuses to run as root unless forced; the test's own
		// key and socket make that harmless here.
		munged = append(munged, "--force")
	}
	c.startDaemon(t, "munged", munged...)
	testutil.EventuallyWithin(t, startLimit, "munged's socket", func() bool {
		c.checkDaemons(t)
		_, err := os.Stat(c.path("munge.socket"))
		return err == nil
	})
	// The ports are free when chosen but not held until the daemons bind
	// them, so a test running beside this one may take one first: then
	// the cluster starts again on others.
	for attempt := 1; ; attempt++ {
		ports, err := choosePorts(2)
		if err != nil {
			t.Fatalf("slurm cluster: %v", err)
		}
		conf := config{dir: dir, node: node, user: me.Username, slurmctldPort: ports[0], slurmdPort: ports[1]}
		if err := os.WriteFile(c.conf, []byte(conf.String()), 0o644); err != nil {
			t.Fatalf("slurm cluster: write slurm.conf: %v", err)
		}
		slurmd := len(c.daemons)
		c.startDaemon(t, "slurmctld", "-D")
		c.startDaemon(t, "slurmd", "-D", "-N", node)
		var gone *daemon
		testutil.EventuallyWithin(t, startLimit, "Slurm node "+node+" IDLE", func() bool {
			if gone = c.exitedSince(slurmd); gone != nil {
				return true
			}
			state, err := c.nodeState()
			return err == nil && state == "IDLE"
		})
		switch {
		case gone == nil:
			return c
		case attempt < startAttempts && c.portTaken(gone):
			t.Logf("slurm cluster: %s found its port taken; starting again on others", gone.name)
			c.stopSince(t, slurmd)
		default:
			t.Fatalf("slurm cluster: %s exited: %v (its log follows the test)", gone.name, gone.err)
		}
	}
}

// choosePorts picks the cluster's ports; a test takes one away.
var choosePorts = freePorts

// startAttempts is how many times Start tries ports before it gives up.
const startAttempts = 3

// exitedSince is the first daemon from the i-th on that has exited, or
// nil when they all run.
func (c *Cluster) exitedSince(i int) *daemon {
	for _, d := range c.daemons[i:] {
		select {
		case <-d.done:
			return d
		default:
		}
	}
	return nil
}

// portTaken reports whether d's log says another process held its port.
func (c *Cluster) portTaken(d *daemon) bool {
	b, err := os.ReadFile(c.path(d.name + ".log"))
	return err == nil && bytes.Contains(b, []byte("Address already in use"))
}

// stopSince stops the daemons from the i-th on, the last first, and
// forgets them.
func (c *Cluster) stopSince(t testing.TB, i int) {
	for j := len(c.daemons) - 1; j >= i; j-- {
		c.daemons[j].stop(t)
	}
	c.daemons = c.daemons[:i]
}

// Conf is the path of the cluster's slurm.conf.
func (c *Cluster) Conf() string { return c.conf }

// Env is the environment a Slurm command needs, beside the process's own,
// to talk to this cluster.
func (c *Cluster) Env() []string { return []string{"SLURM_CONF=" + c.conf} }

// Node is the name of the cluster's one node.
func (c *Cluster) Node() string { return c.node }

// Submit submits a batch job to the node that sleeps for seconds, and
// returns its id.
func (c *Cluster) Submit(t testing.TB, seconds int) string {
	t.Helper()
	return c.Sbatch(t, "--job-name=sleep", SleepScript(seconds))
}

// SleepScript is sbatch's --wrap of a job that sleeps for seconds. The
// batch shell becomes the sleep: with proctrack/linuxproc a child whose
// shell was cancelled first is orphaned, and Slurm loses track of it.
func SleepScript(seconds int) string {
	return "--wrap=exec sleep " + strconv.Itoa(seconds)
}

// Sbatch submits a batch job to the node with sbatch's args besides the
// node, partition and output, which are the cluster's, and returns its id.
func (c *Cluster) Sbatch(t testing.TB, args ...string) string {
	t.Helper()
	out := c.Run(t, "sbatch", append([]string{"--parsable", "--nodelist=" + c.node, "--partition=" + Partition,
		"--chdir=" + c.dir, "--output=" + c.path("job-%j.out")}, args...)...)
	id, _, _ := strings.Cut(strings.TrimSpace(out), ";")
	if id == "" {
		t.Fatalf("sbatch printed no job id")
	}
	return id
}

// JobState is the job's state as Slurm prints it, such as "RUNNING" or
// "COMPLETED". Without accounting, squeue and scontrol know a finished job
// only until MinJobAge passes, far longer than a test.
func (c *Cluster) JobState(t testing.TB, id string) string {
	t.Helper()
	out, err := c.output("squeue", "--noheader", "--states=all", "--jobs="+id, "--format=%T")
	if state := strings.TrimSpace(out); err == nil && state != "" {
		return state
	}
	out = c.Run(t, "scontrol", "--oneliner", "show", "job", id)
	m := regexp.MustCompile(`(?:^|\s)JobState=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("scontrol show job %s printed no JobState: %s", id, out)
	}
	return m[1]
}

// NodeState is the node's state as scontrol prints it, such as "IDLE" or
// "MIXED+DRAIN".
func (c *Cluster) NodeState(t testing.TB) string {
	t.Helper()
	state, err := c.nodeState()
	if err != nil {
		t.Fatal(err)
	}
	return state
}

// Run runs a Slurm command (by its name: "scontrol", "sinfo", ...) on
// this cluster and returns what it printed; it fails the test if the
// command fails.
func (c *Cluster) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := c.output(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c *Cluster) nodeState() (string, error) {
	out, err := c.output("scontrol", "--oneliner", "show", "node", c.node)
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?:^|\s)State=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("scontrol show node %s printed no State: %s", c.node, out)
	}
	return m[1], nil
}

func (c *Cluster) output(name string, args ...string) (string, error) {
	bin, ok := c.bins[name]
	if !ok {
		return "", fmt.Errorf("%s is not one of the Slurm commands the harness knows", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), c.Env()...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func (c *Cluster) path(name string) string { return filepath.Join(c.dir, name) }

// findBinaries finds every program the cluster needs, in $PATH or in the
// sbin folders a user's $PATH often leaves out, or skips the test (fails
// it under CI).
func findBinaries(t testing.TB) map[string]string {
	t.Helper()
	bins := map[string]string{}
	var missing []string
	for _, name := range binaries {
		if p, err := exec.LookPath(name); err == nil {
			bins[name] = p
			continue
		}
		found := false
		for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
			p := filepath.Join(dir, name)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				bins[name], found = p, true
				break
			}
		}
		if !found {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("Slurm is not installed (no %s): `go tool task slurm` installs it (Debian's slurmctld, slurmd, slurm-client and munge)", strings.Join(missing, ", "))
		if os.Getenv("CI") != "" {
			t.Fatal(msg + ", and CI runs this test")
		}
		t.Skip(msg)
	}
	return bins
}

// shortHostname is this host's name up to its first dot, the name Slurm
// gives a node by default.
func shortHostname() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("read hostname: %w", err)
	}
	h, _, _ = strings.Cut(h, ".")
	if h == "" {
		return "", fmt.Errorf("this host has no name")
	}
	return h, nil
}

// freePorts returns n TCP ports free on this machine now, held open
// together so that they differ.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
