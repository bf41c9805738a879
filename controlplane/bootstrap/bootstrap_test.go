package bootstrap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	testPin = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testSum = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func validOptions() Options {
	return Options{
		NodeID:        "gpu-node-7",
		Server:        "cp.example.com:50051",
		CAHash:        testPin,
		JoinToken:     "gpu-node-7-join.s3cr3tvalue",
		Labels:        map[string]string{"zone": "a", "pool": "training"},
		PackageURL:    "https://packages.example.com/navarch-agent_1.2.3_amd64.deb",
		PackageSHA256: testSum,
	}
}

// rendered is a document read back: the cloud-config's own keys, and the
// agent's settings its agent.yaml holds.
type rendered struct {
	keys     []string
	doc      cloudConfig
	settings yaml.Node
}

func render(t *testing.T, o Options) rendered {
	t.Helper()
	b, err := CloudConfig(o)
	if err != nil {
		t.Fatalf("CloudConfig: %v", err)
	}
	return parse(t, b)
}

func parse(t *testing.T, b []byte) rendered {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("#cloud-config\n")) {
		t.Fatalf("does not start with #cloud-config:\n%s", b)
	}
	var r rendered
	var top map[string]any
	if err := yaml.Unmarshal(b, &top); err != nil {
		t.Fatalf("read back: %v\n%s", err, b)
	}
	for k := range top {
		r.keys = append(r.keys, k)
	}
	sort.Strings(r.keys)
	if err := yaml.Unmarshal(b, &r.doc); err != nil {
		t.Fatalf("read back: %v\n%s", err, b)
	}
	if len(r.doc.WriteFiles) != 2 {
		t.Fatalf("write_files: %d files, want 2", len(r.doc.WriteFiles))
	}
	if err := yaml.Unmarshal([]byte(r.doc.WriteFiles[0].Content), &r.settings); err != nil {
		t.Fatalf("read back agent.yaml: %v\n%s", err, r.doc.WriteFiles[0].Content)
	}
	return r
}

// pairs flattens the agent's settings to name: values, in order.
func (r rendered) pairs(t *testing.T) [][2]any {
	t.Helper()
	root := r.settings.Content[0]
	var out [][2]any
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch v.Kind {
		case yaml.ScalarNode:
			if v.ShortTag() != "!!str" {
				t.Errorf("%s: read back as %s, not a string", k.Value, v.ShortTag())
			}
			out = append(out, [2]any{k.Value, v.Value})
		case yaml.SequenceNode:
			var items []string
			for _, c := range v.Content {
				if c.ShortTag() != "!!str" {
					t.Errorf("%s: item read back as %s, not a string", k.Value, c.ShortTag())
				}
				items = append(items, c.Value)
			}
			out = append(out, [2]any{k.Value, items})
		default:
			t.Fatalf("%s: unexpected node kind %v", k.Value, v.Kind)
		}
	}
	return out
}

func TestCloudConfig(t *testing.T) {
	tests := []struct {
		name        string
		change      func(*Options)
		wantPairs   [][2]any
		wantInstall []string
	}{
		{
			name: "labels-in-key-order",
			wantPairs: [][2]any{
				{"server", "cp.example.com:50051"}, {"ca-hash", testPin},
				{"join-token", "gpu-node-7-join.s3cr3tvalue"}, {"node-id", "gpu-node-7"},
				{"label", []string{"pool=training", "zone=a"}},
			},
			wantInstall: []string{"sh", InstallScriptPath, "https://packages.example.com/navarch-agent_1.2.3_amd64.deb", testSum},
		},
		{
			name: "no-labels-extra-settings-in-name-order",
			change: func(o *Options) {
				o.Labels = nil
				o.Settings = map[string]string{"scheduler": "slurm", "no-remedies": "true", "metrics-listen": ":9400"}
			},
			wantPairs: [][2]any{
				{"server", "cp.example.com:50051"}, {"ca-hash", testPin},
				{"join-token", "gpu-node-7-join.s3cr3tvalue"}, {"node-id", "gpu-node-7"},
				{"metrics-listen", ":9400"}, {"no-remedies", "true"}, {"scheduler", "slurm"},
			},
			wantInstall: []string{"sh", InstallScriptPath, "https://packages.example.com/navarch-agent_1.2.3_amd64.deb", testSum},
		},
		{
			name: "hex-in-lower-case",
			change: func(o *Options) {
				o.Labels = nil
				o.CAHash = strings.ToUpper(testPin)
				o.PackageSHA256 = strings.ToUpper(testSum)
			},
			wantPairs: [][2]any{
				{"server", "cp.example.com:50051"}, {"ca-hash", testPin},
				{"join-token", "gpu-node-7-join.s3cr3tvalue"}, {"node-id", "gpu-node-7"},
			},
			wantInstall: []string{"sh", InstallScriptPath, "https://packages.example.com/navarch-agent_1.2.3_amd64.deb", testSum},
		},
		{
			name: "package-from-the-control-plane",
			change: func(o *Options) {
				o.Labels = nil
				o.PackageURL = "https://CP.example.com:50051/packages/navarch-agent.deb"
			},
			wantPairs: [][2]any{
				{"server", "cp.example.com:50051"}, {"ca-hash", testPin},
				{"join-token", "gpu-node-7-join.s3cr3tvalue"}, {"node-id", "gpu-node-7"},
			},
			wantInstall: []string{"sh", InstallScriptPath, "https://CP.example.com:50051/packages/navarch-agent.deb", testSum, "--no-tls-verify"},
		},
		{
			name: "several-control-planes-package-from-a-standby",
			change: func(o *Options) {
				o.Labels = nil
				o.Server = "cp-1.example.com:50051,cp-2.example.com:50051"
				o.PackageURL = "https://cp-2.example.com:50051/packages/navarch-agent.deb"
			},
			wantPairs: [][2]any{
				{"server", "cp-1.example.com:50051,cp-2.example.com:50051"}, {"ca-hash", testPin},
				{"join-token", "gpu-node-7-join.s3cr3tvalue"}, {"node-id", "gpu-node-7"},
			},
			wantInstall: []string{"sh", InstallScriptPath, "https://cp-2.example.com:50051/packages/navarch-agent.deb", testSum, "--no-tls-verify"},
		},
		{
			name: "same-host-other-port-is-checked",
			change: func(o *Options) {
				o.Labels = nil
				o.PackageURL = "https://cp.example.com/navarch-agent.deb"
			},
			wantPairs: [][2]any{
				{"server", "cp.example.com:50051"}, {"ca-hash", testPin},
				{"join-token", "gpu-node-7-join.s3cr3tvalue"}, {"node-id", "gpu-node-7"},
			},
			wantInstall: []string{"sh", InstallScriptPath, "https://cp.example.com/navarch-agent.deb", testSum},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOptions()
			if tt.change != nil {
				tt.change(&o)
			}
			r := render(t, o)
			if got := r.pairs(t); !reflect.DeepEqual(got, tt.wantPairs) {
				t.Errorf("agent.yaml settings:\n got %q\nwant %q", got, tt.wantPairs)
			}
			if !reflect.DeepEqual(r.doc.Runcmd, [][]string{tt.wantInstall}) {
				t.Errorf("runcmd: got %q, want %q", r.doc.Runcmd, [][]string{tt.wantInstall})
			}
			wantFiles := []writeFile{
				{Path: "/etc/navarch/agent.yaml", Owner: "root:root", Permissions: "0600"},
				{Path: InstallScriptPath, Owner: "root:root", Permissions: "0700", Content: installScript},
			}
			got := append([]writeFile(nil), r.doc.WriteFiles...)
			got[0].Content = ""
			if !reflect.DeepEqual(got, wantFiles) {
				t.Errorf("write_files: got %+v", got)
			}
		})
	}
}

func TestCloudConfigRefuses(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no-node-id", func(o *Options) { o.NodeID = "" }, "NodeID: empty"},
		{"node-id-of-two-lines", func(o *Options) { o.NodeID = "a\nb" }, "NodeID: holds a control character"},
		{"server-without-port", func(o *Options) { o.Server = "cp.example.com" }, "Server: \"cp.example.com\" is not HOST:PORT"},
		{"server-without-host", func(o *Options) { o.Server = ":50051" }, "Server: \":50051\": no host"},
		{"server-port-not-a-number", func(o *Options) { o.Server = "cp:grpc" }, "Server: \"cp:grpc\": port \"grpc\" is not 1–65535"},
		{"server-port-out-of-range", func(o *Options) { o.Server = "cp:70000" }, "port \"70000\" is not 1–65535"},
		{"server-host-with-space", func(o *Options) { o.Server = "cp example:50051" }, "Server: \"cp example:50051\": the host holds white space"},
		{"second-server-without-port", func(o *Options) { o.Server = "cp-1:50051,cp-2" }, "Server: \"cp-2\" is not HOST:PORT"},
		{"no-ca-hash", func(o *Options) { o.CAHash = "" }, "CAHash: CA pin \"\" does not start with \"sha256:\""},
		{"ca-hash-too-short", func(o *Options) { o.CAHash = "sha256:abcd" }, "CAHash: CA pin \"sha256:abcd\" is not sha256: and 64 hex digits"},
		{"ca-hash-not-hex", func(o *Options) { o.CAHash = "sha256:" + strings.Repeat("z", 64) }, "CAHash: CA pin"},
		{"no-join-token", func(o *Options) { o.JoinToken = "" }, "JoinToken: not an agent token"},
		{"join-token-without-secret", func(o *Options) { o.JoinToken = "name." }, "JoinToken: not an agent token"},
		{"join-token-with-newline", func(o *Options) { o.JoinToken = "name.se\ncret" }, "JoinToken: holds white space"},
		{"label-key-empty", func(o *Options) { o.Labels = map[string]string{"": "x"} }, "Labels: key \"\": empty or holds '='"},
		{"label-key-with-equals", func(o *Options) { o.Labels = map[string]string{"a=b": "x"} }, "Labels: key \"a=b\": empty or holds '='"},
		{"label-key-of-two-lines", func(o *Options) { o.Labels = map[string]string{"a\nb": "x"} }, "Labels: key \"a\\nb\": holds a control character"},
		{"no-package-url", func(o *Options) { o.PackageURL = "" }, "PackageURL: empty"},
		{"package-url-over-http", func(o *Options) { o.PackageURL = "http://packages.example.com/a.deb" }, "PackageURL: \"http://packages.example.com/a.deb\" is not an https URL"},
		{"package-url-without-host", func(o *Options) { o.PackageURL = "https:///a.deb" }, "PackageURL: \"https:///a.deb\" names no host"},
		{"package-url-with-password", func(o *Options) { o.PackageURL = "https://u:hunter2@packages.example.com/a.deb" }, "PackageURL: \"https://u:xxxxx@packages.example.com/a.deb\" holds a user name or password"},
		{"package-url-with-space", func(o *Options) { o.PackageURL = "https://packages.example.com/a b.deb" }, "PackageURL: \"https://packages.example.com/a b.deb\" holds white space"},
		{"package-url-unparsable", func(o *Options) { o.PackageURL = "https://[::1/a.deb" }, "PackageURL: parse"},
		{"no-package-sha256", func(o *Options) { o.PackageSHA256 = "" }, "PackageSHA256: \"\" is not 64 hex digits"},
		{"package-sha256-with-prefix", func(o *Options) { o.PackageSHA256 = "sha256:" + testSum }, "PackageSHA256: \"sha256:" + testSum + "\" is not 64 hex digits"},
		{"setting-not-a-flag-name", func(o *Options) { o.Settings = map[string]string{"--scheduler": "slurm"} }, "Settings: \"--scheduler\" is not an agent flag's name"},
		{"setting-with-newline", func(o *Options) { o.Settings = map[string]string{"scheduler\nserver": "x"} }, "is not an agent flag's name"},
		{"setting-server", func(o *Options) { o.Settings = map[string]string{"server": "evil:1"} }, "Settings: \"server\" comes from its own option"},
		{"setting-join-token", func(o *Options) { o.Settings = map[string]string{"join-token": "x.y"} }, "Settings: \"join-token\" comes from its own option"},
		{"setting-label", func(o *Options) { o.Settings = map[string]string{"label": "a=b"} }, "Settings: \"label\" comes from its own option"},
		{"setting-ca-cert", func(o *Options) { o.Settings = map[string]string{"ca-cert": "/etc/ca.crt"} }, "Settings: \"ca-cert\": the bootstrap pins the CA by hash"},
		{"setting-insecure", func(o *Options) { o.Settings = map[string]string{"insecure": "true"} }, "Settings: \"insecure\": a bootstrapped agent always uses TLS"},
		{"setting-config", func(o *Options) { o.Settings = map[string]string{"config": "/tmp/x"} }, "Settings: \"config\": not a setting of the file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOptions()
			tt.change(&o)
			b, err := CloudConfig(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
			if b != nil {
				t.Errorf("rendered a document with the error")
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error shows the join token's secret: %v", err)
			}
		})
	}
}

// TestCloudConfigEscapes: values that are YAML of their own (quotes,
// colons, comments, anchors, tags, document markers, newlines) come back
// from both documents exactly as given, and add no key to either.
func TestCloudConfigEscapes(t *testing.T) {
	tricky := []string{
		`it's "quoted"`,
		"a: b",
		"x\nserver: evil:1",
		"x\n---\nruncmd: [reboot]",
		"# not a comment",
		"&anchor",
		"*alias",
		"!!binary",
		"- item",
		"{flow: map}",
		"null",
		"~",
		"true",
		"0600",
		"",
		" leading and trailing ",
		"tab\there",
		"|",
	}
	for _, v := range tricky {
		t.Run(strings.NewReplacer("\n", `\n`, "\t", `\t`).Replace(v), func(t *testing.T) {
			o := validOptions()
			o.NodeID = strings.NewReplacer("\n", " ", "\t", " ").Replace(v)
			if o.NodeID == "" {
				o.NodeID = "n"
			}
			o.Labels = map[string]string{"k": v, strings.NewReplacer("\n", " ", "\t", " ", "=", ":").Replace(v) + "key": v}
			o.Settings = map[string]string{"scheduler": v}
			r := render(t, o)
			if want := []string{"runcmd", "write_files"}; !reflect.DeepEqual(r.keys, want) {
				t.Errorf("cloud-config keys %q, want %q", r.keys, want)
			}
			want := [][2]any{
				{"server", o.Server}, {"ca-hash", o.CAHash}, {"join-token", o.JoinToken}, {"node-id", o.NodeID},
				{"label", labelList(o.Labels)}, {"scheduler", v},
			}
			if got := r.pairs(t); !reflect.DeepEqual(got, want) {
				t.Errorf("agent.yaml settings:\n got %q\nwant %q", got, want)
			}
		})
	}
}

func labelList(m map[string]string) []string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, k+"="+m[k])
	}
	return out
}

// TestCloudConfigSchema: cloud-init itself takes the documents, tricky
// values and all.
func TestCloudConfigSchema(t *testing.T) {
	cloudInit, err := exec.LookPath("cloud-init")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("cloud-init is missing under CI; `go tool task cloudinit` installs it")
		}
		t.Skip("cloud-init is not installed; `go tool task cloudinit` installs it")
	}
	tricky := validOptions()
	tricky.NodeID = `node: "7" # x`
	tricky.Labels = map[string]string{"pool": "a\nruncmd: [reboot]", "k": "&x *y"}
	tricky.Settings = map[string]string{"scheduler": "slurm", "log-level": "null"}
	fromControlPlane := validOptions()
	fromControlPlane.PackageURL = "https://cp.example.com:50051/packages/navarch-agent.deb?v=1&x='y'"
	for name, o := range map[string]Options{"plain": validOptions(), "tricky": tricky, "from-control-plane": fromControlPlane} {
		t.Run(name, func(t *testing.T) {
			b, err := CloudConfig(o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "user-data")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(cloudInit, "schema", "--config-file", path).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
				t.Fatalf("cloud-init schema: %v\n%s\n%s", err, out, b)
			}
		})
	}
}
