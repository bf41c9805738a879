package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBashCompletionCompletes sources the bash script with a stand-in for
// navarch that answers `get nodes -o json` and `get pools -o json`, and
// completes as bash would: commands, a group's subcommands, a command's
// flags, node ids and pool names.
func TestBashCompletionCompletes(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script, err := completionScript("bash")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "navarch.bash")
	if err := os.WriteFile(p, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) []string {
		t.Helper()
		line := ""
		for _, w := range words {
			line += " " + shellQuote(w)
		}
		prog := `navarch() {
  if [ "$2" = pools ]; then printf '{"pools": [{"name": "train"}, {"name": "infer"}]}\n'; return; fi
  printf '[{"nodeId": "gpu-a01"}, {"nodeId": "gpu-b02"}]\n'
}
source ` + shellQuote(p) + `
COMP_WORDS=(` + line + `)
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_navarch
printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.Fields(string(out))
	}
	for _, tc := range []struct {
		name  string
		words []string
		want  []string
	}{
		{"commands", []string{"navarch", "re"}, []string{"release", "reset-gpu", "reboot", "reset-identity"}},
		{"group", []string{"navarch", "get", "n"}, []string{"nodes", "node"}},
		{"flags", []string{"navarch", "reset-gpu", "gpu-a01", "--f"}, []string{"--force"}},
		{"group-flags", []string{"navarch", "get", "events", "--m"}, []string{"--min-health"}},
		{"node-ids", []string{"navarch", "cordon", "gpu-"}, []string{"gpu-a01", "gpu-b02"}},
		{"one-node-id", []string{"navarch", "cordon", "gpu-a01", "gpu-"}, nil},
		{"more-node-ids", []string{"navarch", "release", "gpu-a01", "gpu-"}, []string{"gpu-a01", "gpu-b02"}},
		{"node-ids-in-a-group", []string{"navarch", "get", "node", "gpu-b"}, []string{"gpu-b02"}},
		{"no-ids-for-tokens", []string{"navarch", "token", "revoke", "gpu"}, nil},
		{"power-cycle-node-ids", []string{"navarch", "power-cycle", "gpu-a"}, []string{"gpu-a01"}},
		{"pool-actions", []string{"navarch", "pool", ""}, []string{"scale", "put", "delete"}},
		{"get-pools", []string{"navarch", "get", "poo"}, []string{"pools", "pool"}},
		{"pool-names", []string{"navarch", "pool", "scale", "tr"}, []string{"train"}},
		{"pool-names-in-get", []string{"navarch", "get", "pool", ""}, []string{"train", "infer"}},
		{"pool-flags", []string{"navarch", "pool", "scale", "train", "--"}, []string{"--to", "--reason", "--context", "--server", "--ca-cert", "--insecure", "--token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := complete(tc.words...)
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("completing %q: %q, want %q", tc.words, got, tc.want)
			}
		})
	}
}

// TestCompletionScriptsParse checks each script with its own shell where
// the shell is installed.
func TestCompletionScriptsParse(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		script, err := completionScript(shell)
		if err != nil || !strings.Contains(script, "navarch") {
			t.Fatalf("%s: %v", shell, err)
		}
		bin, err := exec.LookPath(shell)
		if err != nil {
			continue
		}
		cmd := exec.Command(bin, "-n")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s -n: %v\n%s", shell, err, out)
		}
	}
	if _, err := completionScript("tcsh"); err == nil {
		t.Fatal("tcsh was accepted")
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
