package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConfigFile: the settings file names the flags; the command line
// wins over it; a mistake in it is an error naming the file, line and
// setting; a file holding the join token must be the owner's alone.
func TestConfigFile(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("NAVARCH_JOIN_TOKEN", "")
	rows := []struct {
		name string
		file string
		mode os.FileMode
		args []string
		want string
	}{
		{"applied", "simulate: true\ngpus: 65\n", 0o644, nil, "--gpus: 65 is not within 1–64"},
		{"command-line-wins", "simulate: true\ngpus: 65\n", 0o644, []string{"--gpus", "2", "--server", "nowhere"}, `server address "nowhere" is not HOST:PORT`},
		{"list", "simulate: true\nlabel:\n  - zone=a\n  - novalue\n", 0o644, nil, "KEY=VALUE"},
		{"unknown-setting", "simulate: true\nsever: cp:50051\n", 0o644, nil, "line 2: sever: not a setting of navarch-agent"},
		{"flag-syntax", "--server: cp:50051\n", 0o644, nil, "line 1: --server: not a setting"},
		{"twice", "gpus: 2\ngpus: 4\n", 0o644, nil, "line 2: gpus: set twice"},
		{"bad-duration", "poll-interval: often\n", 0o644, nil, `line 1: poll-interval: "often" is not a value it takes (parse error; the default is 5s)`},
		{"bad-value", "simulate: maybe\n", 0o644, nil, `line 1: simulate: "maybe" is not true or false`},
		{"not-a-mapping", "- server\n", 0o644, nil, "settings are `name: value` lines"},
		{"nested", "slurm:\n  node-name: a\n", 0o644, nil, "line 1: slurm: not a setting"},
		{"token-readable-by-others", "join-token: nvj_secret\n", 0o644, nil, "readable by others (mode 0644): chmod 600 it"},
		{"token-owner-only", "join-token: nvj_secret\nsimulate: true\ngpus: 65\n", 0o600, nil, "--gpus: 65"},
		{"two-documents", "scheduler: slurm\n---\nserver: b:1\n", 0o600, nil, "holds more than one YAML document"},
		{"null", "slurm-node-name: null\n", 0o600, nil, `line 1: slurm-node-name: no value; give one, or "" for an empty one`},
		{"tilde", "reboot-command: ~\n", 0o600, nil, "line 1: reboot-command: no value"},
		{"empty", "kernel-log:\n", 0o600, nil, "line 1: kernel-log: no value"},
		{"list-for-one", "node-id: [a, b]\n", 0o600, nil, "line 1: node-id: takes one value, not a list"},
		{"server-list", "server: [cp-1:50051, cp-2]\n", 0o600, nil, `--server: server address 2 of 2 in "cp-1:50051,cp-2": server address "cp-2" is not HOST:PORT`},
		{"unknown-scheduler", "scheduler: pbs\n", 0o644, nil, `--scheduler: "pbs" is not a scheduler this agent knows`},
		{"slurm-name-alone", "slurm-node-name: gpu7\n", 0o644, nil, "--slurm-node-name and --slurm-bin need --scheduler slurm"},
		{"slurm-missing", "scheduler: slurm\nslurm-bin: /nonexistent\n", 0o644, nil, "--scheduler slurm: "},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(path, []byte(row.file), row.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, row.mode); err != nil { // whatever the umask
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			if code := run(append([]string{"--config", path}, row.args...), &out, &errOut); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, errOut.String())
			}
			if !strings.Contains(errOut.String(), row.want) {
				t.Fatalf("stderr %q does not say %q", errOut.String(), row.want)
			}
			if strings.Contains(errOut.String(), "nvj_secret") {
				t.Fatalf("the join token was printed: %s", errOut.String())
			}
		})
	}
	t.Run("missing-file", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if code := run([]string{"--config", filepath.Join(t.TempDir(), "none.yaml")}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--config: ") || !strings.Contains(errOut.String(), "no such file or directory") {
			t.Fatalf("exit %d, stderr %q", code, errOut.String())
		}
	})
}

// TestExampleConfig: the example the packages install as
// /etc/navarch/agent.yaml names only real settings with values they take,
// with every setting turned on as well as off.
func TestExampleConfig(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("NAVARCH_JOIN_TOKEN", "")
	example, err := os.ReadFile(filepath.Join("..", "..", "deploy", "config", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	on := regexp.MustCompile(`(?m)^#([a-z-]+:|  - )`).ReplaceAll(example, []byte("$1"))
	if bytes.Equal(on, example) {
		t.Fatal("found no setting to turn on in the example")
	}
	for name, file := range map[string][]byte{"as-shipped": example, "every-setting-on": on} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(path, file, 0o600); err != nil {
				t.Fatal(err)
			}
			// A bad --gpus stops the agent right after the settings were
			// applied: whatever it says, the file was taken.
			var out, errOut bytes.Buffer
			code := run([]string{"--config", path, "--simulate", "--gpus", "0"}, &out, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), "--gpus: 0 is not within 1–64") {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
		})
	}
}

// TestConfigFileMustBeRootsAlone: an agent running as root refuses a
// settings file anyone else may change: it names commands the agent runs.
func TestConfigFileMustBeRootsAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the check is root's")
	}
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte("reboot-command: /tmp/evil\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o664); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--config", path}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "it names commands the agent runs as root: "+path+" is owned by uid 0 with mode 0664") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}
