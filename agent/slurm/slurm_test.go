package slurm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeCommands writes scontrol, squeue and scancel into a folder, each the
// given shell script, and returns the folder: for what a real Slurm cannot
// be made to do on demand (hang, print nonsense).
func fakeCommands(t *testing.T, script string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"scontrol", "squeue", "scancel"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestNewFails(t *testing.T) {
	fake := fakeCommands(t, "exit 0")
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"no-scontrol", Options{NodeName: "vm", Bin: t.TempDir()}, "find Slurm's scontrol"},
		{"hostlist-name", Options{NodeName: "gpu[1-2]", Bin: fake}, `node name "gpu[1-2]" is not a host name`},
		{"option-name", Options{NodeName: "-x", Bin: fake}, `node name "-x" is not a host name`},
		{"negative-timeout", Options{NodeName: "vm", Bin: fake, Timeout: -time.Second}, "timeout -1s is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New error = %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}

func TestNodeNameDefaultsToShortHostname(t *testing.T) {
	c, err := New(Options{Bin: fakeCommands(t, "exit 0")})
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := strings.Cut(host, ".")
	if c.NodeName() != want {
		t.Errorf("NodeName = %q, want %q", c.NodeName(), want)
	}
}

// TestCommandEnvironment: the commands get the agent's environment, the
// options' on top, and the time format the parse reads whatever either
// says.
func TestCommandEnvironment(t *testing.T) {
	bin := fakeCommands(t, `echo "NodeName=vm State=$SLURM_CONF+$SLURM_TIME_FORMAT+$HOME+$NAVARCH_JOIN_TOKEN+${PATH:+path}"`)
	t.Setenv("HOME", "/home/agent")
	t.Setenv("NAVARCH_JOIN_TOKEN", "nvj_secret")
	t.Setenv("SLURM_CONF", "/etc/slurm/agent.conf")
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"agent-slurm-conf", nil, "/etc/slurm/agent.conf+standard+++path"},
		{"options-win", []string{"SLURM_CONF=/etc/slurm/test.conf", "SLURM_TIME_FORMAT=relative"}, "/etc/slurm/test.conf+standard+++path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Options{NodeName: "vm", Bin: bin, Env: tt.env})
			if err != nil {
				t.Fatal(err)
			}
			n, err := c.Node(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if n.State != tt.want {
				t.Errorf("the command saw %q, want %q: Slurm's own settings and PATH, nothing else of the agent's", n.State, tt.want)
			}
		})
	}
}

// TestRootRunsOnlyRootsCommands: an agent running as root refuses Slurm
// commands that anyone else may change.
func TestRootRunsOnlyRootsCommands(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the check is root's")
	}
	for _, tt := range []struct {
		name  string
		apply func(bin string) error
	}{
		{"folder-writable-by-all", func(bin string) error { return os.Chmod(bin, 0o777) }},
		{"command-writable-by-group", func(bin string) error { return os.Chmod(filepath.Join(bin, "scancel"), 0o775) }},
		{"command-owned-by-another", func(bin string) error { return os.Chown(filepath.Join(bin, "squeue"), 65534, 0) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bin := fakeCommands(t, "exit 0")
			if _, err := New(Options{NodeName: "vm", Bin: bin}); err != nil {
				t.Fatalf("root's own commands refused: %v", err)
			}
			if err := tt.apply(bin); err != nil {
				t.Fatal(err)
			}
			if _, err := New(Options{NodeName: "vm", Bin: bin}); err == nil || !strings.Contains(err.Error(), "the agent runs it as root") {
				t.Fatalf("New = %v, want a refusal", err)
			}
		})
	}
}

func TestCommandErrors(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		timeout time.Duration
		wantErr string
	}{
		{"stderr", "echo 'slurm_load_node error: Unable to contact slurm controller' >&2; echo more >&2; exit 1",
			0, "scontrol --oneliner show node vm: exit status 1: slurm_load_node error: Unable to contact slurm controller"},
		{"stdout-when-stderr-is-empty", "echo 'Node vm not found'; exit 1",
			0, "scontrol --oneliner show node vm: exit status 1: Node vm not found"},
		{"silent", "exit 2", 0, "scontrol --oneliner show node vm: exit status 2"},
		{"hangs", "exec sleep 30", 200 * time.Millisecond, "scontrol --oneliner show node vm: no answer within 200ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(Options{NodeName: "vm", Bin: fakeCommands(t, tt.script), Timeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = c.Node(context.Background())
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("Node error = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "more") {
				t.Errorf("Node error = %v, want the first line of stderr only", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Node took %s", took)
			}
		})
	}
}

// TestCommandCancelled: a cancelled context says so, not that Slurm did
// not answer.
func TestCommandCancelled(t *testing.T) {
	c, err := New(Options{NodeName: "vm", Bin: fakeCommands(t, "exec sleep 30")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Jobs(ctx)
	if err == nil || !strings.Contains(err.Error(), "squeue") || !strings.HasSuffix(err.Error(), context.DeadlineExceeded.Error()) ||
		strings.Contains(err.Error(), "no answer") {
		t.Errorf("Jobs error = %v, want squeue's, ending in the context's", err)
	}
}
