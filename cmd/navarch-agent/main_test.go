package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/testutil"
)

func TestBadFlagsExitWithUsage(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("NAVARCH_JOIN_TOKEN", "")
	pin := "sha256:" + strings.Repeat("0", 64)
	rows := []struct {
		name string
		args []string
		want string
	}{
		{"malformed-fault", []string{"--simulate", "--sim-fault", "xid=79@gpu2+soon"}, "KIND@gpuN"},
		{"unknown-fault", []string{"--simulate", "--sim-fault", "meltdown@gpu0"}, `unknown kind "meltdown"`},
		{"fault-gpu-missing", []string{"--simulate", "--gpus", "2", "--sim-fault", "xid=79@gpu5"}, "GPU 5 does not exist"},
		{"fault-without-simulate", []string{"--sim-fault", "xid=79@gpu0"}, "need --simulate"},
		{"control-without-simulate", []string{"--sim-control", "/tmp/sim"}, "need --simulate"},
		{"too-many-gpus", []string{"--simulate", "--gpus", "65"}, "--gpus"},
		{"bad-label", []string{"--simulate", "--label", "novalue"}, "KEY=VALUE"},
		{"bad-level", []string{"--log-level", "loud"}, `--log-level: "loud" is not debug, info, warn or error`},
		{"bad-format", []string{"--log-format", "xml"}, `--log-format: "xml" is not text or json`},
		{"bad-server", []string{"--simulate", "--server", "nowhere"}, "HOST:PORT"},
		{"bad-server-in-list", []string{"--simulate", "--server", "127.0.0.1:1,nowhere:"}, `server address "nowhere:": the port "" is not a number`},
		{"bad-repeated-server", []string{"--simulate", "--server", "127.0.0.1:1", "--server", "127.0.0.1:1"}, `server address "127.0.0.1:1" is given twice`},
		{"stray-argument", []string{"run"}, `unexpected argument "run"`},
		{"empty-nvidia-smi", []string{"--simulate", "--nvidia-smi", " "}, "--nvidia-smi: the path is empty"},
		{"empty-reboot-command", []string{"--simulate", "--reboot-command", ""}, "--reboot-command: the command is empty"},
		{"ca-cert-and-hash", []string{"--ca-cert", "ca.crt", "--ca-hash", pin}, "--ca-cert or --ca-hash, not both"},
		{"malformed-ca-hash", []string{"--ca-hash", "md5:00"}, `--ca-hash: CA pin "md5:00" does not start with "sha256:"`},
		{"metrics-web-config-alone", []string{"--simulate", "--metrics-web-config", "web.yml"}, "--metrics-web-config needs --metrics-listen"},
		{"node-id-not-a-directory", []string{"--simulate", "--node-id", ".."}, "give --state-dir"},
		{"not-joined", []string{"--simulate", "--node-id", "n1", "--server", "127.0.0.1:1", "--ca-hash", pin}, "this node has not joined: give --join-token (an operator makes one with 'navarch token create NAME --role agent')"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(row.args, &out, &errOut); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, errOut.String())
			}
			if !strings.Contains(errOut.String(), row.want) {
				t.Fatalf("stderr %q does not say %q", errOut.String(), row.want)
			}
		})
	}
}

// TestNoDriverIsAPlainError: without --simulate and without an NVIDIA
// driver the agent says so and exits 1; it never falls back to simulation.
func TestNoDriverIsAPlainError(t *testing.T) {
	for _, lib := range []string{"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "/usr/lib64/libnvidia-ml.so.1", "/usr/lib/libnvidia-ml.so.1"} {
		if _, err := os.Stat(lib); err == nil {
			t.Skip("this machine has an NVIDIA driver")
		}
	}
	var out, errOut bytes.Buffer
	code := run([]string{"--server", "127.0.0.1:1", "--insecure", "--node-id", "n1"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "NVIDIA driver") || strings.Contains(errOut.String(), "simulated=true") {
		t.Fatalf("stderr %q", errOut.String())
	}
}

func TestJoinTokenFromEnv(t *testing.T) {
	t.Setenv("NAVARCH_JOIN_TOKEN", "")
	if got := joinTokenFromEnv(""); got != "" {
		t.Fatalf("no token anywhere: %q", got)
	}
	t.Setenv("NAVARCH_JOIN_TOKEN", "join.env")
	if got := joinTokenFromEnv(""); got != "join.env" {
		t.Fatalf("environment: %q", got)
	}
	if got := joinTokenFromEnv("join.flag"); got != "join.flag" {
		t.Fatalf("flag: %q", got)
	}
}

// unusedAddr is a loopback address nothing listens on.
func unusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// stopWithSIGTERM sends SIGTERM once ready, and expects a clean exit that
// logs "agent stopped".
func stopWithSIGTERM(t *testing.T, cmd *exec.Cmd, logs *testutil.SyncBuffer, ready func() bool) {
	t.Helper()
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // if the test fails before the agent stops
	testutil.EventuallyWithin(t, 20*time.Second, "the agent under way", ready)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("agent did not stop on SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "agent stopped") {
		t.Fatalf("logs: %s", logs.String())
	}
}

// TestSIGTERMStopsCleanly runs the real binary on simulated GPUs and stops
// it with SIGTERM while it is still trying to reach a control plane.
func TestSIGTERMStopsCleanly(t *testing.T) {
	cmd := exec.Command(testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent"), "--server", unusedAddr(t), "--insecure", "--simulate", "--gpus", "2", "--node-id", "term-test")
	var logs testutil.SyncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopWithSIGTERM(t, cmd, &logs, func() bool { return strings.Contains(logs.String(), "agent starting") })
}

// TestJoinWaitsForTheControlPlane: an agent given a join token (here in
// the environment) for a control plane not up yet makes its key, keeps
// trying to join, never logs the token, and stops cleanly on SIGTERM.
func TestJoinWaitsForTheControlPlane(t *testing.T) {
	const token = "join.k8Yq2-secret"
	state := filepath.Join(t.TempDir(), "node-1")
	cmd := exec.Command(testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent"), "--server", unusedAddr(t), "--ca-hash", "sha256:"+strings.Repeat("ab", 32),
		"--state-dir", state, "--simulate", "--gpus", "1", "--node-id", "node-1", "--log-level", "debug")
	cmd.Env = append(os.Environ(), "NAVARCH_JOIN_TOKEN="+token)
	var logs testutil.SyncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopWithSIGTERM(t, cmd, &logs, func() bool { return strings.Count(logs.String(), "join failed; retrying") >= 2 })
	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Fatalf("the logs hold the token or the key:\n%s", logs.String())
	}
	for path, want := range map[string]os.FileMode{state: 0o700, filepath.Join(state, "key.pem"): 0o600} {
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: %v %v, want mode %o", path, st, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(state, "cert.pem")); !os.IsNotExist(err) {
		t.Fatalf("a certificate without a join: %v", err)
	}
}
