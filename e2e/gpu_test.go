//go:build nvml

// This test runs the real agent on the machine's real GPUs, so it builds
// only with the nvml tag: `go tool task test-gpu` on a machine with an
// NVIDIA driver. The agent may not reset or reboot anything.

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// driverUUIDs asks NVML itself which GPUs the machine has.
func driverUUIDs(t *testing.T) []string {
	t.Helper()
	lib := nvml.New()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		t.Fatalf("nvmlInit: %s", nvml.ErrorString(ret))
	}
	defer lib.Shutdown()
	n, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS || n == 0 {
		t.Fatalf("nvmlDeviceGetCount: %d GPUs, %s", n, nvml.ErrorString(ret))
	}
	var out []string
	for i := range n {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			t.Fatalf("GPU %d: %s", i, nvml.ErrorString(ret))
		}
		uuid, ret := d.GetUUID()
		if ret != nvml.SUCCESS {
			t.Fatalf("GPU %d: %s", i, nvml.ErrorString(ret))
		}
		out = append(out, uuid)
	}
	return out
}

// TestRealAgentOnRealGPUs joins the real agent binary, reading the real
// driver, to a control plane over TLS with a join token, as on a GPU node:
// its inventory is the driver's, its health reports carry every GPU's
// metrics, a DIAGNOSE command passes, and its /metrics serves each GPU
// under dcgm-exporter's names.
func TestRealAgentOnRealGPUs(t *testing.T) {
	uuids := driverUUIDs(t)
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) {
		c.AgentIdentities = true
		c.HeartbeatInterval = controlplane.Duration{Duration: time.Second}
		c.HealthReportInterval = controlplane.Duration{Duration: 2 * time.Second}
	}})
	f := &fleet{t: t, ops: cp.Ops}
	bin := os.Getenv("NAVARCH_AGENT_BIN")
	if bin == "" {
		bin = testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent")
	}
	metrics := testutil.FreeAddr(t)
	cmd := exec.Command(bin, "--server", cp.Addr, "--ca-hash", caPin(t, cp), "--state-dir", filepath.Join(t.TempDir(), "state"),
		"--node-id", "gpu-real", "--no-remedies", "--poll-interval", "1s", "--metrics-listen", metrics)
	cmd.Env = append(os.Environ(), "NAVARCH_JOIN_TOKEN="+joinToken(t, cp, "gpu-real"))
	logs := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		t.Logf("agent log:\n%s", logs.String())
	})

	f.waitFor("the node registers with the driver's GPUs and reports their metrics", func() bool {
		n := f.node("gpu-real").GetNode()
		if len(n.GetGpus()) != len(uuids) {
			return false
		}
		for i, g := range n.GetGpus() {
			if g.GetUuid() != uuids[i] || g.GetMetrics().GetTemperatureCelsius() == 0 {
				return false
			}
		}
		return n.GetReachability() == fleetv1.Reachability_REACHABILITY_ONLINE && len(n.GetSamples()) == len(uuids)
	})
	first := f.node("gpu-real").GetNode().GetGpus()[0].GetMetrics().GetTime().AsTime()
	// The next report is a delta on the first: the control plane's
	// reading moves on, whole.
	f.waitFor("a later report, a delta, taken whole", func() bool {
		for _, g := range f.node("gpu-real").GetNode().GetGpus() {
			m := g.GetMetrics()
			if !m.GetTime().AsTime().After(first) || m.GetTemperatureCelsius() == 0 || m.GetSmClockMhz() == 0 || m.GetPcieLinkGeneration() == 0 {
				return false
			}
		}
		return true
	})
	n := f.node("gpu-real").GetNode()
	t.Logf("registered: driver %s, CUDA %s, health %s %s", n.GetDriverVersion(), n.GetCudaVersion(), n.GetHealth(), n.GetHealthCause())
	for _, g := range n.GetGpus() {
		m := g.GetMetrics()
		t.Logf("GPU %d %s: %s; %d°C, %d W, %d links, unsupported %v", g.GetIndex(), g.GetName(), g.GetHealth(),
			m.GetTemperatureCelsius(), m.GetPowerUsageMilliwatts()/1000, len(m.GetNvlinks()), m.GetUnsupported())
		if g.GetName() == "" || g.GetPciBusId() == "" || g.GetMemoryTotalBytes() == 0 {
			t.Errorf("GPU %d: inventory %+v", g.GetIndex(), g)
		}
	}
	if n.GetSimulated() || n.GetDriverVersion() == "" {
		t.Errorf("simulated %t, driver %q", n.GetSimulated(), n.GetDriverVersion())
	}
	if n.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Errorf("a working machine's node reads %s: %s", n.GetHealth(), n.GetHealthCause())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cp.Ops.RunDiagnostics(ctx, &controlplanev1.RunDiagnosticsRequest{NodeId: "gpu-real"})
	if err != nil {
		t.Fatal(err)
	}
	var done *fleetv1.Command
	f.waitFor("the diagnostics report", func() bool {
		for _, c := range f.node("gpu-real").GetCommands() {
			if c.GetId() == resp.GetCommand().GetId() && c.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_PENDING &&
				c.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED {
				done = c
				return true
			}
		}
		return false
	})
	t.Logf("diagnostics %s:\n%s", done.GetStatus(), done.GetMessage())
	if done.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		t.Errorf("diagnostics %s", done.GetStatus())
	}

	raw, err := httpGet("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body := string(raw)
	for i, uuid := range uuids {
		want := fmt.Sprintf(`gpu="%d"`, i)
		found := false
		for _, line := range strings.Split(body, "\n") {
			if strings.HasPrefix(line, "DCGM_FI_DEV_GPU_TEMP{") && strings.Contains(line, want) && strings.Contains(line, uuid) {
				t.Logf("%s", line)
				found = true
			}
		}
		if !found {
			t.Errorf("no DCGM_FI_DEV_GPU_TEMP series for GPU %d (%s)", i, uuid)
		}
	}
	if _, err := httpGet("http://" + metrics + "/healthz"); err != nil {
		t.Error(err)
	}

	(&agentProcess{cmd: cmd, logs: logs}).stop(t)
}
