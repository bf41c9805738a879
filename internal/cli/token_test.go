package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// newToken makes a token through the command line, as the admin, and
// returns it as printed.
func newToken(t *testing.T, addr, name, role string) string {
	t.Helper()
	code, out, errOut := navarch(t, "--server", addr, "token", "create", name, "--role", role)
	if code != ExitOK {
		t.Fatalf("token create %s: exit %d, stderr %q", name, code, errOut)
	}
	return strings.TrimSuffix(out, "\n")
}

// TestTokenCreatePrintsTheTokenOnce: the token is stdout's only line, for
// a script to capture, and stderr says it will not be shown again.
func TestTokenCreatePrintsTheTokenOnce(t *testing.T) {
	addr := server(t)
	code, out, errOut := navarch(t, "--server", addr, "token", "create", "ci", "--role", "operator", "--ttl", "2h")
	if code != ExitOK || !regexp.MustCompile(`^ci\.\S+\n$`).MatchString(out) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, want := range []string{"ci", "operator", "expires in 1h", "shown this once"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %q", want, errOut)
		}
	}
	// The token printed works, with the role asked for.
	token := strings.TrimSuffix(out, "\n")
	if code, _, errOut := navarch(t, "--server", addr, "--token", token, "cordon", "gpu-1"); code != ExitOK {
		t.Fatalf("cordon with the new operator token: exit %d, %q", code, errOut)
	}
	if code, _, errOut := navarch(t, "--server", addr, "token", "create", "forever", "--role", "viewer"); code != ExitOK || !strings.Contains(errOut, "no expiry") {
		t.Fatalf("token without a TTL: exit %d, %q", code, errOut)
	}
}

// TestTokenListShowsNoSecrets: the list names every token and its role,
// expiry and revocation, in a table and in JSON, and never a secret.
func TestTokenListShowsNoSecrets(t *testing.T) {
	addr := server(t)
	admin := os.Getenv("NAVARCH_TOKEN")
	ci := newToken(t, addr, "ci", "operator")
	dash := newToken(t, addr, "dash", "viewer")
	if code, out, errOut := navarch(t, "--server", addr, "token", "revoke", "dash"); code != ExitOK || out != "dash revoked (viewer)\n" {
		t.Fatalf("revoke: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, table, errOut := navarch(t, "--server", addr, "token", "list")
	if code != ExitOK {
		t.Fatalf("token list: exit %d, %q", code, errOut)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(table), "\n") {
		f := strings.Fields(line)
		rows[f[0]] = f
	}
	if h := rows["NAME"]; strings.Join(h, " ") != "NAME ROLE USES CREATED EXPIRES REVOKED" {
		t.Fatalf("header %q:\n%s", h, table)
	}
	tests := []struct {
		name, role string
		revoked    bool
	}{{"admin", "admin", false}, {"ci", "operator", false}, {"dash", "viewer", true}}
	for _, tt := range tests {
		r := rows[tt.name]
		if len(r) < 2 || r[1] != tt.role || (r[len(r)-1] != "-") != tt.revoked {
			t.Errorf("%s: row %q, want role %s, revoked %t:\n%s", tt.name, r, tt.role, tt.revoked, table)
		}
	}
	code, js, _ := navarch(t, "--server", addr, "token", "list", "-o", "json")
	var list controlplanev1.ListTokensResponse
	if err := protojson.Unmarshal([]byte(js), &list); err != nil || code != ExitOK {
		t.Fatalf("token list -o json: %v (%d)\n%s", err, code, js)
	}
	var names []string
	for _, tok := range list.GetTokens() {
		names = append(names, tok.GetName())
	}
	if strings.Join(names, ",") != "admin,ci,dash" || list.GetTokens()[2].GetRevokedAt() == nil {
		t.Errorf("tokens %v:\n%s", names, js)
	}
	for _, tok := range []string{admin, ci, dash} {
		_, secret, _ := strings.Cut(tok, ".")
		if secret == "" || strings.Contains(table+js, secret) {
			t.Errorf("the list shows the secret of %q (or the token has none)", tok)
		}
	}
}

// TestAgentTokens: an agent token is made with a use limit or none, says
// how agents join with it, lists how many joined out of how many may, and
// reads nothing.
func TestAgentTokens(t *testing.T) {
	addr := server(t)
	code, out, errOut := navarch(t, "--server", addr, "token", "create", "rack-7", "--role", "agent", "--uses", "2", "--ttl", "2h")
	if code != ExitOK || !regexp.MustCompile(`^rack-7\.\S+\n$`).MatchString(out) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, want := range []string{"rack-7 (agent, up to 2 agents, expires in 1h", "--join-token"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %q", want, errOut)
		}
	}
	agent := strings.TrimSuffix(out, "\n")
	if code, _, errOut := navarch(t, "--server", addr, "token", "create", "pool", "--role", "agent"); code != ExitOK || !strings.Contains(errOut, "(agent, any number of agents, no expiry)") {
		t.Fatalf("agent token without a limit: exit %d, %q", code, errOut)
	}
	newToken(t, addr, "dash", "viewer")

	code, table, errOut := navarch(t, "--server", addr, "token", "list")
	if code != ExitOK {
		t.Fatalf("token list: exit %d, %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	from, to := strings.Index(lines[0], "USES"), strings.Index(lines[0], "CREATED")
	if from < 0 || to < from {
		t.Fatalf("no USES column before CREATED:\n%s", table)
	}
	cells := map[string]string{}
	for _, line := range lines[1:] {
		cells[strings.Fields(line)[0]] = strings.TrimSpace(line[from:to])
	}
	for name, want := range map[string]string{"admin": "", "dash": "", "rack-7": "0/2", "pool": "0/-"} {
		if got, ok := cells[name]; !ok || got != want {
			t.Errorf("%s: uses %q (listed %t), want %q:\n%s", name, got, ok, want, table)
		}
	}

	code, js, _ := navarch(t, "--server", addr, "token", "list", "-o", "json")
	var list controlplanev1.ListTokensResponse
	if err := protojson.Unmarshal([]byte(js), &list); err != nil || code != ExitOK {
		t.Fatalf("token list -o json: %v (%d)\n%s", err, code, js)
	}
	found := false
	for _, tok := range list.GetTokens() {
		if tok.GetName() == "rack-7" {
			found = tok.GetRole() == controlplanev1.Role_ROLE_AGENT && tok.GetMaxUses() == 2 && tok.GetUsed() == 0
		}
	}
	if !found || !strings.Contains(js, `"maxUses": 2`) {
		t.Errorf("rack-7 is not an agent token for 2 agents:\n%s", js)
	}

	if code, _, errOut := navarch(t, "--server", addr, "--token", agent, "get", "nodes"); code != ExitDenied || !strings.Contains(errOut, "this token's role is agent; get nodes needs viewer") {
		t.Errorf("an agent token read the fleet: exit %d, %q", code, errOut)
	}
}

// TestRolesAndRefusals: each role does what it allows, and a refusal
// says what to give instead and exits 5.
func TestRolesAndRefusals(t *testing.T) {
	addr := server(t)
	viewer := newToken(t, addr, "dash", "viewer")
	operator := newToken(t, addr, "ci", "operator")
	rows := []struct {
		name  string
		token string // "" leaves $NAVARCH_TOKEN, the admin's
		args  []string
		code  int
		want  string
	}{
		{"viewer-reads", viewer, []string{"get", "nodes"}, ExitOK, ""},
		{"viewer-cannot-cordon", viewer, []string{"cordon", "gpu-1"}, ExitDenied,
			"navarch: permission denied: this token's role is viewer; cordon needs operator\n"},
		{"viewer-cannot-provision", viewer, []string{"provision", "--count", "1"}, ExitDenied,
			"navarch: permission denied: this token's role is viewer; provision needs operator\n"},
		{"operator-cordons", operator, []string{"cordon", "gpu-1"}, ExitOK, ""},
		{"operator-cannot-list-tokens", operator, []string{"token", "list"}, ExitDenied,
			"navarch: permission denied: this token's role is operator; token list needs admin\n"},
		{"operator-cannot-make-tokens", operator, []string{"token", "create", "x", "--role", "viewer"}, ExitDenied,
			"navarch: permission denied: this token's role is operator; token create needs admin\n"},
		{"unknown-token", "ci.not-the-secret", []string{"get", "status"}, ExitDenied, "navarch: not authenticated: "},
		{"revoke-unknown", "", []string{"token", "revoke", "nobody"}, ExitNotFound, "nobody"},
		{"short-ttl", "", []string{"token", "create", "brief", "--role", "viewer", "--ttl", "1s"}, ExitRefused, "ttl"},
		{"bad-name", "", []string{"token", "create", "Not/A.Name", "--role", "viewer"}, ExitRefused, "name"},
		{"name-in-use", "", []string{"token", "create", "ci", "--role", "viewer"}, ExitRefused, "ci"},
		{"no-name", "", []string{"token", "create", "--role", "viewer"}, ExitUsage, "exactly one token name"},
		{"no-role", "", []string{"token", "create", "x"}, ExitUsage, "--role"},
		{"bad-role", "", []string{"token", "create", "x", "--role", "root"}, ExitUsage, `"root" is not viewer, operator, admin or agent`},
		{"uses-not-agent", "", []string{"token", "create", "x", "--role", "viewer", "--uses", "2"}, ExitUsage, "--uses is only for an agent token"},
		{"uses-zero", "", []string{"token", "create", "x", "--role", "agent", "--uses", "0"}, ExitUsage, "--uses: 0 is not a count"},
		{"uses-negative", "", []string{"token", "create", "x", "--role", "agent", "--uses", "-1"}, ExitUsage, "--uses: -1 is not a count"},
		{"negative-ttl", "", []string{"token", "create", "x", "--role", "viewer", "--ttl", "-1h"}, ExitUsage, "--ttl"},
		{"revoke-no-name", "", []string{"token", "revoke"}, ExitUsage, "exactly one token name"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			args := []string{"--server", addr}
			if row.token != "" {
				args = append(args, "--token", row.token)
			}
			code, _, errOut := navarch(t, append(args, row.args...)...)
			if code != row.code || !strings.Contains(errOut, row.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, row.code, errOut, row.want)
			}
		})
	}
	// A revoked token is refused from then on.
	if code, _, errOut := navarch(t, "--server", addr, "token", "revoke", "dash"); code != ExitOK {
		t.Fatalf("revoke: exit %d, %q", code, errOut)
	}
	if code, _, errOut := navarch(t, "--server", addr, "--token", viewer, "get", "nodes"); code != ExitDenied || !strings.HasPrefix(errOut, "navarch: not authenticated: ") {
		t.Fatalf("revoked token: exit %d, %q", code, errOut)
	}
}

// TestTokenSources: --token wins over $NAVARCH_TOKEN, which wins over the
// admin token of this machine's default control plane; with none of them
// the command says how to give one.
func TestTokenSources(t *testing.T) {
	addr := server(t)
	admin := os.Getenv("NAVARCH_TOKEN")
	viewer := newToken(t, addr, "dash", "viewer")

	t.Setenv("NAVARCH_TOKEN", viewer)
	if code, _, _ := navarch(t, "--server", addr, "cordon", "gpu-1"); code != ExitDenied {
		t.Fatalf("$NAVARCH_TOKEN, a viewer's, cordoned: exit %d", code)
	}
	if code, _, errOut := navarch(t, "--server", addr, "cordon", "gpu-1", "--token", admin); code != ExitOK {
		t.Fatalf("--token after the command: exit %d, %q", code, errOut)
	}

	t.Setenv("NAVARCH_TOKEN", "")
	code, _, errOut := navarch(t, "--server", addr, "get", "nodes")
	if code != ExitDenied || errOut != "navarch: not authenticated: give a token with --token, NAVARCH_TOKEN or a context (navarch config set-context)\n" {
		t.Fatalf("no token: exit %d, %q", code, errOut)
	}

	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	if err := os.MkdirAll(filepath.Join(state, "navarch"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "navarch", "admin.token"), []byte(admin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := navarch(t, "--server", addr, "token", "list"); code != ExitOK {
		t.Fatalf("the default control plane's admin token: exit %d, %q", code, errOut)
	}
}

// TestDenialMessages: a refusal is said from its status code and the
// roles its detail names, never from the server's text, which shows only
// where the detail says nothing.
func TestDenialMessages(t *testing.T) {
	withoutReason, err := status.New(codes.PermissionDenied, "not allowed").WithDetails(&errdetails.ErrorInfo{
		Domain: apierr.Domain, Metadata: map[string]string{"role": "viewer", "required_role": "operator"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  deniedError
		want string
		code int
	}{
		{"no-token", deniedError{cmd: "get nodes", err: status.Error(codes.Unauthenticated, "no token")},
			"not authenticated: give a token with --token, NAVARCH_TOKEN or a context (navarch config set-context)", ExitDenied},
		{"token-refused", deniedError{cmd: "get nodes", sent: true, err: status.Error(codes.Unauthenticated, "token expired")},
			"not authenticated: token expired", ExitDenied},
		{"role-too-low", deniedError{cmd: "cordon", sent: true, err: apierr.RoleTooLow("dash", "viewer", "CordonNode", "operator")},
			"permission denied: this token's role is viewer; cordon needs operator", ExitDenied},
		{"other-reason", deniedError{cmd: "cordon", sent: true, err: withoutReason.Err()},
			"permission denied: not allowed", ExitDenied},
		{"no-detail", deniedError{cmd: "cordon", sent: true, err: status.Error(codes.PermissionDenied, "not allowed")},
			"permission denied: not allowed", ExitDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); !strings.HasPrefix(got, tt.want) {
				t.Errorf("message %q, want it to start %q", got, tt.want)
			}
			if got := exitCode(tt.err); got != tt.code {
				t.Errorf("exit %d, want %d", got, tt.code)
			}
		})
	}
}
