// Package deploy holds what ships beside the binaries: systemd units,
// Prometheus rules, Grafana dashboards. Its tests check them with the
// tools that read them.
package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitsVerify runs systemd-analyze verify on both units, with
// ExecStart pointed at a binary that exists here, and fails on anything it
// says: an unknown key is only a warning to systemd, and a silent typo in
// a hardening line is a hole.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is missing under CI; `go tool task systemd` installs it")
		}
		t.Skip("systemd-analyze is not installed; `go tool task systemd` installs it")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var units []string
	for _, name := range []string{"navarch-controlplane.service", "navarch-agent.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		bin := "/usr/bin/" + strings.TrimSuffix(name, ".service")
		if !strings.Contains(string(b), "ExecStart="+bin+" ") {
			t.Fatalf("%s does not start %s", name, bin)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), bin, self)), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitsAreHardened: the units keep the lines the security
// review counts on.
func TestSystemdUnitsAreHardened(t *testing.T) {
	for name, want := range map[string][]string{
		"navarch-controlplane.service": {
			"Type=notify", "User=navarch", "StateDirectory=navarch", "ProtectSystem=strict", "NoNewPrivileges=yes",
			"PrivateTmp=yes", "CapabilityBoundingSet=\n", "PrivateDevices=yes", "UMask=0077",
		},
		"navarch-agent.service": {
			"Type=notify", "StateDirectory=navarch-agent", "ProtectSystem=strict", "NoNewPrivileges=yes",
			"PrivateTmp=yes", "CapabilityBoundingSet=CAP_SYSLOG CAP_KILL CAP_SYS_ADMIN\n", "UMask=0077",
		},
	} {
		b, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range want {
			if !strings.Contains(string(b), line) {
				t.Errorf("%s lacks %q", name, strings.TrimSpace(line))
			}
		}
	}
}
