package slurm

import (
	"context"
	"fmt"
	"strings"
)

// Job is one Slurm job that holds this node.
type Job struct {
	// ID is Slurm's job id, such as "42", or "42_3" for an array task.
	ID string
	// User is who submitted it.
	User string
	// State is its state as squeue prints it, such as "RUNNING".
	State string
	// Name is its name.
	Name string
}

// heldStates are the job states in which a job holds its nodes; a pending
// job holds none yet, a finished one none any more.
const heldStates = "RUNNING,SUSPENDED,COMPLETING,CONFIGURING,STOPPED,SIGNALING,STAGE_OUT,RESIZING"

// jobFormat puts the name last: it is the one field that may hold the
// separator.
const jobFormat = "%i|%u|%T|%j"

// Jobs lists the jobs that hold this node.
func (c *Client) Jobs(ctx context.Context) ([]Job, error) {
	out, err := c.run(ctx, c.squeue, "--noheader", "--nodelist="+c.node, "--states="+heldStates, "--format="+jobFormat)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return parseJobs(out)
}

// Cancel cancels every job that holds this node, and returns them. It
// does not wait for them to end: Slurm signals them, then kills them
// after its KillWait.
func (c *Client) Cancel(ctx context.Context) ([]Job, error) {
	jobs, err := c.Jobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("cancel: %w", err)
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	// By id rather than by node, so that what is cancelled is exactly
	// what is returned. The agent drains the node before it cancels, so
	// no job starts in between.
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	if _, err := c.run(ctx, c.scancel, ids...); err != nil {
		return nil, fmt.Errorf("cancel: %w", err)
	}
	return jobs, nil
}

// parseJobs reads squeue's lines in jobFormat. A job name with a line
// break in it goes on over the next line, which has no separators of
// its own; it is read as one name.
func parseJobs(out string) ([]Job, error) {
	var jobs []Job
	for line := range strings.Lines(out) {
		line = strings.TrimRight(line, "\n")
		fields := strings.SplitN(line, "|", 4)
		if len(fields) < 4 {
			if len(jobs) == 0 {
				if strings.TrimSpace(line) == "" {
					continue
				}
				return nil, fmt.Errorf("squeue printed %q, not a job", line)
			}
			jobs[len(jobs)-1].Name += "\n" + line
			continue
		}
		jobs = append(jobs, Job{ID: fields[0], User: fields[1], State: fields[2], Name: fields[3]})
	}
	return jobs, nil
}
