package main

import (
	"io"
	"net/http"
	"os/exec"
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
