package cli

import (
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// TestGetAudit: the audit log lists who changed what, newest first, in a
// table and in JSON, by node and up to a limit; the node's commands name
// who asked; a viewer may not read it.
func TestGetAudit(t *testing.T) {
	addr := server(t) // gpu-2 was cordoned by the policy for an XID 79
	oncall := newToken(t, addr, "oncall", "operator")
	viewer := newToken(t, addr, "dash", "viewer")
	if code, _, errOut := navarch(t, "--server", addr, "--token", oncall, "cordon", "gpu-1", "--reason", "ticket 42"); code != ExitOK {
		t.Fatalf("cordon: exit %d, %q", code, errOut)
	}
	// The node says who set its state.
	for id, want := range map[string]string{"gpu-1": "ticket 42 (by oncall)", "gpu-2": "(by policy)"} {
		if code, out, errOut := navarch(t, "--server", addr, "get", "node", id); code != ExitOK || !strings.Contains(out, want) {
			t.Fatalf("get node %s: exit %d, %q, want %q in\n%s", id, code, errOut, want, out)
		}
	}

	code, table, errOut := navarch(t, "--server", addr, "get", "audit")
	if code != ExitOK {
		t.Fatalf("get audit: exit %d, %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if h := strings.Join(strings.Fields(lines[0]), " "); h != "TIME WHO ROLE RPC NODE RESULT REASON DETAIL" {
		t.Fatalf("header %q:\n%s", h, table)
	}
	rows := []*regexp.Regexp{
		regexp.MustCompile(`^\S+Z\s+oncall\s+operator\s+CordonNode\s+gpu-1\s+OK\s+ticket 42\s+lifecycle CORDONED$`),
		regexp.MustCompile(`^\S+Z\s+admin\s+admin\s+CreateToken\s+-\s+OK\s+-\s+\{"name":"dash","role":"ROLE_VIEWER"\}$`),
		regexp.MustCompile(`^\S+Z\s+admin\s+admin\s+CreateToken\s+-\s+OK\s+-\s+\{"name":"oncall","role":"ROLE_OPERATOR"\}$`),
		regexp.MustCompile(`^\S+Z\s+policy\s+-\s+AutoCordon\s+gpu-2\s+OK\s+auto-cordon: gpu1: .+\s+lifecycle CORDONED; command cmd-\d+$`),
	}
	if len(lines) != 1+len(rows) {
		t.Fatalf("%d entries, want %d, newest first:\n%s", len(lines)-1, len(rows), table)
	}
	for i, re := range rows {
		if !re.MatchString(lines[1+i]) {
			t.Errorf("row %d %q does not match %s", i+1, lines[1+i], re)
		}
	}

	code, js, _ := navarch(t, "--server", addr, "get", "audit", "--node", "gpu-1", "-o", "json")
	var resp controlplanev1.ListAuditResponse
	if err := protojson.Unmarshal([]byte(js), &resp); err != nil || code != ExitOK {
		t.Fatalf("get audit -o json: %v (%d)\n%s", err, code, js)
	}
	if e := resp.GetEntries(); len(e) != 1 || e[0].GetWho() != "oncall" || e[0].GetRole() != controlplanev1.Role_ROLE_OPERATOR ||
		e[0].GetRpc() != "CordonNode" || e[0].GetReason() != "ticket 42" || e[0].GetCode() != "OK" {
		t.Fatalf("gpu-1's audit:\n%s", js)
	}
	if code, out, _ := navarch(t, "--server", addr, "get", "audit", "--limit", "1"); code != ExitOK || strings.Count(out, "\n") != 2 || !strings.Contains(out, "CordonNode") {
		t.Fatalf("get audit --limit 1: exit %d\n%s", code, out)
	}
	// The node's commands name who asked.
	if code, out, _ := navarch(t, "--server", addr, "get", "node", "gpu-1"); code != ExitOK || !regexp.MustCompile(`(?m)^\s+cmd-\d+\s+CORDON\s+\S+\s+oncall\s`).MatchString(out) {
		t.Fatalf("get node gpu-1: exit %d; the cordon should be by oncall\n%s", code, out)
	}
	code, out, errOut := navarch(t, "--server", addr, "--token", viewer, "get", "audit")
	if code != ExitDenied || out != "" || errOut != "navarch: permission denied: this token's role is viewer; get audit needs operator\n" {
		t.Fatalf("a viewer's get audit: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
