package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/navarch/navarch/internal/testutil"
)

// TestMemoryLimitConfigErrors: a memory_limit the control plane cannot
// read is refused by its key.
func TestMemoryLimitConfigErrors(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"decimal-unit", "memory_limit: 2GB\n", `memory_limit: "2GB" is not a size: use e.g. 2GiB`},
		{"fraction", "memory_limit: 1.5GiB\n", `memory_limit: "1.5GiB" is not a size`},
		{"below-minimum", "memory_limit: 1MiB\n", `memory_limit: "1MiB" is below the minimum of 64MiB`},
		{"list", "memory_limit: [2GiB]\n", "line 1: memory_limit: a list is not a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			if code := run([]string{"--data-dir", t.TempDir(), "--config", writeConfig(t, tt.body)}, io.Discard, &errOut); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("stderr %q does not say %q", errOut.String(), tt.want)
			}
		})
	}
}

// TestMemoryLimitInEffect runs the binary and reads the limit it set from
// its log line and from the runtime's own metric: the configured size,
// unless GOMEMLIMIT is in the environment, which wins; auto's is sized to
// the fleet, here an empty one, which is the budget's base.
func TestMemoryLimitInEffect(t *testing.T) {
	tests := []struct {
		name, env, setting string
		wantLog            string
		wantBytes          int64
	}{
		{"config", "", "1GiB", `msg="soft memory limit" limit=1GiB source=config`, 1 << 30},
		{"env-wins", "768MiB", "1GiB", `msg="soft memory limit" limit=768MiB source=GOMEMLIMIT`, 768 << 20},
		{"auto-sized-to-the-fleet", "", "auto", `msg="soft memory limit sized to the fleet" limit=256MiB nodes=0`, 256 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The binary inherits the environment; this process read
			// GOMEMLIMIT when it started and keeps its own limit.
			t.Setenv("GOMEMLIMIT", tt.env)
			addr := testutil.FreeAddr(t)
			cp := startBinary(t, "--data-dir", t.TempDir(), "--metrics-listen", addr,
				"--config", writeConfig(t, "memory_limit: "+tt.setting+"\n"))
			if !strings.Contains(cp.output(), tt.wantLog) {
				t.Fatalf("log does not say %q:\n%s", tt.wantLog, cp.output())
			}
			if got := scrapeGauge(t, addr, "go_gc_gomemlimit_bytes"); got != tt.wantBytes {
				t.Fatalf("go_gc_gomemlimit_bytes %d, want %d", got, tt.wantBytes)
			}
		})
	}
}

// scrapeGauge reads one unlabelled series from the metrics listener.
func scrapeGauge(t *testing.T, addr, name string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return int64(f)
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
