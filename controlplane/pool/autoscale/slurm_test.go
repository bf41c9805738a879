package autoscale

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/slurmtest"
	"github.com/navarch/navarch/internal/testutil"
)

func TestParseQueue(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name      string
		out       string
		wantNodes int
		wantJobs  int
		wantErr   string
	}{
		{"empty", "", 0, 0, ""},
		{"sums-nodes", "1|1800000000|(null)|Resources\n4|1799990000|(null)|Priority\n2|1800000000|(null)|None\n", 7, 3, ""},
		{"node-not-available", "2|1800000000|(null)|ReqNodeNotAvail, UnavailableNodes:gpu[1-2]\n" +
			"1|1800000000|(null)|Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority partitions\n", 3, 2, ""},
		{"waits-for-no-node", "3|N/A|(null)|JobHeldUser\n3|1800000000|(null)|JobHeldAdmin\n8|1800000000|(null)|QOSMaxNodePerJobLimit\n" +
			"2|1800003600|(null)|BeginTime\n1|N/A|afterok:7(unfulfilled)|Dependency\n1|1800000000|(null)|Resources\n", 1, 1, ""},
		{"begin-time-said-resources", "2|1800003600|(null)|Resources\n", 0, 0, ""},
		{"dependency-said-resources", "1|N/A|afterany:7(unfulfilled),singleton(unfulfilled)|Resources\n", 0, 0, ""},
		{"eligible-not-worked-out", "3|N/A|(null)|Resources\n", 3, 1, ""},
		{"eligible-within-a-minute", "2|1800000060|(null)|Resources\n1|1800000061|(null)|Resources\n", 2, 1, ""},
		{"blank-lines", "\n  1|1800000000|(null)|Resources  \n\n", 1, 1, ""},
		{"converted-count", "2K|1800000000|(null)|Resources\n", 0, 0,
			`squeue printed "2K|1800000000|(null)|Resources", not a node count, a time, dependencies and a reason`},
		{"range", "1-3|1800000000|(null)|Resources\n", 0, 0, `squeue printed "1-3|1800000000|(null)|Resources"`},
		{"too-many-digits", "1234567890|1800000000|(null)|Resources\n", 0, 0, `squeue printed "1234567890|1800000000|(null)|Resources"`},
		{"fields-missing", "1|1800000000|Resources\n", 0, 0, `squeue printed "1|1800000000|Resources"`},
		{"header", "NODES|ELIGIBLE_TIME|DEPENDENCY|REASON\n1|1800000000|(null)|Resources\n", 0, 0, `squeue printed "NODES|ELIGIBLE_TIME|DEPENDENCY|REASON"`},
		{"control-characters", "\x1b[2J|x\n", 0, 0, `squeue printed "?[2J|x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes, jobs, err := parseQueue(tt.out, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseQueue error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || nodes != tt.wantNodes || jobs != tt.wantJobs {
				t.Errorf("parseQueue = %d nodes, %d jobs, %v; want %d, %d", nodes, jobs, err, tt.wantNodes, tt.wantJobs)
			}
		})
	}
}

// fakeSqueue writes a squeue that runs script into a folder and returns
// the folder: for what a real Slurm cannot be made to do on demand (hang,
// fail, show what it was given).
func fakeSqueue(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "squeue"), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestSqueueCommand: squeue gets its arguments with the partition as one
// of them, and of the control plane's environment PATH and SLURM_CONF
// alone, Env on top, and the time format the parse reads whatever either
// says.
func TestSqueueCommand(t *testing.T) {
	record := filepath.Join(t.TempDir(), "record")
	bin := fakeSqueue(t, `printf '%s\n' "$@" > `+record+`
echo "$SLURM_CONF+$SLURM_TIME_FORMAT+$AWS_SECRET_ACCESS_KEY+$SQUEUE_FORMAT+${PATH:+path}" >> `+record+`
echo "2|$(date +%s)|(null)|Resources"`)
	t.Setenv("SLURM_CONF", "/etc/slurm/controlplane.conf")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("SQUEUE_FORMAT", "%j")
	wantArgs := "--noheader --array --noconvert --partition=gpu --states=PENDING --Format=NumNodes:0|,EligibleTime:0|,Dependency:0|,Reason:0"
	tests := []struct {
		name    string
		env     []string
		wantEnv string
	}{
		{"control-plane-slurm-conf", nil, "/etc/slurm/controlplane.conf+%s+++path"},
		{"env-wins", []string{"SLURM_CONF=/etc/slurm/test.conf", "SLURM_TIME_FORMAT=standard"}, "/etc/slurm/test.conf+%s+++path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes, jobs, err := SlurmQueue{Bin: bin, Env: tt.env}.Pending(context.Background(), "gpu")
			if err != nil || nodes != 2 || jobs != 1 {
				t.Fatalf("Pending = %d, %d, %v; want 2 nodes, 1 job", nodes, jobs, err)
			}
			b, err := os.ReadFile(record)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if got := strings.Join(lines[:len(lines)-1], " "); got != wantArgs {
				t.Errorf("squeue's arguments = %q, want %q", got, wantArgs)
			}
			if got := lines[len(lines)-1]; got != tt.wantEnv {
				t.Errorf("squeue saw %q, want %q: Slurm's own settings and PATH, nothing else of the control plane's", got, tt.wantEnv)
			}
		})
	}
}

func TestPendingFails(t *testing.T) {
	tests := []struct {
		name      string
		script    string
		bin       string
		partition string
		timeout   time.Duration
		wantErr   string
	}{
		{"stderr", "echo 'squeue: error: Unable to contact slurm controller' >&2; echo more >&2; exit 1", "", "gpu", 0,
			"read Slurm's queue for partition gpu: squeue --noheader --array --noconvert --partition=gpu --states=PENDING --Format=NumNodes:0|,EligibleTime:0|,Dependency:0|,Reason:0: " +
				"exit status 1: squeue: error: Unable to contact slurm controller"},
		{"silent", "exit 2", "", "gpu", 0,
			"read Slurm's queue for partition gpu: squeue --noheader --array --noconvert --partition=gpu --states=PENDING --Format=NumNodes:0|,EligibleTime:0|,Dependency:0|,Reason:0: exit status 2"},
		{"hangs", "exec sleep 30", "", "gpu", 200 * time.Millisecond,
			"read Slurm's queue for partition gpu: squeue --noheader --array --noconvert --partition=gpu --states=PENDING --Format=NumNodes:0|,EligibleTime:0|,Dependency:0|,Reason:0: no answer within 200ms"},
		{"nonsense", "echo 'slurm_load_jobs error: nope'", "", "gpu", 0,
			`read Slurm's queue for partition gpu: squeue printed "slurm_load_jobs error: nope", not a node count, a time, dependencies and a reason`},
		{"no-squeue", "", t.TempDir(), "gpu", 0, "read Slurm's queue for partition gpu: find Slurm's squeue (package slurm-client)"},
		{"partition-list", "exit 0", "", "gpu,cpu", 0, `read Slurm's queue: "gpu,cpu" is not a Slurm partition name`},
		{"partition-option", "exit 0", "", "--all", 0, `read Slurm's queue: "--all" is not a Slurm partition name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := tt.bin
			if bin == "" {
				bin = fakeSqueue(t, tt.script)
			}
			start := time.Now()
			nodes, jobs, err := SlurmQueue{Bin: bin, Timeout: tt.timeout}.Pending(context.Background(), tt.partition)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || nodes != 0 || jobs != 0 {
				t.Fatalf("Pending = %d, %d, %v; want the error %q", nodes, jobs, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "more") {
				t.Errorf("Pending error = %v, want the first line of stderr only", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Pending took %s", took)
			}
		})
	}
}

// TestPendingCancelled: a cancelled context says so, not that Slurm did
// not answer.
func TestPendingCancelled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := SlurmQueue{Bin: fakeSqueue(t, "exec sleep 30")}.Pending(ctx, "gpu")
	if err == nil || !strings.HasSuffix(err.Error(), context.DeadlineExceeded.Error()) || strings.Contains(err.Error(), "no answer") {
		t.Errorf("Pending error = %v, want squeue's, ending in the context's", err)
	}
}

// TestPendingFromSlurm: against a real Slurm, Pending counts the jobs
// that wait for nodes in the partition asked for, each array task on its
// own, and leaves out held jobs, jobs waiting for their begin time or for
// another job, and other partitions' jobs.
func TestPendingFromSlurm(t *testing.T) {
	t.Parallel()
	c := slurmtest.Start(t)
	const other = "other"
	c.Run(t, "scontrol", "create", "PartitionName="+other, "Nodes="+c.Node())
	// The cluster cancels its own partition's jobs when it stops; this
	// one's go first.
	t.Cleanup(func() { c.Run(t, "scancel", "--partition="+other) })
	q := SlurmQueue{Env: c.Env()}
	ctx := context.Background()
	pending := func(partition string) (int, int) {
		t.Helper()
		nodes, jobs, err := q.Pending(ctx, partition)
		if err != nil {
			t.Fatal(err)
		}
		return nodes, jobs
	}

	running := c.Sbatch(t, "--exclusive", slurmtest.SleepScript(120))
	testutil.EventuallyWithin(t, 30*time.Second, "job "+running+" RUNNING", func() bool { return c.JobState(t, running) == "RUNNING" })
	if nodes, jobs := pending(slurmtest.Partition); nodes != 0 || jobs != 0 {
		t.Fatalf("Pending with no job waiting = %d nodes, %d jobs", nodes, jobs)
	}

	c.Sbatch(t, "--hold", slurmtest.SleepScript(60))
	c.Sbatch(t, "--begin=now+1hour", slurmtest.SleepScript(60))
	c.Sbatch(t, "--dependency=afterok:"+running, slurmtest.SleepScript(60))
	c.Sbatch(t, slurmtest.SleepScript(60))
	c.Sbatch(t, "--array=1-3", slurmtest.SleepScript(60))
	c.Run(t, "sbatch", "--partition="+other, "--nodelist="+c.Node(), "--output=/dev/null", slurmtest.SleepScript(60))
	// Slurm names the reasons jobs wait for as its scheduler gets to
	// them: the count holds throughout.
	for range 3 {
		if nodes, jobs := pending(slurmtest.Partition); nodes != 4 || jobs != 4 {
			t.Fatalf("Pending(%s) = %d nodes, %d jobs; want 4 of each, a job and 3 array tasks:\n%s", slurmtest.Partition, nodes, jobs,
				c.Run(t, "squeue", "--array", "--states=PENDING", "--noconvert", "--Format=Partition:0|,JobArrayID:0|,"+queueFormat))
		}
		if nodes, jobs := pending(other); nodes != 1 || jobs != 1 {
			t.Fatalf("Pending(%s) = %d nodes, %d jobs; want 1 of each", other, nodes, jobs)
		}
		time.Sleep(time.Second)
	}
}
