package autoscale

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/display"
	"github.com/navarch/navarch/internal/rootfile"
)

// SlurmQueue reads Slurm's queue for the queue-driven rule, by running
// squeue as an operator would. Its zero value runs the squeue in $PATH.
type SlurmQueue struct {
	// Bin is the folder holding squeue; "" looks it up in $PATH.
	Bin string
	// Env is environment for squeue, such as
	// SLURM_CONF=/etc/slurm/slurm.conf. Of the control plane's own
	// environment it gets PATH and SLURM_CONF alone: the rest may hold
	// the providers' credentials.
	Env []string
	// Timeout bounds squeue; 0 or less is a minute. A Slurm command waits
	// MessageTimeout (10 s by default, 30–60 s at many sites) for a
	// controller that does not answer, and may retry once.
	Timeout time.Duration
}

// waitingForNodes are the reasons, as squeue prints them, a pending job
// waits for that more nodes would end: it waits for resources, behind
// jobs that do, for nodes busy or unavailable, or has not been looked at
// yet. A job that is held, or waits for a limit, its begin time or
// another job, would wait as long in a larger pool, and is not counted.
var waitingForNodes = map[string]bool{
	"Resources":       true,
	"Priority":        true,
	"None":            true,
	"ReqNodeNotAvail": true,
	// How slurmctld describes ReqNodeNotAvail to squeue when it names
	// no node, as it does for a job whose nodes are all busy.
	"Nodes required for job are DOWN": true,
}

// eligibleSlack is how far ahead of the control plane's clock a job may be
// eligible and still count: slurmctld's clock may run ahead of it, and a
// job eligible within a minute will want its nodes by the time they boot.
const eligibleSlack = time.Minute

// queueFormat asks squeue for a job's node count, the time it may start
// from (its begin time; N/A while slurmctld has not worked it out), the
// jobs it waits for ("(null)" once none) and the reason it waits, none of
// them its owner's free text (a job's name could pass for another line
// of the list). The reason alone does not do: slurmctld says a job that
// waits for its begin time or for another job waits for Resources until
// its scheduler next looks at it.
const queueFormat = "NumNodes:0|,EligibleTime:0|,Dependency:0|,Reason:0"

// queueLine is one line of squeue's output in queueFormat. A reason may go
// on after a comma ("ReqNodeNotAvail, UnavailableNodes:gpu[1-2]").
var queueLine = regexp.MustCompile(`^([0-9]{1,9})\|([^|]*)\|([^|]*)\|([^,]*)`)

// Pending counts the jobs pending in partition that wait for nodes
// alone (not for their begin time, another job, a hold or a limit), and
// the nodes they ask for: each job's or array task's least node count.
func (q SlurmQueue) Pending(ctx context.Context, partition string) (nodes int, jobs int, err error) {
	if !partitionPattern.MatchString(partition) {
		return 0, 0, fmt.Errorf("read Slurm's queue: %q is not a Slurm partition name", partition)
	}
	// --array lists an array's pending tasks one a line, each asking for
	// its own nodes; --noconvert prints 2048 nodes as 2048, not 2K.
	out, err := q.run(ctx, "--noheader", "--array", "--noconvert", "--partition="+partition, "--states=PENDING", "--Format="+queueFormat)
	if err != nil {
		return 0, 0, fmt.Errorf("read Slurm's queue for partition %s: %w", partition, err)
	}
	nodes, jobs, err = parseQueue(out, time.Now())
	if err != nil {
		return 0, 0, fmt.Errorf("read Slurm's queue for partition %s: %w", partition, err)
	}
	return nodes, jobs, nil
}

// parseQueue counts the jobs in squeue's lines in queueFormat that wait
// for nodes alone, and their nodes; a line in any other form is an error.
func parseQueue(out string, now time.Time) (nodes, jobs int, err error) {
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m := queueLine.FindStringSubmatch(line)
		if m == nil {
			return 0, 0, fmt.Errorf("squeue printed %q, not a node count, a time, dependencies and a reason", display.Cut(display.CleanText(line, ""), 80, "…"))
		}
		count, eligible, dependency, reason := m[1], m[2], m[3], m[4]
		if !waitingForNodes[reason] || (dependency != "(null)" && dependency != "") {
			continue
		}
		if at, err := strconv.ParseInt(eligible, 10, 64); err == nil && time.Unix(at, 0).After(now.Add(eligibleSlack)) {
			continue
		}
		n, _ := strconv.Atoi(count) // nine digits at most: it fits.
		nodes += n
		jobs++
	}
	return nodes, jobs, nil
}

// run runs squeue and returns what it printed. Its error names the
// command and gives the first line of what squeue printed about the
// failure.
func (q SlurmQueue) run(ctx context.Context, args ...string) (string, error) {
	path, err := q.squeue()
	if err != nil {
		return "", err
	}
	timeout := q.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	cmdCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cmdCtx, path, args...)
	cmd.Env = q.env()
	// A squeue that leaves a child holding its output must not hold the
	// reconciler past its timeout.
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	line := "squeue " + strings.Join(args, " ")
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", line, err)
	}
	if err := cmdCtx.Err(); err != nil {
		return "", fmt.Errorf("%s: no answer within %s: %w", line, timeout, err)
	}
	msg := display.FirstLine(strings.TrimSpace(stderr.String()))
	if msg == "" {
		return "", fmt.Errorf("%s: %w", line, err)
	}
	return "", fmt.Errorf("%s: %w: %s", line, err, display.Cut(display.CleanText(msg, ""), 200, "…"))
}

// squeue finds the squeue to run: as root, one root alone may change.
func (q SlurmQueue) squeue() (string, error) {
	path := "squeue"
	if q.Bin != "" {
		path = filepath.Join(q.Bin, "squeue")
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("find Slurm's squeue (package slurm-client): %w", err)
	}
	if os.Geteuid() == 0 {
		real, err := rootfile.Check(p)
		if err != nil {
			return "", fmt.Errorf("slurm's squeue: the control plane runs it as root: %w", err)
		}
		p = real
	}
	return p, nil
}

// env is squeue's environment: PATH and SLURM_CONF from the control
// plane's, and Env on top. Times come as seconds since the epoch, which
// read the same in any time zone, whatever Env says.
func (q SlurmQueue) env() []string {
	env := []string{"PATH=" + cmp.Or(os.Getenv("PATH"), "/usr/sbin:/usr/bin:/sbin:/bin")}
	if conf, ok := os.LookupEnv("SLURM_CONF"); ok {
		env = append(env, "SLURM_CONF="+conf)
	}
	return append(append(env, q.Env...), "SLURM_TIME_FORMAT=%s")
}
