package slurm

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/navarch/navarch/internal/display"
)

// Job is one Slurm job that holds this node.
type Job struct {
	// ID is Slurm's job id, such as "42", "42_3" for an array task or
	// "42+1" for a heterogeneous job's component.
	ID string
	// State is its state as squeue prints it, such as "RUNNING".
	State string
}

// heldStates are the job states in which a job holds its nodes; a pending
// job holds none yet, a finished one none any more.
const heldStates = "RUNNING,SUSPENDED,COMPLETING,CONFIGURING,STOPPED,SIGNALING,STAGE_OUT,RESIZING"

// jobFormat asks squeue for the id and state alone: a job's name or
// comment is its owner's free text, which could pass for another line of
// the list and so for a job the agent, as root, would cancel.
const jobFormat = "%i|%T"

// jobLine is one line of squeue's output in jobFormat.
var jobLine = regexp.MustCompile(`^([0-9]+(?:[_+][0-9]+)?)\|([A-Z_]+)$`)

// Jobs lists the jobs that hold this node.
func (c *Client) Jobs(ctx context.Context) ([]Job, error) {
	out, err := c.run(ctx, c.squeue, "--noheader", "--nodelist="+c.node, "--states="+heldStates, "--format="+jobFormat)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return parseJobs(out)
}

// Cancel cancels every job that holds this node, which must be drained,
// and returns them. It does not wait for them to end: Slurm signals them,
// then kills them after its KillWait. A job that spans several nodes ends
// on all of them.
func (c *Client) Cancel(ctx context.Context) ([]Job, error) {
	jobs, err := c.Jobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("cancel: %w", err)
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	// Drained after the list was read, so that no job listed is one
	// that started because someone resumed the node meanwhile (Slurm
	// has no compare-and-set; this narrows the window to one call).
	n, err := c.Node(ctx)
	if err != nil {
		return nil, fmt.Errorf("cancel: %w", err)
	}
	if !n.Drain {
		return nil, fmt.Errorf("cancel: slurm node %s is not drained (%s): its jobs are left", c.node, n.State)
	}
	// By id rather than by node, so that what is cancelled is exactly
	// what is returned.
	args := []string{"--"}
	for _, j := range jobs {
		args = append(args, j.ID)
	}
	if _, err := c.run(ctx, c.scancel, args...); err != nil {
		return nil, fmt.Errorf("cancel: %w", err)
	}
	return jobs, nil
}

// parseJobs reads squeue's lines in jobFormat; anything else is an error,
// never a job.
func parseJobs(out string) ([]Job, error) {
	var jobs []Job
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m := jobLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("squeue printed %q, not a job id and state", display.Cut(line, 80, "…"))
		}
		jobs = append(jobs, Job{ID: m[1], State: m[2]})
	}
	return jobs, nil
}
