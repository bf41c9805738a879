package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
)

// clientEnv gives a test a client configuration directory and a state
// directory of its own, and no connection settings in the environment.
// It returns the configuration file's path and the state directory.
func clientEnv(t *testing.T) (config, state string) {
	t.Helper()
	home, state := t.TempDir(), t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home)
	t.Setenv("XDG_STATE_HOME", state)
	for _, v := range []string{rpcclient.EnvServer, rpcclient.EnvCACert, rpcclient.EnvToken} {
		t.Setenv(v, "")
	}
	return filepath.Join(home, "navarch", "config.yaml"), filepath.Join(state, "navarch")
}

// writeFile writes a test file with mode perm, making its directory.
func writeFile(t *testing.T, path, text string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), perm); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is cut by the umask; tests need the mode as given.
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// settings are what target resolves, comparable (a Target, which holds
// a func, is not).
type settings struct {
	addr, caCert, token, context string
	insecure                     bool
}

func settingsOf(t rpcclient.Target) settings {
	return settings{t.Addr, t.CACert, t.Token, t.Context, t.Insecure}
}

// TestTargetResolution: each setting comes from its flag, else its
// environment variable, else the context (--context, else the current
// one), else this machine's defaults, the admin token only for a control
// plane on loopback.
func TestTargetResolution(t *testing.T) {
	config, state := clientEnv(t)
	dir := filepath.Dir(config)
	writeFile(t, config, `current-context: prod
contexts:
  - name: prod
    server: cp.prod:50051
    ca-cert: prod-ca.crt
    token: prod.secret
  - name: lab
    server: 127.0.0.1:7000
    token-file: tokens/lab
  - name: bare
  - name: plain
    server: 127.0.0.1:7001
    insecure: true
`, 0o600)
	writeFile(t, filepath.Join(dir, "tokens", "lab"), "lab.secret\n", 0o600)
	writeFile(t, filepath.Join(state, "pki", "ca.crt"), "local CA", 0o644)
	writeFile(t, filepath.Join(state, "admin.token"), "admin.local\n", 0o600)
	localCA := filepath.Join(state, "pki", "ca.crt")

	tests := []struct {
		name  string
		flags connFlags
		env   map[string]string
		want  rpcclient.Target
	}{
		{"flags-win", connFlags{server: "flag:1", caCert: "flag.crt", token: "flag.t"},
			map[string]string{rpcclient.EnvServer: "env:1", rpcclient.EnvCACert: "env.crt", rpcclient.EnvToken: "env.t"},
			rpcclient.Target{Addr: "flag:1", CACert: "flag.crt", Token: "flag.t"}},
		{"env-settles-all", connFlags{},
			map[string]string{rpcclient.EnvServer: "env:1", rpcclient.EnvCACert: "env.crt", rpcclient.EnvToken: "env.t"},
			rpcclient.Target{Addr: "env:1", CACert: "env.crt", Token: "env.t"}},
		{"env-over-context", connFlags{}, map[string]string{rpcclient.EnvServer: "env:1", rpcclient.EnvToken: "env.t"},
			rpcclient.Target{Addr: "env:1", CACert: filepath.Join(dir, "prod-ca.crt"), Token: "env.t", Context: "prod"}},
		{"context-fills-the-rest", connFlags{server: "flag:1"}, map[string]string{rpcclient.EnvToken: "env.t"},
			rpcclient.Target{Addr: "flag:1", CACert: filepath.Join(dir, "prod-ca.crt"), Token: "env.t", Context: "prod"}},
		{"current-context", connFlags{}, nil,
			rpcclient.Target{Addr: "cp.prod:50051", CACert: filepath.Join(dir, "prod-ca.crt"), Token: "prod.secret", Context: "prod"}},
		{"named-context-and-token-file", connFlags{context: "lab"}, nil,
			rpcclient.Target{Addr: "127.0.0.1:7000", CACert: localCA, Token: "lab.secret", Context: "lab"}},
		{"defaults-on-loopback", connFlags{context: "bare"}, nil,
			rpcclient.Target{Addr: rpcclient.DefaultServer, CACert: localCA, Token: "admin.local", Context: "bare"}},
		{"no-local-token-elsewhere", connFlags{context: "bare", server: "cp.example.com:50051"}, nil,
			rpcclient.Target{Addr: "cp.example.com:50051", CACert: localCA, Context: "bare"}},
		{"insecure-needs-no-ca", connFlags{context: "bare", insecure: true}, nil,
			rpcclient.Target{Addr: rpcclient.DefaultServer, Insecure: true, Token: "admin.local", Context: "bare"}},
		{"insecure-context", connFlags{context: "plain"}, nil,
			rpcclient.Target{Addr: "127.0.0.1:7001", Insecure: true, Token: "admin.local", Context: "plain"}},
		{"ca-from-env-over-insecure-context", connFlags{context: "plain"}, map[string]string{rpcclient.EnvCACert: "env.crt"},
			rpcclient.Target{Addr: "127.0.0.1:7001", CACert: "env.crt", Token: "admin.local", Context: "plain"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := tt.flags.target()
			if err != nil {
				t.Fatal(err)
			}
			if settingsOf(got) != settingsOf(tt.want) {
				t.Errorf("target\n got %+v\nwant %+v", settingsOf(got), settingsOf(tt.want))
			}
		})
	}
}

// TestConfigFileIsReadOnlyWhenNeeded: flags and variables that settle
// every setting leave the file unread, so a broken one is no matter; a
// missing file is an empty configuration.
func TestConfigFileIsReadOnlyWhenNeeded(t *testing.T) {
	config, _ := clientEnv(t)
	full := connFlags{server: "cp:1", caCert: "ca.crt", token: "t"}
	if _, err := full.target(); err != nil {
		t.Fatalf("without a file: %v", err)
	}
	writeFile(t, config, "contexts: [\n", 0o644)
	if _, err := full.target(); err != nil {
		t.Fatalf("settled by flags, the file was read: %v", err)
	}
	plain := connFlags{server: "cp:1", insecure: true, token: "t"}
	if _, err := plain.target(); err != nil {
		t.Fatalf("settled by flags with --insecure, the file was read: %v", err)
	}
	for _, cf := range []connFlags{{server: "cp:1", caCert: "ca.crt"}, {context: "x", server: "cp:1", caCert: "ca.crt", token: "t"}} {
		if _, err := cf.target(); err == nil {
			t.Errorf("%+v: a setting left open, the broken file was not read", cf)
		}
	}
}

// TestConfigFileErrors: the file decodes strictly, its errors name the
// key, and a context that does not exist is not found (exit 3).
func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		args []string
		code int
		want string
	}{
		{"unknown-key", "contexts:\n  - name: a\n    tokn: x\n", []string{"get", "nodes"}, ExitFailure,
			"line 3: contexts[0].tokn: field tokn not found"},
		{"unknown-top-key", "current_context: a\n", []string{"config", "view"}, ExitFailure,
			"line 1: current_context: field current_context not found"},
		{"wrong-type", "contexts:\n  name: a\n", []string{"config", "get-contexts"}, ExitFailure, "line 2: contexts"},
		{"no-name", "contexts:\n  - server: a:1\n", []string{"config", "view"}, ExitFailure, "contexts[0]: no name"},
		{"same-name", "contexts:\n  - name: a\n  - name: a\n", []string{"config", "view"}, ExitFailure, `contexts[1]: the name "a" is used twice`},
		{"token-twice", "contexts:\n  - name: a\n    token: x\n    token-file: f\n", []string{"config", "view"}, ExitFailure,
			"contexts[0] (a): token and token-file are both set"},
		{"insecure-with-ca", "contexts:\n  - name: a\n    insecure: true\n    ca-cert: ca.crt\n", []string{"get", "nodes"}, ExitFailure,
			"contexts[0] (a): insecure and ca-cert are both set"},
		{"current-missing", "current-context: gone\ncontexts:\n  - name: a\n", []string{"get", "nodes"}, ExitNotFound,
			`the current context "gone" is not in`},
		{"named-missing", "contexts:\n  - name: a\n", []string{"--context", "b", "get", "nodes"}, ExitNotFound,
			`no context "b" in`},
		{"use-missing", "contexts:\n  - name: a\n", []string{"config", "use-context", "b"}, ExitNotFound, `no context "b" in`},
		{"delete-missing", "contexts:\n  - name: a\n", []string{"config", "delete-context", "b"}, ExitNotFound, `no context "b" in`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config, _ := clientEnv(t)
			writeFile(t, config, tt.file, 0o600)
			code, out, errOut := navarch(t, tt.args...)
			if code != tt.code || out != "" || !strings.Contains(errOut, tt.want) || !strings.Contains(errOut, config) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want %q and the file's path)", code, tt.code, out, errOut, tt.want)
			}
		})
	}
}

// TestConfigPermissions: a configuration file or a token file that holds
// a token is refused while others may read it, as ssh refuses such a key;
// a file without a token may be read by anyone.
func TestConfigPermissions(t *testing.T) {
	tests := []struct {
		name        string
		file        string
		perm, token os.FileMode
		want        string // "" for no refusal
	}{
		{"token-open-to-all", "current-context: a\ncontexts:\n  - name: a\n    server: a:1\n    token: x\n", 0o644, 0, "mode 0644 lets others read it; run chmod 600"},
		{"token-open-to-group", "current-context: a\ncontexts:\n  - name: a\n    server: a:1\n    token: x\n", 0o640, 0, "mode 0640 lets others read it"},
		{"token-private", "current-context: a\ncontexts:\n  - name: a\n    server: a:1\n    token: x\n", 0o600, 0, ""},
		{"no-token", "current-context: a\ncontexts:\n  - name: a\n    server: a:1\n", 0o644, 0, ""},
		{"token-file-open", "current-context: a\ncontexts:\n  - name: a\n    server: a:1\n    token-file: a.token\n", 0o644, 0o644, "a's token but its mode 0644"},
		{"token-file-private", "current-context: a\ncontexts:\n  - name: a\n    server: a:1\n    token-file: a.token\n", 0o644, 0o600, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			config, _ := clientEnv(t)
			writeFile(t, config, tt.file, tt.perm)
			if tt.token != 0 {
				writeFile(t, filepath.Join(filepath.Dir(config), "a.token"), "a.secret\n", tt.token)
			}
			_, err := (&connFlags{insecure: true}).target()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestConfigCommands: set-context creates and updates contexts, the first
// becoming the current one; use-context switches; view redacts tokens;
// get-contexts marks the current one; delete-context removes one; the
// file is private and never half-written.
func TestConfigCommands(t *testing.T) {
	config, _ := clientEnv(t)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	writeFile(t, ca, "CA", 0o644)
	tokenFile := filepath.Join(t.TempDir(), "lab.token")
	writeFile(t, tokenFile, "lab.secret\n", 0o600)
	steps := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"first-becomes-current", []string{"config", "set-context", "prod", "--server", "cp.prod:50051", "--ca-cert", ca, "--token", "prod.s3cret"}, ExitOK,
			"Context \"prod\" created. It is the current context.\n", ""},
		{"second", []string{"config", "set-context", "lab", "--server", "127.0.0.1:7000", "--token-file", tokenFile}, ExitOK,
			"Context \"lab\" created.\n", ""},
		{"update", []string{"config", "set-context", "prod", "--server", "cp2.prod:50051"}, ExitOK,
			"Context \"prod\" modified.\n", ""},
		{"list", []string{"config", "get-contexts"}, ExitOK,
			"CURRENT  NAME  SERVER\n*        prod  cp2.prod:50051\n         lab   127.0.0.1:7000\n", ""},
		{"switch", []string{"config", "use-context", "lab"}, ExitOK, "Switched to context \"lab\".\n", ""},
		{"list-switched", []string{"config", "get-contexts"}, ExitOK,
			"CURRENT  NAME  SERVER\n         prod  cp2.prod:50051\n*        lab   127.0.0.1:7000\n", ""},
		{"view", []string{"config", "view"}, ExitOK, "current-context: lab\ncontexts:\n" +
			"  - name: prod\n    server: cp2.prod:50051\n    ca-cert: " + ca + "\n    token: REDACTED\n" +
			"  - name: lab\n    server: 127.0.0.1:7000\n    token-file: " + tokenFile + "\n", ""},
		{"token-and-file", []string{"config", "set-context", "x", "--token", "a", "--token-file", tokenFile}, ExitUsage, "", "not both"},
		{"insecure-and-ca", []string{"config", "set-context", "x", "--insecure", "--ca-cert", ca}, ExitUsage, "", "give --insecure or --ca-cert, not both"},
		{"bad-server", []string{"config", "set-context", "x", "--server", "nowhere"}, ExitUsage, "", `"nowhere" is not HOST:PORT`},
		{"missing-ca", []string{"config", "set-context", "x", "--ca-cert", filepath.Join(t.TempDir(), "none.crt")}, ExitUsage, "", "--ca-cert: "},
		{"no-name", []string{"config", "use-context"}, ExitUsage, "", "exactly one context name"},
		{"delete-current", []string{"config", "delete-context", "lab"}, ExitOK,
			"Context \"lab\" deleted. No context is current now; pick one with 'navarch config use-context NAME'.\n", ""},
		{"list-after-delete", []string{"config", "get-contexts"}, ExitOK, "CURRENT  NAME  SERVER\n         prod  cp2.prod:50051\n", ""},
		{"several-servers", []string{"config", "set-context", "ha", "--server", "cp-1.prod:50051, cp-2.prod:50051"}, ExitOK,
			"Context \"ha\" created. It is the current context.\n", ""},
		{"list-several", []string{"config", "get-contexts"}, ExitOK,
			"CURRENT  NAME  SERVER\n         prod  cp2.prod:50051\n*        ha    cp-1.prod:50051,cp-2.prod:50051\n", ""},
		{"bad-server-in-list", []string{"config", "set-context", "ha", "--server", "cp-1.prod:50051,cp-2.prod"}, ExitUsage, "", `server address 2 of 2 in "cp-1.prod:50051,cp-2.prod": server address "cp-2.prod" is not HOST:PORT`},
		{"delete-several", []string{"config", "delete-context", "ha"}, ExitOK,
			"Context \"ha\" deleted. No context is current now; pick one with 'navarch config use-context NAME'.\n", ""},
	}
	for _, s := range steps {
		code, out, errOut := navarch(t, s.args...)
		if code != s.code || out != s.out || !strings.Contains(errOut, s.err) {
			t.Fatalf("%s: exit %d (want %d), stderr %q (want %q), stdout\n%s\nwant\n%s", s.name, code, s.code, errOut, s.err, out, s.out)
		}
	}

	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "token: prod.s3cret") {
		t.Errorf("the file lost prod's token:\n%s", b)
	}
	if info, err := os.Stat(config); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the file's mode: %v %v", info.Mode(), err)
	}
	if info, err := os.Stat(filepath.Dir(config)); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("the directory's mode: %v %v", info.Mode(), err)
	}
	entries, _ := os.ReadDir(filepath.Dir(config))
	if len(entries) != 1 {
		t.Errorf("left beside the file: %v", entries)
	}

	code, out, _ := navarch(t, "config", "view", "-o", "json")
	var view clientConfig
	if err := json.Unmarshal([]byte(out), &view); err != nil || code != ExitOK {
		t.Fatalf("view -o json: %v (%d)\n%s", err, code, out)
	}
	if len(view.Contexts) != 1 || view.Contexts[0].Token != redacted || strings.Contains(out, "s3cret") {
		t.Errorf("view -o json shows a token:\n%s", out)
	}
}

// TestInsecureContext: a context may say to dial a control plane started
// with --insecure in plaintext; a CA given to the context later replaces
// that, and --insecure replaces the CA.
func TestInsecureContext(t *testing.T) {
	plain := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) { c.Insecure = true }})
	ca := cptest.Start(t, cptest.Options{}).Server.CAFile() // a real CA, of another control plane
	config, _ := clientEnv(t)
	steps := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"set", []string{"config", "set-context", "lab", "--server", plain.Addr, "--insecure", "--token", plain.Target().Token}, ExitOK, "created"},
		{"reaches", []string{"get", "status"}, ExitOK, "Auto-cordon:"},
		{"ca-replaces-insecure", []string{"config", "set-context", "lab", "--ca-cert", ca}, ExitOK, "modified"},
		{"tls-now", []string{"get", "status"}, ExitFailure, "answers in plaintext"},
		{"insecure-replaces-ca", []string{"config", "set-context", "lab", "--insecure"}, ExitOK, "modified"},
		{"reaches-again", []string{"get", "status"}, ExitOK, "Auto-cordon:"},
	}
	for _, s := range steps {
		code, out, errOut := navarch(t, s.args...)
		if code != s.code || !strings.Contains(out+errOut, s.want) {
			t.Fatalf("%s: exit %d (want %d), stdout %q, stderr %q (want %q)", s.name, code, s.code, out, errOut, s.want)
		}
	}
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "insecure: true") || strings.Contains(string(b), "ca-cert") {
		t.Errorf("the context after --insecure:\n%s", b)
	}
}

// TestContextsReachTheControlPlane: with nothing in the flags or the
// environment, commands reach a real control plane through a context,
// the current one or the one --context names, each with its own token.
func TestContextsReachTheControlPlane(t *testing.T) {
	other := cptest.Start(t, cptest.Options{})
	cp := cptest.Start(t, cptest.Options{})
	target := cp.Target()
	config, _ := clientEnv(t)
	if code, _, errOut := navarch(t, "config", "set-context", "admin", "--server", target.Addr, "--ca-cert", target.CACert, "--token", target.Token); code != ExitOK {
		t.Fatalf("set-context admin: exit %d, %q", code, errOut)
	}
	code, out, errOut := navarch(t, "token", "create", "dash", "--role", "viewer")
	if code != ExitOK {
		t.Fatalf("token create through the current context: exit %d, %q", code, errOut)
	}
	viewerToken := filepath.Join(filepath.Dir(config), "dash.token")
	writeFile(t, viewerToken, out, 0o600)
	if code, _, errOut := navarch(t, "config", "set-context", "dash", "--server", target.Addr, "--ca-cert", target.CACert, "--token-file", viewerToken); code != ExitOK {
		t.Fatalf("set-context dash: exit %d, %q", code, errOut)
	}

	rows := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"current-context-lists", []string{"token", "list"}, ExitOK, "dash"},
		{"viewer-context-reads", []string{"--context", "dash", "get", "status"}, ExitOK, "Auto-cordon:"},
		{"viewer-context-cannot-list-tokens", []string{"token", "list", "--context", "dash"}, ExitDenied,
			"permission denied: this token's role is viewer; token list needs admin"},
		// The flag wins over the context: the other control plane, with
		// the context's CA, which did not sign its certificate.
		{"flag-over-context", []string{"--server", other.Addr, "get", "status"}, ExitFailure, "certificate signed by unknown authority"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			code, out, errOut := navarch(t, row.args...)
			if code != row.code || !strings.Contains(out+errOut, row.want) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, row.code, out, errOut, row.want)
			}
		})
	}
	if code, _, errOut := navarch(t, "config", "use-context", "dash"); code != ExitOK {
		t.Fatalf("use-context: exit %d, %q", code, errOut)
	}
	if code, _, errOut := navarch(t, "token", "list"); code != ExitDenied {
		t.Fatalf("after use-context dash, token list: exit %d, %q", code, errOut)
	}
}

// TestConsoleOpensWithTheContext: the console gets the target the context
// gave, and the context's name for its header; settled by flags alone, it
// gets no name.
func TestConsoleOpensWithTheContext(t *testing.T) {
	config, _ := clientEnv(t)
	writeFile(t, config, "current-context: prod\ncontexts:\n  - name: prod\n    server: cp.prod:50051\n    token: prod.secret\n", 0o600)
	tests := []struct {
		name string
		args []string
		want rpcclient.Target
	}{
		{"current-context", []string{"--insecure"}, rpcclient.Target{Addr: "cp.prod:50051", Insecure: true, Token: "prod.secret", Context: "prod"}},
		{"flags-only", []string{"--insecure", "--server", "cp:1", "--token", "t"}, rpcclient.Target{Addr: "cp:1", Insecure: true, Token: "t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got rpcclient.Target
			console := func(_ context.Context, target rpcclient.Target, _ bool) error {
				got = target
				return nil
			}
			var errOut bytes.Buffer
			if code := Main(t.Context(), tt.args, Env{Stdout: io.Discard, Stderr: &errOut, Console: console}); code != ExitOK {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if settingsOf(got) != settingsOf(tt.want) {
				t.Errorf("console target\n got %+v\nwant %+v", settingsOf(got), settingsOf(tt.want))
			}
		})
	}
}
