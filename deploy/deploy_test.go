// Package deploy holds what ships beside the binaries: systemd units,
// example configs, Prometheus rules, Grafana dashboards. Its tests check
// them with the tools that read them.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"go.yaml.in/yaml/v3"
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
// review counts on, and restart only a daemon that failed: a clean exit
// is a stop, or an agent whose node was terminated, which must stay down.
func TestSystemdUnitsAreHardened(t *testing.T) {
	for name, want := range map[string][]string{
		"navarch-controlplane.service": {
			"Type=notify", "User=navarch", "StateDirectory=navarch", "ProtectSystem=strict", "NoNewPrivileges=yes",
			"PrivateTmp=yes", "CapabilityBoundingSet=\n", "PrivateDevices=yes", "UMask=0077", "Restart=on-failure\n",
		},
		"navarch-agent.service": {
			"Type=notify", "StateDirectory=navarch-agent", "ProtectSystem=strict", "NoNewPrivileges=yes",
			"PrivateTmp=yes", "CapabilityBoundingSet=CAP_SYSLOG CAP_KILL CAP_SYS_ADMIN\n", "UMask=0077", "Restart=on-failure\n",
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

// TestKubernetesManifests parses deploy/kubernetes and checks that the
// agent's DaemonSet hangs together: its selector matches its pods, every
// volume it mounts and every Secret it reads is defined, its probes reach
// the port its metrics listen on, and it sees what the agent needs.
func TestKubernetesManifests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("kubernetes", "navarch-agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	byKind := map[string][]map[string]any{}
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if doc == nil {
			continue
		}
		kind, _ := doc["kind"].(string)
		byKind[kind] = append(byKind[kind], doc)
	}
	if len(byKind["DaemonSet"]) != 1 || len(byKind["Secret"]) != 1 || len(byKind["Namespace"]) != 1 {
		t.Fatalf("kinds %v, want a Namespace, a Secret and a DaemonSet", keys(byKind))
	}
	get := func(v any, path ...string) any {
		for _, p := range path {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[p]
		}
		return v
	}
	ds := byKind["DaemonSet"][0]
	secret := get(byKind["Secret"][0], "metadata", "name")
	sel := get(ds, "spec", "selector", "matchLabels").(map[string]any)
	labels := get(ds, "spec", "template", "metadata", "labels").(map[string]any)
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("selector %s=%v does not match the pods' labels %v", k, v, labels)
		}
	}
	pod := get(ds, "spec", "template", "spec").(map[string]any)
	if pod["hostPID"] != true || get(pod, "nodeSelector", "nvidia.com/gpu.present") != "true" {
		t.Error("the agent must see the host's processes and run on GPU nodes only")
	}
	volumes := map[string]bool{}
	for _, v := range pod["volumes"].([]any) {
		volumes[get(v, "name").(string)] = true
		if s := get(v, "secret", "secretName"); s != nil && s != secret {
			t.Errorf("volume reads Secret %v, which is not defined", s)
		}
	}
	c := pod["containers"].([]any)[0]
	args := fmt.Sprint(get(c, "args"))
	for _, want := range []string{"--metrics-listen=:9400", "--kernel-log=/dev/kmsg", "--state-dir=/var/lib/navarch-agent"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %s lack %s", args, want)
		}
	}
	for _, m := range get(c, "volumeMounts").([]any) {
		if !volumes[get(m, "name").(string)] {
			t.Errorf("mount %v names no volume", get(m, "name"))
		}
	}
	for _, e := range get(c, "envFrom").([]any) {
		if s := get(e, "secretRef", "name"); s != secret {
			t.Errorf("envFrom reads Secret %v, which is not defined", s)
		}
	}
	// The release's image, navarch-agent:VERSION as its tarball loads,
	// under the registry it is pushed to.
	image, _ := get(c, "image").(string)
	if ref, err := name.NewTag(image, name.StrictValidation); err != nil {
		t.Errorf("image %q: %v", image, err)
	} else if path.Base(ref.RepositoryStr()) != "navarch-agent" || ref.TagStr() == "latest" {
		t.Errorf("image %q, want the release's navarch-agent under its version", image)
	}
	port := get(c, "ports").([]any)[0]
	if get(port, "name") != "metrics" || get(port, "containerPort") != 9400 {
		t.Errorf("metrics port %v", port)
	}
	for _, probe := range []string{"startupProbe", "livenessProbe"} {
		if get(c, probe, "httpGet", "path") != "/healthz" || get(c, probe, "httpGet", "port") != "metrics" {
			t.Errorf("%s does not ask /healthz on the metrics port", probe)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
