package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/cptest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// server runs a real control plane with two registered nodes.
func server(t *testing.T) string {
	t.Helper()
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	for _, id := range []string{"gpu-1", "gpu-2"} {
		gpus := []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-" + id + "-0"}, {Index: 1, Uuid: "GPU-" + id + "-1"}}
		if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: gpus, Labels: map[string]string{"zone": "a"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cp.Nodes.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "gpu-2", Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	return cp.Addr
}

func navarch(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := Main(ctx, args, Env{Stdout: &out, Stderr: &errOut})
	return code, out.String(), errOut.String()
}

func TestGetCommands(t *testing.T) {
	addr := server(t)
	code, out, _ := navarch(t, "--server", addr, "get", "nodes")
	if code != ExitOK || !strings.Contains(out, "NODE") || !strings.Contains(out, "gpu-1") || !strings.Contains(out, "2 (1 unhealthy)") {
		t.Fatalf("get nodes: %d\n%s", code, out)
	}
	code, out, _ = navarch(t, "get", "nodes", "-o", "json", "--server", addr, "--lifecycle", "cordoned")
	var list struct {
		Nodes []struct {
			NodeID    string `json:"nodeId"`
			Lifecycle string `json:"lifecycle"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != ExitOK {
		t.Fatalf("json: %v (%d)\n%s", err, code, out)
	}
	if len(list.Nodes) != 1 || list.Nodes[0].NodeID != "gpu-2" || list.Nodes[0].Lifecycle != "LIFECYCLE_STATE_CORDONED" {
		t.Fatalf("cordoned nodes: %+v", list.Nodes)
	}
	code, out, _ = navarch(t, "--server", addr, "get", "node", "gpu-2")
	if code != ExitOK || !strings.Contains(out, "GPU has fallen off the bus") || !strings.Contains(out, "drain, reboot node") || !strings.Contains(out, "CORDON") {
		t.Fatalf("get node: %d\n%s", code, out)
	}
	code, out, _ = navarch(t, "--server", addr, "get", "events", "--min-health", "unhealthy")
	if code != ExitOK || !strings.Contains(out, "XID 79") || !strings.Contains(out, "gpu-2") {
		t.Fatalf("get events: %d\n%s", code, out)
	}
	code, out, _ = navarch(t, "--server", addr, "get", "status", "-o", "json")
	if code != ExitOK || !strings.Contains(out, `"cordoned": 1`) {
		t.Fatalf("get status: %d\n%s", code, out)
	}
	t.Setenv("NAVARCH_SERVER", addr)
	if code, out, _ := navarch(t, "get", "status"); code != ExitOK || !strings.Contains(out, "Auto-cordon:") {
		t.Fatalf("NAVARCH_SERVER: %d\n%s", code, out)
	}
}

func TestActionsAndExitCodes(t *testing.T) {
	addr := server(t)
	if code, out, errOut := navarch(t, "--server", addr, "cordon", "gpu-1", "--reason", "rack work"); code != ExitOK || !strings.Contains(out, "gpu-1 CORDONED (rack work)") {
		t.Fatalf("cordon: %d %q %q", code, out, errOut)
	}
	if code, out, _ := navarch(t, "--server", addr, "drain", "gpu-1", "--deadline", "30m", "--force"); code != ExitOK || !strings.Contains(out, "DRAINING") {
		t.Fatalf("drain: %d %q", code, out)
	}
	if code, out, _ := navarch(t, "--server", addr, "uncordon", "gpu-1"); code != ExitOK || !strings.Contains(out, "ACTIVE") {
		t.Fatalf("uncordon: %d %q", code, out)
	}
	if code, out, _ := navarch(t, "--server", addr, "terminate", "gpu-1", "--force"); code != ExitOK || !strings.Contains(out, "TERMINATING") {
		t.Fatalf("terminate: %d %q", code, out)
	}
	rows := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"not-found", []string{"cordon", "nope"}, ExitNotFound, `no node "nope"`},
		{"refused-by-state", []string{"drain", "gpu-1"}, ExitRefused, "TERMINATING"},
		{"bad-value", []string{"cordon", "bad/id"}, ExitRefused, "node_id"},
		{"unknown-provider", []string{"provision", "--count", "1", "--provider", "cloud9"}, ExitRefused, `unknown provider "cloud9"`},
		{"missing-id", []string{"cordon"}, ExitUsage, "exactly one node id"},
		{"unknown-command", []string{"reboot", "gpu-1"}, ExitUsage, `unknown command "reboot"`},
		{"unknown-flag", []string{"get", "nodes", "--colour"}, ExitUsage, "colour"},
		{"bad-output", []string{"get", "nodes", "-o", "yaml"}, ExitUsage, "table or json"},
		{"bad-health", []string{"get", "nodes", "--health", "sick"}, ExitUsage, "--health"},
		{"bad-fault", []string{"provision", "--count", "1", "--sim-fault", "xid=79"}, ExitUsage, "KIND@gpuN"},
		{"no-count", []string{"provision"}, ExitUsage, "--count"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			code, _, errOut := navarch(t, append([]string{"--server", addr}, row.args...)...)
			if code != row.code || !strings.Contains(errOut, row.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, row.code, errOut, row.want)
			}
		})
	}
}

func TestUnreachableServer(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	code, _, errOut := navarch(t, "--server", addr, "get", "nodes")
	if code != ExitFailure || !strings.Contains(errOut, "unavailable") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := navarch(t, "--server", "nowhere", "get", "nodes"); code != ExitUsage || !strings.Contains(errOut, "HOST:PORT") {
		t.Fatalf("bad address: %d %q", code, errOut)
	}
}

func TestHelpAndVersion(t *testing.T) {
	if code, out, _ := navarch(t, "help"); code != ExitOK || !strings.Contains(out, "navarch get nodes") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, out, _ := navarch(t, "version"); code != ExitOK || strings.TrimSpace(out) == "" {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errOut := navarch(t, "--read-only", "cordon", "x"); code != ExitUsage || !strings.Contains(errOut, "--read-only") {
		t.Fatalf("read-only action: %d %q", code, errOut)
	}
}
