package bootstrap

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// TestAgentTakesSettings: the real agent takes the agent.yaml the
// document writes, tricky values included. A bad --gpus stops it right
// after its settings were applied: that error means the file was taken
// whole (as cmd/navarch-agent's TestExampleConfig does).
func TestAgentTakesSettings(t *testing.T) {
	if testing.Short() {
		t.Skip("builds navarch-agent")
	}
	agent := filepath.Join(t.TempDir(), "navarch-agent")
	build := exec.Command("go", "build", "-o", agent, "github.com/navarch/navarch/cmd/navarch-agent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tricky := validOptions()
	tricky.NodeID = `node: "7" # x`
	tricky.Labels = map[string]string{"pool": "a\nserver: evil:1", "k": "v=w: 'x'"}
	slurm := validOptions()
	slurm.Settings = map[string]string{"scheduler": "slurm", "slurm-node-name": "gpu7", "no-remedies": "true", "log-level": "debug"}
	for name, o := range map[string]Options{"plain": validOptions(), "tricky": tricky, "slurm": slurm} {
		t.Run(name, func(t *testing.T) {
			r := render(t, o)
			path := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(path, []byte(r.doc.WriteFiles[0].Content), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(agent, "--config", path, "--simulate", "--gpus", "0")
			cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir(), "NAVARCH_JOIN_TOKEN=")
			out, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "--gpus: 0 is not within 1–64") {
				t.Fatalf("exit %d (%v): %s", code, err, out)
			}
		})
	}
}

// TestInstallScript runs the script the document writes against a local
// HTTPS server, with apt-get and systemctl stubs that record their calls.
func TestInstallScript(t *testing.T) {
	r := render(t, validOptions())
	script := filepath.Join(t.TempDir(), "install-agent.sh")
	if err := os.WriteFile(script, []byte(r.doc.WriteFiles[1].Content), 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s", err, out)
	}

	deb := []byte("!<arch>\nnot really a package\n")
	sum := sha256.Sum256(deb)
	good := hex.EncodeToString(sum[:])
	var failFirst atomic.Int32
	var requests atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		requests.Add(1)
		if failFirst.Add(-1) >= 0 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		w.Write(deb)
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	const (
		install = "apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold DEB noninteractive\n"
		start   = "systemctl enable --now navarch-agent\n"
	)
	tests := []struct {
		name       string
		downloader string
		args       []string
		failFirst  int32 // requests answered 503 first
		trustCA    bool  // curl trusts the test server's certificate
		noLists    bool  // apt-get finds no dependency until it updates
		wantOK     bool
		wantOut    string
		wantCalls  string
		wantTries  int32
	}{
		{name: "installs-checked-package", downloader: "curl", args: []string{srv.URL + "/a.deb", good}, trustCA: true,
			wantOK: true, wantOut: "SHA-256 " + good + " as expected", wantCalls: install + start, wantTries: 1},
		{name: "control-plane-certificate-unchecked", downloader: "curl", args: []string{srv.URL + "/a.deb", good, "--no-tls-verify"},
			wantOK: true, wantOut: "as expected", wantCalls: install + start, wantTries: 1},
		{name: "retries-a-failed-download", downloader: "curl", args: []string{srv.URL + "/a.deb?sig=s3cr3t", good}, failFirst: 1, trustCA: true,
			wantOK: true, wantOut: "download of " + srv.URL + "/a.deb failed (attempt 1 of 10); retrying", wantCalls: install + start, wantTries: 2},
		{name: "updates-lists-when-install-fails", downloader: "curl", args: []string{srv.URL + "/a.deb", good}, trustCA: true, noLists: true,
			wantOK: true, wantOut: "updating the package lists and trying again", wantCalls: install + "apt-get update -q\n" + install + start, wantTries: 1},
		{name: "refuses-another-sha256", downloader: "curl", args: []string{srv.URL + "/a.deb", testSum}, trustCA: true,
			wantOut: "refusing to install " + srv.URL + "/a.deb: its SHA-256 is " + good + ", not " + testSum, wantTries: 1},
		{name: "wget-installs-checked-package", downloader: "wget", args: []string{srv.URL + "/a.deb", good, "--no-tls-verify"},
			wantOK: true, wantOut: "as expected", wantCalls: install + start, wantTries: 1},
		{name: "wget-refuses-another-sha256", downloader: "wget", args: []string{srv.URL + "/a.deb", testSum, "--no-tls-verify"},
			wantOut: "its SHA-256 is " + good + ", not " + testSum, wantTries: 1},
		{name: "unknown-option", downloader: "curl", args: []string{srv.URL + "/a.deb", good, "--yes"},
			wantOut: "unknown option --yes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin, calls := stubPath(t, tt.downloader)
			failFirst.Store(tt.failFirst)
			requests.Store(0)
			cmd := exec.Command("sh", append([]string{script}, tt.args...)...)
			cmd.Env = []string{"PATH=" + bin, "HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir(), "CALLS=" + calls}
			if tt.trustCA {
				cmd.Env = append(cmd.Env, "CURL_CA_BUNDLE="+caFile)
			}
			if tt.noLists {
				cmd.Env = append(cmd.Env, "NO_LISTS=yes")
			}
			out, err := cmd.CombinedOutput()
			if (err == nil) != tt.wantOK || !strings.Contains(string(out), tt.wantOut) {
				t.Fatalf("err %v, want ok %v and output with %q:\n%s", err, tt.wantOK, tt.wantOut, out)
			}
			if strings.Contains(string(out), "s3cr3t") {
				t.Errorf("output shows the URL's query:\n%s", out)
			}
			got, _ := os.ReadFile(calls)
			if string(got) != tt.wantCalls {
				t.Errorf("calls:\n%s\nwant:\n%s", got, tt.wantCalls)
			}
			if n := requests.Load(); n != tt.wantTries {
				t.Errorf("%d requests, want %d", n, tt.wantTries)
			}
		})
	}
}

// stubPath makes a PATH of the tools the script needs, with one
// downloader, and apt-get and systemctl stubs that append their
// arguments to the file returned. apt-get's stub checks that the
// package it was given is still there, and writes it as DEB; with
// NO_LISTS set it fails an install until apt-get update has run.
func stubPath(t *testing.T, downloader string) (bin, calls string) {
	t.Helper()
	bin = t.TempDir()
	calls = filepath.Join(t.TempDir(), "calls")
	for _, tool := range []string{"sh", "mktemp", "rm", "sha256sum", "sleep", downloader} {
		real, err := exec.LookPath(tool)
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing under CI", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
		if err := os.Symlink(real, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	stubs := map[string]string{
		"apt-get": "if [ \"$1\" = update ]; then echo \"apt-get $*\" >>\"$CALLS\"; : >\"$CALLS.lists\"; exit 0; fi\n" +
			"last=; for a; do last=$a; done\n[ -f \"$last\" ] || { echo \"apt-get: no $last\" >&2; exit 1; }\nargs=$*\necho \"apt-get ${args%\"$last\"}DEB $DEBIAN_FRONTEND\" >>\"$CALLS\"\n" +
			// Without lists, as on a fresh image: a dependency is not found.
			"if [ -n \"${NO_LISTS:-}\" ] && [ ! -e \"$CALLS.lists\" ]; then echo \"E: unmet dependencies\" >&2; exit 100; fi\n",
		"systemctl": "echo \"systemctl $*\" >>\"$CALLS\"\n",
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin, calls
}
