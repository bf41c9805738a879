package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/testutil"
)

// get fetches url and returns the status code and body; code 0 means the
// request failed.
func get(url string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsListen runs the real binary on two simulated GPUs with
// --metrics-listen and scrapes it over HTTP while it is still trying to
// reach a control plane: /healthz answers once the GPUs are read, and
// /metrics has each GPU under dcgm-exporter's names, the Go and process
// metrics, and no contact with the control plane yet.
func TestMetricsListen(t *testing.T) {
	listen := unusedAddr(t)
	cmd := exec.Command(testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent"),
		"--server", unusedAddr(t), "--insecure", "--simulate", "--gpus", "2", "--node-id", "metrics-test",
		"--state-dir", t.TempDir(), "--metrics-listen", listen)
	var logs testutil.SyncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + listen
	var body string
	stopWithSIGTERM(t, cmd, &logs, func() bool {
		if code, _ := get(base + "/healthz"); code != http.StatusOK {
			return false
		}
		var code int
		code, body = get(base + "/metrics")
		return code == http.StatusOK
	})
	if !strings.Contains(logs.String(), "serving metrics") || !strings.Contains(logs.String(), base+"/metrics") {
		t.Errorf("the logs do not give the metrics URL:\n%s", logs.String())
	}
	lines := strings.Split(body, "\n")
	for _, gpu := range []string{`gpu="0"`, `gpu="1"`} {
		found := false
		for _, l := range lines {
			if strings.HasPrefix(l, "DCGM_FI_DEV_GPU_TEMP{") && strings.Contains(l, gpu) && strings.Contains(l, `device="nvidia`) &&
				strings.Contains(l, `modelName="NVIDIA H100`) && strings.Contains(l, `UUID="GPU-`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no DCGM_FI_DEV_GPU_TEMP with dcgm-exporter's labels for %s:\n%s", gpu, body)
		}
	}
	for _, want := range []string{"navarch_agent_gpus 2\n", "navarch_agent_last_contact_timestamp_seconds 0\n", "process_resident_memory_bytes ", "go_goroutines "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

// TestMetricsListenerProblemsAreUsageErrors: a web-config that cannot be
// read and an address already taken are found before the node joins, so
// the join token is not spent (no key is made) and the agent exits 2.
func TestMetricsListenerProblemsAreUsageErrors(t *testing.T) {
	bin := testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent")
	dir := t.TempDir()
	malformed := filepath.Join(dir, "malformed.yml")
	if err := os.WriteFile(malformed, []byte("basic_auth_users: [alice]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	tests := []struct {
		name      string
		listen    string
		webConfig string
		want      string
	}{
		{"web-config-missing", unusedAddr(t), filepath.Join(dir, "missing.yml"), "metrics web config: open " + filepath.Join(dir, "missing.yml")},
		{"web-config-malformed", unusedAddr(t), malformed, "metrics web config " + malformed},
		{"address-taken", taken.Addr().String(), "", "listen on " + taken.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "node-1")
			args := []string{"--server", unusedAddr(t), "--ca-hash", "sha256:" + strings.Repeat("ab", 32), "--join-token", "join.k8Yq2-secret",
				"--state-dir", state, "--simulate", "--node-id", "node-1", "--metrics-listen", tt.listen}
			if tt.webConfig != "" {
				args = append(args, "--metrics-web-config", tt.webConfig)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2:\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output does not say %q:\n%s", tt.want, out)
			}
			if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the state directory was made before the usage error: %v", err)
			}
		})
	}
}

// TestMetricsServedWhileJoining: while the control plane cannot be reached
// at first boot, the listener already serves the process's metrics, and
// /healthz answers 503 "starting" until the agent exists.
func TestMetricsServedWhileJoining(t *testing.T) {
	listen := unusedAddr(t)
	cmd := exec.Command(testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent"),
		"--server", unusedAddr(t), "--ca-hash", "sha256:"+strings.Repeat("ab", 32), "--join-token", "join.k8Yq2-secret",
		"--state-dir", filepath.Join(t.TempDir(), "node-1"), "--simulate", "--gpus", "1", "--node-id", "node-1", "--metrics-listen", listen)
	var logs testutil.SyncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	base := "http://" + listen
	var health, body string
	stopWithSIGTERM(t, cmd, &logs, func() bool {
		var code int
		if code, health = get(base + "/healthz"); code != http.StatusServiceUnavailable {
			return false
		}
		code, body = get(base + "/metrics")
		return code == http.StatusOK && strings.Contains(logs.String(), "join failed; retrying")
	})
	if strings.TrimSpace(health) != "starting" {
		t.Errorf("/healthz says %q, want starting", health)
	}
	for _, want := range []string{"process_resident_memory_bytes ", "go_goroutines "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "navarch_agent_") || strings.Contains(body, "DCGM_FI_") {
		t.Errorf("/metrics has the agent's series before the agent exists:\n%s", body)
	}
	if strings.Contains(logs.String(), "agent starting") {
		t.Errorf("the agent started without joining:\n%s", logs.String())
	}
}
