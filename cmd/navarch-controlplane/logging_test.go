package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLogFormat starts the binary and reads its first lines up to the one
// that says it serves: all JSON objects or all text, as --log-format or
// the file's log_format asks, the flag winning.
func TestLogFormat(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		args     []string
		wantJSON bool
	}{
		{"text-by-default", "", nil, false},
		{"json-flag", "", []string{"--log-format", "json"}, true},
		{"json-key", "log_format: json\n", nil, true},
		{"flag-over-key", "log_format: json\n", []string{"--log-format", "text"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, tt.args...)
			if tt.config != "" {
				args = append(args, "--config", writeConfig(t, tt.config))
			}
			lines := linesUntilServing(t, args...)
			for _, line := range lines {
				var rec map[string]any
				isJSON := json.Unmarshal([]byte(line), &rec) == nil
				if isJSON != tt.wantJSON {
					t.Fatalf("line %q: JSON %t, want %t", line, isJSON, tt.wantJSON)
				}
				if isJSON && (rec["time"] == nil || rec["level"] == nil || rec["msg"] == nil) {
					t.Fatalf("record without time, level or msg: %v", rec)
				}
				if !isJSON && !strings.HasPrefix(line, "time=") {
					t.Fatalf("not a text record: %q", line)
				}
			}
		})
	}
}

// linesUntilServing runs the binary with args and returns its log lines
// up to and with the one that says it serves, then kills it.
func linesUntilServing(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	got := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.Contains(sc.Text(), "control plane serving") {
				break
			}
		}
		got <- lines
	}()
	select {
	case lines := <-got:
		if len(lines) == 0 || !strings.Contains(lines[len(lines)-1], "control plane serving") {
			t.Fatalf("the control plane did not serve; it wrote:\n%s", strings.Join(lines, "\n"))
		}
		return lines
	case <-time.After(30 * time.Second):
		t.Fatal("the control plane did not serve within 30s")
	}
	return nil
}

// writeConfig writes a config file for the test and returns its path.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "controlplane.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
