package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/demo"
	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// server runs a real control plane with two registered nodes, and has
// the commands trust its CA through $NAVARCH_CA_CERT and call as its
// admin through $NAVARCH_TOKEN. No default control plane's files and no
// client configuration on this machine are found instead.
func server(t *testing.T) string {
	t.Helper()
	return fleetServer(t).Addr
}

// fleetServer is server's control plane, for tests that also act as the
// nodes' agents.
func fleetServer(t *testing.T) *cptest.ControlPlane {
	t.Helper()
	cp := cptest.Start(t, cptest.Options{})
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("NAVARCH_CA_CERT", cp.Server.CAFile())
	t.Setenv("NAVARCH_TOKEN", cp.Target().Token)
	ctx := context.Background()
	for _, id := range []string{"gpu-1", "gpu-2"} {
		gpus := []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-" + id + "-0"}, {Index: 1, Uuid: "GPU-" + id + "-1"}}
		if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: gpus, Labels: map[string]string{"zone": "a"}, BootId: "boot-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cp.Nodes.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "gpu-2", Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79, GpuIndex: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	return cp
}

func navarch(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := Main(ctx, args, Env{Stdout: &out, Stderr: &errOut, Demo: parseDemo})
	return code, out.String(), errOut.String()
}

// parseDemo parses the demo's flags as cmd/navarch does, and runs nothing.
func parseDemo(_ context.Context, args []string) error {
	var o demo.Options
	if err := demo.ParseArgs(args, &o); err != nil {
		return Usage(err)
	}
	return nil
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
	// GPUs without metrics show "-", never a zero that reads as measured.
	code, out, _ = navarch(t, "--server", addr, "get", "node", "gpu-1")
	if code != ExitOK || !regexp.MustCompile(`(?m)^\s+0\s+\S+\s+-\s+-\s+-\s+-/`).MatchString(out) || strings.Contains(out, " 0%") {
		t.Fatalf("get node without metrics: %d\n%s", code, out)
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
		{"not-found", []string{"cordon", "nope"}, ExitNotFound, "navarch: nope: no such node\n"},
		{"refused-by-state", []string{"drain", "gpu-1"}, ExitRefused, "navarch: gpu-1 is TERMINATING; it cannot be drained\n"},
		{"diagnose-not-found", []string{"diagnose", "nope"}, ExitNotFound, "navarch: nope: no such node\n"},
		{"bad-value", []string{"cordon", "bad/id"}, ExitRefused, "node_id"},
		{"unknown-provider", []string{"provision", "--count", "1", "--provider", "cloud9"}, ExitRefused, `unknown provider "cloud9"`},
		{"missing-id", []string{"cordon"}, ExitUsage, "exactly one node id"},
		{"unknown-command", []string{"restart", "gpu-1"}, ExitUsage, `unknown command "restart"`},
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

// TestResetIdentity: an operator resets a node's identity, a node without
// one included; a viewer cannot, and a plaintext control plane, whose
// agents have no identities, refuses.
func TestResetIdentity(t *testing.T) {
	addr := server(t)
	viewer := newToken(t, addr, "dash", "viewer")
	operator := newToken(t, addr, "ci", "operator")
	rows := []struct {
		name  string
		token string // "" leaves $NAVARCH_TOKEN, the admin's
		args  []string
		code  int
		out   string
		err   string
	}{
		// These nodes registered without joining, so they have no
		// identity to forget, and the command says so.
		{"admin-resets", "", []string{"reset-identity", "gpu-1"}, ExitOK,
			"gpu-1 had no agent identity; nothing changed, and a machine with a join token may join as it\n", ""},
		{"operator-resets", operator, []string{"reset-identity", "gpu-2"}, ExitOK,
			"gpu-2 had no agent identity; nothing changed, and a machine with a join token may join as it\n", ""},
		{"unknown-node", "", []string{"reset-identity", "gpu-9"}, ExitNotFound, "", "no node \"gpu-9\""},
		{"viewer-cannot", viewer, []string{"reset-identity", "gpu-1"}, ExitDenied, "",
			"navarch: permission denied: this token's role is viewer; reset-identity needs operator\n"},
		{"bad-id", "", []string{"reset-identity", "bad/id"}, ExitRefused, "", "node_id"},
		{"no-id", "", []string{"reset-identity"}, ExitUsage, "", "exactly one node id"},
		{"reason", "", []string{"reset-identity", "gpu-1", "--reason", "x"}, ExitUsage, "", "not defined: -reason"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			args := []string{"--server", addr}
			if row.token != "" {
				args = append(args, "--token", row.token)
			}
			code, out, errOut := navarch(t, append(args, row.args...)...)
			if code != row.code || out != row.out || !strings.Contains(errOut, row.err) {
				t.Fatalf("exit %d (want %d), stdout %q (want %q), stderr %q (want %q)", code, row.code, out, row.out, errOut, row.err)
			}
		})
	}

	plain := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) { c.Insecure = true }})
	code, _, errOut := navarch(t, "--server", plain.Addr, "--insecure", "--token", plain.Target().Token, "reset-identity", "gpu-1")
	if code != ExitRefused || !strings.Contains(errOut, "plaintext") {
		t.Fatalf("plaintext control plane: exit %d, stderr %q", code, errOut)
	}
}

// TestDurationsDefaultToTheControlPlanes: --deadline and --drain-timeout
// left out are left to the control plane, which applies the defaults it
// reports in GetFleetStatus, and their help names no value of its own.
func TestDurationsDefaultToTheControlPlanes(t *testing.T) {
	addr := server(t)
	_, out, _ := navarch(t, "--server", addr, "get", "status", "-o", "json")
	var st controlplanev1.GetFleetStatusResponse
	if err := protojson.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("get status: %v\n%s", err, out)
	}
	tests := []struct {
		name string
		args []string
		want time.Duration
	}{
		{"drain-deadline", []string{"drain", "gpu-1"}, st.GetLimits().GetDefaultDrainDeadline().AsDuration()},
		{"terminate-drain-timeout", []string{"terminate", "gpu-2"}, st.GetLimits().GetDefaultTerminateDrainTimeout().AsDuration()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want <= 0 {
				t.Fatalf("the control plane reports no default:\n%s", out)
			}
			if code, _, errOut := navarch(t, append([]string{"--server", addr}, tt.args...)...); code != ExitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			_, node, _ := navarch(t, "--server", addr, "get", "node", tt.args[1], "-o", "json")
			var resp controlplanev1.GetNodeResponse
			if err := protojson.Unmarshal([]byte(node), &resp); err != nil {
				t.Fatalf("get node: %v\n%s", err, node)
			}
			if left := time.Until(resp.GetNode().GetDrain().GetDeadline().AsTime()); left > tt.want || left < tt.want-time.Minute {
				t.Errorf("the drain ends in %s, want the control plane's %s", left, tt.want)
			}
			_, help, _ := navarch(t, tt.args[0], "-h")
			flat := strings.Join(strings.Fields(help), " ")
			if !strings.Contains(flat, "unset, the control plane's default") || strings.Contains(flat, "(default") {
				t.Errorf("help:\n%s", help)
			}
		})
	}
}

// TestDurationsTakeDays: the durations that run to days take a d unit, and
// a duration the command line cannot read is a usage error that says what
// it wanted; one it reads but the control plane refuses is refused.
func TestDurationsTakeDays(t *testing.T) {
	addr := server(t)
	tests := []struct {
		name    string
		args    []string
		code    int
		wantErr string
		drain   time.Duration
	}{
		{name: "drain-deadline-days", args: []string{"drain", "gpu-1", "--deadline", "2d"}, code: ExitOK, drain: 48 * time.Hour},
		{name: "drain-timeout-days-and-hours", args: []string{"terminate", "gpu-2", "--drain-timeout", "1d12h"}, code: ExitOK, drain: 36 * time.Hour},
		{name: "token-ttl-days", args: []string{"token", "create", "month", "--role", "viewer", "--ttl", "30d"}, code: ExitOK},
		{name: "deadline-past-the-limit", args: []string{"drain", "gpu-3", "--deadline", "9d"}, code: ExitRefused, wantErr: "deadline"},
		{name: "unknown-unit", args: []string{"drain", "gpu-3", "--deadline", "2w"}, code: ExitUsage,
			wantErr: `"2w" is not a duration such as 90s, 30m, 2h or 9d: "w" is not a unit (ms, s, m, h or d)`},
		{name: "no-unit", args: []string{"token", "create", "x", "--role", "viewer", "--ttl", "30"}, code: ExitUsage, wantErr: "30 has no unit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := navarch(t, append([]string{"--server", addr}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tt.code, errOut, tt.wantErr)
			}
			if tt.drain == 0 {
				return
			}
			_, node, _ := navarch(t, "--server", addr, "get", "node", tt.args[1], "-o", "json")
			var resp controlplanev1.GetNodeResponse
			if err := protojson.Unmarshal([]byte(node), &resp); err != nil {
				t.Fatalf("get node: %v\n%s", err, node)
			}
			if left := time.Until(resp.GetNode().GetDrain().GetDeadline().AsTime()); left > tt.drain || left < tt.drain-time.Minute {
				t.Errorf("the drain ends in %s, want %s", left, tt.drain)
			}
		})
	}
}

func TestUnreachableServer(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	code, _, errOut := navarch(t, "--server", addr, "--insecure", "get", "nodes")
	if code != ExitFailure || !strings.Contains(errOut, "unavailable") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("NAVARCH_CA_CERT", "")
	if code, _, errOut := navarch(t, "--server", addr, "get", "nodes"); code != ExitUsage || !strings.Contains(errOut, "--ca-cert") {
		t.Fatalf("without a CA: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := navarch(t, "--server", "nowhere", "get", "nodes"); code != ExitUsage || !strings.Contains(errOut, "HOST:PORT") {
		t.Fatalf("bad address: %d %q", code, errOut)
	}
}

func TestHelpAndVersion(t *testing.T) {
	if code, out, _ := navarch(t, "help"); code != ExitOK || !strings.Contains(out, "navarch get nodes") {
		t.Fatalf("help: %d %q", code, out)
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if code, out, _ := navarch(t, args...); code != ExitOK || !strings.HasPrefix(out, "navarch ") {
			t.Fatalf("%v: %d %q", args, code, out)
		}
	}
	if code, _, errOut := navarch(t, "--version", "get"); code != ExitUsage || !strings.Contains(errOut, "--version takes no command") {
		t.Fatalf("--version get: %d %q", code, errOut)
	}
	if code, _, errOut := navarch(t, "--read-only", "cordon", "x"); code != ExitUsage || !strings.Contains(errOut, "--read-only") {
		t.Fatalf("read-only action: %d %q", code, errOut)
	}
}

// subcommands is every subcommand the CLI dispatches, listed here apart
// from the usage so that the usage is checked against it.
var subcommands = []string{
	"get nodes", "get node", "get events", "get status", "get audit", "get pools", "get pool",
	"cordon", "uncordon", "drain", "terminate", "diagnose", "reset-gpu", "reboot", "reset-identity", "power-cycle", "release",
	"provision", "pool scale", "pool put", "pool delete", "token create", "token list", "token revoke",
	"config view", "config get-contexts", "config use-context", "config set-context", "config delete-context",
	"demo", "version",
}

func TestTopLevelUsage(t *testing.T) {
	code, usage, errOut := navarch(t, "help")
	if code != ExitOK || errOut != "" {
		t.Fatalf("help: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"help", "--help"}, {"--server", "127.0.0.1:1", "-h"}} {
		if code, out, errOut := navarch(t, args...); code != ExitOK || out != usage || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout differs from 'help': %t", args, code, errOut, out != usage)
		}
	}
	for _, name := range append(slices.Clone(subcommands), "help") {
		if !strings.Contains(usage, "\n  navarch "+name+" ") && !strings.Contains(usage, "\n  navarch "+name+"\n") {
			t.Errorf("usage does not list %q:\n%s", name, usage)
		}
	}
	// Each command's line in the usage is the synopsis its own help shows.
	flat := strings.Join(strings.Fields(usage), " ")
	for _, name := range subcommands {
		_, out, _ := navarch(t, append(strings.Fields(name), "-h")...)
		syn := synopsis(t, out)
		if !strings.Contains(flat, " "+syn+" ") {
			t.Errorf("usage lacks %q", syn)
		}
	}
}

func TestSubcommandHelp(t *testing.T) {
	for _, name := range subcommands {
		for _, h := range []string{"-h", "--help", "-help"} {
			args := append(strings.Fields(name), h)
			code, out, errOut := navarch(t, args...)
			if code != ExitOK || errOut != "" || !strings.HasPrefix(out, "Usage: navarch "+name) {
				t.Errorf("%v: exit %d, stderr %q, stdout %q", args, code, errOut, out)
			}
		}
		_, want, _ := navarch(t, append(strings.Fields(name), "-h")...)
		if code, out, _ := navarch(t, append([]string{"help"}, strings.Fields(name)...)...); code != ExitOK || out != want {
			t.Errorf("help %s: exit %d\n%s", name, code, out)
		}
	}
	// Help wins wherever it comes, even after the node id or a bad value.
	for _, args := range [][]string{{"drain", "gpu-1", "--force", "-h"}, {"get", "node", "gpu-1", "--help"}, {"get", "nodes", "-o", "yaml", "-h"}} {
		if code, out, errOut := navarch(t, args...); code != ExitOK || errOut != "" || !strings.HasPrefix(out, "Usage: navarch "+args[0]) {
			t.Errorf("%v: exit %d, stderr %q, stdout %q", args, code, errOut, out)
		}
	}
	groups := []struct {
		args  []string
		wants []string
	}{
		{[]string{"get", "-h"}, []string{"navarch get nodes", "navarch get status", "'navarch get KIND -h'"}},
		{[]string{"token", "--help"}, []string{"navarch token create", "navarch token revoke", "'navarch token ACTION -h'"}},
		{[]string{"help", "token"}, []string{"navarch token list"}},
		{[]string{"config", "-h"}, []string{"navarch config view", "navarch config set-context", "'navarch config ACTION -h'"}},
		{[]string{"pool", "-h"}, []string{"navarch pool scale", "navarch pool put", "navarch pool delete", "'navarch pool ACTION -h'"}},
		{[]string{"get", "--help"}, []string{"navarch get pools", "navarch get pool POOL"}},
	}
	for _, g := range groups {
		code, out, errOut := navarch(t, g.args...)
		if code != ExitOK || errOut != "" {
			t.Errorf("%v: exit %d, stderr %q", g.args, code, errOut)
		}
		for _, w := range g.wants {
			if !strings.Contains(out, w) {
				t.Errorf("%v lacks %q:\n%s", g.args, w, out)
			}
		}
	}
	// Bad usage still fails, on stderr, with a hint at the right help.
	rows := []struct {
		args []string
		want string
	}{
		{[]string{"drain", "gpu-1", "--bogus"}, "Run 'navarch drain -h' for usage."},
		{[]string{"get", "nodes", "--bogus"}, "Run 'navarch get nodes -h' for usage."},
		{[]string{"get", "things"}, "Run 'navarch get -h' for usage."},
		{[]string{"token"}, "Run 'navarch token -h' for usage."},
		{[]string{"token", "rotate"}, "Run 'navarch token -h' for usage."},
		{[]string{"token", "create", "ci", "--bogus"}, "Run 'navarch token create -h' for usage."},
		{[]string{"config"}, "Run 'navarch config -h' for usage."},
		{[]string{"pool"}, "Run 'navarch pool -h' for usage."},
		{[]string{"pool", "grow", "train"}, "Run 'navarch pool -h' for usage."},
		{[]string{"pool", "scale", "train", "--bogus"}, "Run 'navarch pool scale -h' for usage."},
		{[]string{"config", "set"}, "Run 'navarch config -h' for usage."},
		{[]string{"config", "view", "--server", "127.0.0.1:1"}, "Run 'navarch config view -h' for usage."},
		{[]string{"--server", "127.0.0.1:1", "config", "view"}, "--server does not apply to 'config'"},
		{[]string{"demo", "--bogus"}, "Run 'navarch demo -h' for usage."},
		{[]string{"version", "extra"}, "Run 'navarch version -h' for usage."},
		{[]string{"diagnose", "gpu-1", "--reason", "x"}, "not defined: -reason"},
		{[]string{"bogus", "-h"}, `unknown command "bogus"`},
		{[]string{"help", "bogus"}, `unknown command "bogus"`},
		{[]string{"--bogus"}, "Run 'navarch help' for usage."},
	}
	for _, row := range rows {
		code, out, errOut := navarch(t, row.args...)
		if code != ExitUsage || out != "" || !strings.Contains(errOut, row.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q (want %q)", row.args, code, out, errOut, row.want)
		}
	}
}

// synopsis is the usage line of a command's help, whitespace collapsed.
func synopsis(t *testing.T, help string) string {
	t.Helper()
	head, _, _ := strings.Cut(help, "\n\n")
	s, ok := strings.CutPrefix(strings.Join(strings.Fields(head), " "), "Usage: ")
	if !ok {
		t.Fatalf("no usage line in\n%s", help)
	}
	return s
}

var flagName = regexp.MustCompile(`(?:^|[\[ ])(--?[a-z][a-z-]*)`)

// helpFlags is the flags a command's help lists, one slice per line
// (aliases share a line).
func helpFlags(t *testing.T, help string) [][]string {
	t.Helper()
	_, list, ok := strings.Cut(help, "\nFlags:\n")
	if !ok {
		return nil
	}
	var out [][]string
	for _, line := range strings.Split(list, "\n") {
		if !strings.HasPrefix(line, "  -") {
			continue
		}
		left, _, _ := strings.Cut(strings.TrimSpace(line), "  ")
		var names []string
		for _, f := range strings.Fields(left) {
			if f = strings.TrimSuffix(f, ","); strings.HasPrefix(f, "-") {
				names = append(names, f)
			}
		}
		out = append(out, names)
	}
	return out
}

// TestUsageMatchesFlags checks each command's synopsis against the flags
// its flag set defines, which its help lists.
func TestUsageMatchesFlags(t *testing.T) {
	for _, name := range subcommands {
		_, help, _ := navarch(t, append(strings.Fields(name), "-h")...)
		syn := synopsis(t, help)
		inSynopsis := map[string]bool{}
		for _, m := range flagName.FindAllStringSubmatch(syn, -1) {
			inSynopsis[m[1]] = true
		}
		listed := map[string]bool{}
		for _, names := range helpFlags(t, help) {
			found := false
			for _, n := range names {
				listed[n] = true
				found = found || inSynopsis[n]
			}
			if !found && !connFlag(strings.TrimLeft(names[0], "-")) {
				t.Errorf("%s: %v is defined but not in the synopsis %q", name, names, syn)
			}
		}
		for f := range inSynopsis {
			if !listed[f] {
				t.Errorf("%s: the synopsis %q names %s, which is not defined", name, syn, f)
			}
		}
		// Every command that reaches the control plane takes the
		// connection flags; config set-context's --server is its own.
		if name != "demo" && name != "version" && !strings.HasPrefix(name, "config ") && !listed["--server"] {
			t.Errorf("%s: --server is not listed", name)
		}
	}
}

// TestDemoUsage checks the demo's usage, written by hand, against the
// flags internal/demo parses.
func TestDemoUsage(t *testing.T) {
	_, help, _ := navarch(t, "demo", "-h")
	syn := synopsis(t, help)
	values := map[string]string{"N": "2", "DIR": t.TempDir(), "DURATION": "1s", "LEVEL": "debug", "FORMAT": "json"}
	for _, m := range regexp.MustCompile(`\[(--[a-z-]+)(?: ([A-Z]+))?\]`).FindAllStringSubmatch(syn, -1) {
		args := []string{m[1]}
		if m[2] != "" {
			args = append(args, values[m[2]])
		}
		if err := demo.ParseArgs(args, &demo.Options{}); err != nil {
			t.Errorf("demo %v: %v", args, err)
		}
	}
	var o demo.Options
	if err := demo.ParseArgs(nil, &o); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("(default %d)", o.Nodes), fmt.Sprintf("(default %d)", o.GPUs),
		"(default " + o.DataDir + ")", "(default " + display.Duration(o.FaultEvery) + ")",
		fmt.Sprintf("1–%d", demo.MaxNodes), fmt.Sprintf("above %d", demo.MaxProcessNodes),
		"(default " + o.Log.Level + ")", "(default " + o.Log.Format + ")",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("demo usage lacks %q:\n%s", want, help)
		}
	}
	if err := demo.ParseArgs([]string{"--fresh"}, &demo.Options{}); err == nil {
		t.Error("demo accepts --fresh; the check above cannot tell flags apart")
	}
}

func TestJSONKeepsZeroValues(t *testing.T) {
	addr := server(t)
	code, out, errOut := navarch(t, "--server", addr, "get", "status", "-o", "json")
	if code != ExitOK {
		t.Fatalf("get status: %d %q", code, errOut)
	}
	var status struct {
		Summary map[string]any `json:"summary"`
		Breaker map[string]any `json:"breaker"`
	}
	if err := json.Unmarshal([]byte(out), &status); err != nil {
		t.Fatal(err)
	}
	if v, ok := status.Summary["draining"]; !ok || v != 0.0 {
		t.Errorf(`summary "draining" is %v (present %t), want 0:\n%s`, v, ok, out)
	}
	if v, ok := status.Breaker["tripped"]; !ok || v != false {
		t.Errorf(`breaker "tripped" is %v (present %t), want false:\n%s`, v, ok, out)
	}
	code, out, _ = navarch(t, "--server", addr, "get", "nodes", "-o", "json", "--lifecycle", "draining")
	var list map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || code != ExitOK {
		t.Fatalf("get nodes: %v (%d)\n%s", err, code, out)
	}
	if nodes, ok := list["nodes"].([]any); !ok || len(nodes) != 0 {
		t.Errorf(`"nodes" is %v, want []:\n%s`, list["nodes"], out)
	}
	if v, ok := list["totalSize"]; !ok || v != 0.0 {
		t.Errorf(`"totalSize" is %v (present %t), want 0:\n%s`, v, ok, out)
	}
}

// TestGetNodeShowsSlurm: `get node` says what Slurm shows of a node whose
// agent works with it.
func TestGetNodeShowsSlurm(t *testing.T) {
	cp := fleetServer(t)
	if _, err := cp.Nodes.ReportHealth(context.Background(), &nodev1.ReportHealthRequest{NodeId: "gpu-1", Scheduler: &fleetv1.SchedulerState{
		Scheduler: "slurm", NodeName: "gpu1", State: "MIXED+DRAIN", Drain: true, ByNavarch: true, Jobs: 2, Reason: "navarch: xid 79",
	}}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := navarch(t, "--server", cp.Addr, "get", "node", "gpu-1")
	if code != ExitOK || !regexp.MustCompile(`(?m)^Scheduler:\s+slurm gpu1: MIXED\+DRAIN · draining by Navarch, 2 jobs left · reason: navarch: xid 79$`).MatchString(out) {
		t.Fatalf("get node: %d\n%s%s", code, out, errOut)
	}
}
