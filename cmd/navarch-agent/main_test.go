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
)

func TestBadFlagsExitWithUsage(t *testing.T) {
	rows := []struct {
		name string
		args []string
		want string
	}{
		{"malformed-fault", []string{"--simulate", "--sim-fault", "xid=79@gpu2+soon"}, "KIND@gpuN"},
		{"unknown-fault", []string{"--simulate", "--sim-fault", "meltdown@gpu0"}, `unknown kind "meltdown"`},
		{"fault-gpu-missing", []string{"--simulate", "--gpus", "2", "--sim-fault", "xid=79@gpu5"}, "GPU 5 does not exist"},
		{"fault-without-simulate", []string{"--sim-fault", "xid=79@gpu0"}, "need --simulate"},
		{"too-many-gpus", []string{"--simulate", "--gpus", "65"}, "--gpus"},
		{"bad-label", []string{"--simulate", "--label", "novalue"}, "KEY=VALUE"},
		{"bad-level", []string{"--log-level", "loud"}, "--log-level"},
		{"bad-server", []string{"--simulate", "--server", "nowhere"}, "HOST:PORT"},
		{"stray-argument", []string{"run"}, `unexpected argument "run"`},
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

// TestSIGTERMStopsCleanly runs the real binary on simulated GPUs and stops
// it with SIGTERM while it is still trying to reach a control plane.
func TestSIGTERMStopsCleanly(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "navarch-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--server", addr, "--insecure", "--simulate", "--gpus", "2", "--node-id", "term-test")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
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
