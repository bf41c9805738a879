package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/navarch/navarch/internal/testutil"
)

// TestLogFormatJSON runs the real binary with --log-format json: every
// line it writes, from start to stop, is one JSON record.
func TestLogFormatJSON(t *testing.T) {
	cmd := exec.Command(testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent"), "--server", unusedAddr(t), "--insecure",
		"--simulate", "--gpus", "1", "--node-id", "json-test", "--log-format", "json", "--log-level", "debug")
	var logs testutil.SyncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopWithSIGTERM(t, cmd, &logs, func() bool { return strings.Contains(logs.String(), `"msg":"agent starting"`) })
	msgs := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a line that is not JSON: %q: %v", line, err)
		}
		msg, _ := rec["msg"].(string)
		msgs[msg] = true
		if rec["time"] == nil || rec["level"] == nil {
			t.Fatalf("record without time or level: %v", rec)
		}
	}
	if !msgs["agent starting"] || !msgs["agent stopped"] {
		t.Fatalf("messages %v", msgs)
	}
}
