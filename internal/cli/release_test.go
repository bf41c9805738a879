package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// heldBackServer is fleetServer's control plane with gpu-1 held back: the
// breaker, which lets one of two nodes be cordoned, already cordoned
// gpu-2.
func heldBackServer(t *testing.T) string {
	t.Helper()
	cp := fleetServer(t)
	if _, err := cp.Nodes.ReportHealth(context.Background(), &nodev1.ReportHealthRequest{NodeId: "gpu-1", Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 0},
	}}); err != nil {
		t.Fatal(err)
	}
	return cp.Addr
}

// TestGetNodesMarksHeldBack: the table says which node is held back,
// --held-back lists only those, and the status counts them.
func TestGetNodesMarksHeldBack(t *testing.T) {
	addr := heldBackServer(t)
	code, out, errOut := navarch(t, "--server", addr, "get", "nodes")
	if code != ExitOK || !regexp.MustCompile(`(?m)^gpu-1\s+ACTIVE \(held back\)\s+UNHEALTHY`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^gpu-2\s+CORDONED\s+UNHEALTHY`).MatchString(out) {
		t.Fatalf("get nodes: %d %q\n%s", code, errOut, out)
	}
	code, out, _ = navarch(t, "--server", addr, "get", "nodes", "--held-back", "-o", "json")
	var list struct {
		Nodes []struct {
			NodeID           string `json:"nodeId"`
			CordonHeldBackAt string `json:"cordonHeldBackAt"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != ExitOK {
		t.Fatalf("json: %v (%d)\n%s", err, code, out)
	}
	if len(list.Nodes) != 1 || list.Nodes[0].NodeID != "gpu-1" || list.Nodes[0].CordonHeldBackAt == "" {
		t.Fatalf("held-back nodes: %+v", list.Nodes)
	}
	if code, out, _ := navarch(t, "--server", addr, "get", "node", "gpu-1"); code != ExitOK ||
		!regexp.MustCompile(`(?m)^Held back:\s+\d+s ago: the breaker kept it from an automatic cordon; navarch cordon gpu-1 or navarch release gpu-1$`).MatchString(out) {
		t.Fatalf("get node gpu-1 does not say it is held back: %d\n%s", code, out)
	}
	if code, out, _ := navarch(t, "--server", addr, "get", "node", "gpu-2"); code != ExitOK || strings.Contains(out, "Held back") {
		t.Fatalf("get node gpu-2 says it is held back: %d\n%s", code, out)
	}
	if code, out, _ := navarch(t, "--server", addr, "get", "status"); code != ExitOK ||
		!strings.Contains(out, "1 node the breaker kept from a cordon") || !strings.Contains(out, "navarch get nodes --held-back") {
		t.Fatalf("get status: %d\n%s", code, out)
	}
}

// TestRelease: release keeps a held-back node in service and clears its
// mark; every node named is tried, and each failure is said, named, with
// the exit code of the first.
func TestRelease(t *testing.T) {
	addr := heldBackServer(t)
	code, out, errOut := navarch(t, "--server", addr, "release", "nope", "gpu-1", "gpu-2", "--reason", "job is fine")
	if code != ExitNotFound || out != "gpu-1 released: ACTIVE, no longer held back\n" {
		t.Fatalf("release: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, want := range []string{"navarch: nope: no such node\n", `gpu-2" is not held back`, "navarch: 2 of 3 nodes not released\n"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
	if code, out, _ := navarch(t, "--server", addr, "get", "nodes", "--held-back"); code != ExitOK || strings.Contains(out, "gpu-1") {
		t.Fatalf("gpu-1 still listed held back after its release: %d\n%s", code, out)
	}

	viewer := newToken(t, addr, "dash", "viewer")
	rows := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"not-held-back", []string{"release", "gpu-1"}, ExitRefused, `node_id: node "gpu-1" is not held back`},
		{"not-found", []string{"release", "nope"}, ExitNotFound, "navarch: nope: no such node\n"},
		{"missing-id", []string{"release"}, ExitUsage, "at least one node id"},
		// A failure that is not the node's own is the same for every node:
		// said once, and nothing more is tried.
		{"viewer", []string{"--token", viewer, "release", "gpu-1", "gpu-2"}, ExitDenied,
			"navarch: permission denied: this token's role is viewer; release needs operator\n"},
		{"unreachable", []string{"--server", "127.0.0.1:1", "release", "gpu-1", "gpu-2"}, ExitFailure, "nothing listens at 127.0.0.1:1"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			code, _, errOut := navarch(t, append([]string{"--server", addr}, row.args...)...)
			if code != row.code || !strings.Contains(errOut, row.want) || strings.Count(errOut, "navarch: ") != 1 {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, row.code, errOut, row.want)
			}
		})
	}
}
