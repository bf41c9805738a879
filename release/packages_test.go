package release

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	rpmutils "github.com/sassoftware/go-rpmutils"
	"go.yaml.in/yaml/v3"
)

// The version the test's packages and binaries carry.
const (
	testVersion    = "9.9.9-test"  // as nfpm is given it
	testDebVersion = "9.9.9~test"  // as deb and rpm write a pre-release
	testBinVersion = "v9.9.9-test" // as the binaries print it
)

var daemons = []string{"navarch-controlplane", "navarch-agent"}

// built is what buildPackages made: the binaries, and each package by
// name and format.
type built struct {
	bin  string
	pkgs map[string]map[string]string
}

// buildPackages builds this machine's binaries as the release task does
// and packages them with the release's nfpm definitions.
func buildPackages(t *testing.T) built {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b := built{bin: filepath.Join(dir, "bin"), pkgs: map[string]map[string]string{}}
	ldflags := "-X github.com/navarch/navarch/internal/version.Version=" + testBinVersion
	for _, step := range []struct {
		cgo  string
		pkgs []string
	}{
		{"0", []string{"./cmd/navarch", "./cmd/navarch-controlplane"}},
		{"1", []string{"./cmd/navarch-agent"}},
	} {
		run(t, root, []string{"CGO_ENABLED=" + step.cgo}, "go", append([]string{"build", "-ldflags", ldflags, "-o", b.bin + "/"}, step.pkgs...)...)
	}
	completions := filepath.Join(dir, "completions")
	if err := os.Mkdir(completions, 0o755); err != nil {
		t.Fatal(err)
	}
	for shell, file := range map[string]string{"bash": "navarch.bash", "zsh": "_navarch", "fish": "navarch.fish"} {
		out := run(t, root, nil, filepath.Join(b.bin, "navarch"), "completion", shell)
		if err := os.WriteFile(filepath.Join(completions, file), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	target := filepath.Join(dir, "pkg")
	env := []string{"VERSION=" + testVersion, "ARCH=" + runtime.GOARCH, "BIN=" + b.bin, "COMPLETIONS=" + completions, "SOURCE_DATE_EPOCH=1795972800"}
	for _, name := range []string{"navarch", "navarch-controlplane", "navarch-agent"} {
		b.pkgs[name] = map[string]string{}
		for _, format := range []string{"deb", "rpm"} {
			out := filepath.Join(target, format, name)
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			run(t, root, env, "go", "tool", "nfpm", "package", "--config", "release/nfpm/"+name+".yaml", "--packager", format, "--target", out+"/")
			made, err := filepath.Glob(filepath.Join(out, "*."+format))
			if err != nil || len(made) != 1 {
				t.Fatalf("nfpm made %v for %s's %s", made, name, format)
			}
			b.pkgs[name][format] = made[0]
		}
	}
	return b
}

// TestPackages builds the packages once, reads every .rpm back, and
// installs the .debs on this machine where it can.
func TestPackages(t *testing.T) {
	b := buildPackages(t)
	t.Run("rpm", func(t *testing.T) { testRPMs(t, b) })
	t.Run("deb-install", func(t *testing.T) { testDebInstall(t, b) })
}

// rpmFile is one file an .rpm installs: its mode, and whether it is
// %config(noreplace).
type rpmFile struct {
	mode   int
	config bool
}

// testRPMs checks each .rpm's header and payload digests, its name,
// version and architecture, the files it installs with their modes, and
// that its binary is the one built. No rpm is needed: go-rpmutils reads
// it.
func testRPMs(t *testing.T, b built) {
	rpmArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	tests := []struct {
		name    string
		files   map[string]rpmFile
		scripts []int
	}{
		{"navarch", map[string]rpmFile{
			"/usr/bin/navarch": {mode: 0o755},
			"/usr/share/bash-completion/completions/navarch":    {mode: 0o644},
			"/usr/share/zsh/site-functions/_navarch":            {mode: 0o644},
			"/usr/share/fish/vendor_completions.d/navarch.fish": {mode: 0o644},
		}, nil},
		{"navarch-controlplane", map[string]rpmFile{
			"/usr/bin/navarch-controlplane":                        {mode: 0o755},
			"/usr/lib/systemd/system/navarch-controlplane.service": {mode: 0o644},
			"/etc/default/navarch-controlplane":                    {mode: 0o644, config: true},
			"/etc/navarch/controlplane.yaml":                       {mode: 0o644, config: true},
		}, []int{rpmutils.PREIN, rpmutils.POSTIN, rpmutils.PREUN, rpmutils.POSTUN}},
		{"navarch-agent", map[string]rpmFile{
			"/usr/bin/navarch-agent":                        {mode: 0o755},
			"/usr/lib/systemd/system/navarch-agent.service": {mode: 0o644},
			"/etc/default/navarch-agent":                    {mode: 0o600, config: true},
			"/etc/navarch/agent.yaml":                       {mode: 0o600, config: true},
		}, []int{rpmutils.POSTIN, rpmutils.PREUN, rpmutils.POSTUN}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := b.pkgs[tt.name]["rpm"]
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			hdr, _, err := rpmutils.Verify(f, nil)
			if err != nil {
				t.Fatalf("digests: %v", err)
			}
			nevra, err := hdr.GetNEVRA()
			if err != nil {
				t.Fatal(err)
			}
			if nevra.Name != tt.name || nevra.Version != testDebVersion || nevra.Arch != rpmArch {
				t.Errorf("name-version.arch %s-%s.%s, want %s-%s.%s", nevra.Name, nevra.Version, nevra.Arch, tt.name, testDebVersion, rpmArch)
			}
			infos, err := hdr.GetFiles()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]rpmFile{}
			for _, fi := range infos {
				if fi.Mode()&0o170000 == 0o100000 { // regular files
					noreplace := rpmutils.RPMFILE_CONFIG | rpmutils.RPMFILE_NOREPLACE
					got[fi.Name()] = rpmFile{mode: fi.Mode() & 0o7777, config: fi.Flags()&noreplace == noreplace}
				}
			}
			for p, want := range tt.files {
				if g, ok := got[p]; !ok || g != want {
					t.Errorf("%s: %+v (present %v), want %+v", p, g, ok, want)
				}
			}
			for _, tag := range tt.scripts {
				if s, err := hdr.GetString(tag); err != nil || !strings.HasPrefix(s, "#!/bin/sh") {
					t.Errorf("script tag %d: %v %.40q", tag, err, s)
				}
			}
			if tt.name == "navarch-controlplane" {
				pre, _ := hdr.GetString(rpmutils.PREIN)
				if !strings.Contains(pre, "useradd --system") {
					t.Errorf("%s does not make the navarch user", "%pre")
				}
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			if body := rpmPayloadFile(t, f, "/usr/bin/"+tt.name); !bytes.Equal(body, readFile(t, filepath.Join(b.bin, tt.name))) {
				t.Errorf("/usr/bin/%s in the payload is not the binary built", tt.name)
			}
		})
	}
}

// rpmPayloadFile returns one file's contents from an .rpm's payload.
func rpmPayloadFile(t *testing.T, f io.Reader, name string) []byte {
	t.Helper()
	r, err := rpmutils.ReadRpm(f)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := r.PayloadReaderExtended()
	if err != nil {
		t.Fatal(err)
	}
	for {
		fi, err := pr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s is not in the payload", name)
		}
		if err != nil {
			t.Fatalf("read the payload: %v", err)
		}
		if fi.Name() == name {
			body, err := io.ReadAll(pr)
			if err != nil {
				t.Fatal(err)
			}
			return body
		}
	}
}

// testDebInstall installs the three .debs with dpkg on this machine, then
// purges them. It needs root: on a machine without root or dpkg it skips,
// and under CI it fails instead.
func testDebInstall(t *testing.T, b built) {
	switch {
	case os.Geteuid() != 0:
		need(t, "installing a .deb needs root")
	case !onPath("dpkg"):
		need(t, "dpkg is not installed")
	case !onPath("systemd-analyze"):
		need(t, "systemd-analyze is not installed; `go tool task systemd` installs it")
	}
	for _, name := range []string{"navarch", "navarch-controlplane", "navarch-agent"} {
		if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", name).Output(); err == nil && strings.Contains(string(out), "installed") {
			need(t, name+" is installed on this machine; the test does not replace it")
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("dpkg", "--purge", "navarch", "navarch-controlplane", "navarch-agent").CombinedOutput(); err != nil {
			t.Errorf("purge: %v\n%s", err, out)
		}
	})
	debs := []string{b.pkgs["navarch"]["deb"], b.pkgs["navarch-controlplane"]["deb"], b.pkgs["navarch-agent"]["deb"]}
	run(t, "/", nil, "dpkg", append([]string{"-i"}, debs...)...)

	t.Run("files", func(t *testing.T) {
		tests := []struct {
			path string
			mode os.FileMode
			src  string // the repository's file it must equal
		}{
			{"/usr/bin/navarch", 0o755, ""},
			{"/usr/bin/navarch-controlplane", 0o755, ""},
			{"/usr/bin/navarch-agent", 0o755, ""},
			{"/usr/lib/systemd/system/navarch-controlplane.service", 0o644, "deploy/systemd/navarch-controlplane.service"},
			{"/usr/lib/systemd/system/navarch-agent.service", 0o644, "deploy/systemd/navarch-agent.service"},
			{"/etc/default/navarch-controlplane", 0o644, "deploy/systemd/navarch-controlplane.default"},
			{"/etc/default/navarch-agent", 0o600, "deploy/systemd/navarch-agent.default"},
			{"/etc/navarch/controlplane.yaml", 0o644, "deploy/config/controlplane.yaml"},
			{"/etc/navarch/agent.yaml", 0o600, "deploy/config/agent.yaml"},
			{"/usr/share/bash-completion/completions/navarch", 0o644, ""},
			{"/usr/share/zsh/vendor-completions/_navarch", 0o644, ""},
			{"/usr/share/fish/vendor_completions.d/navarch.fish", 0o644, ""},
			{"/usr/share/doc/navarch-controlplane/copyright", 0o644, "LICENSE"},
		}
		for _, tt := range tests {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if fi.Mode() != tt.mode {
				t.Errorf("%s: mode %v, want %v", tt.path, fi.Mode(), tt.mode)
			}
			if tt.src != "" && !bytes.Equal(readFile(t, tt.path), readFile(t, filepath.Join("..", tt.src))) {
				t.Errorf("%s is not %s", tt.path, tt.src)
			}
		}
		out := run(t, "/", nil, "dpkg-query", "-W", "-f", "${Conffiles}\n", "navarch-controlplane", "navarch-agent")
		for _, p := range []string{"/etc/default/navarch-controlplane", "/etc/navarch/controlplane.yaml", "/etc/default/navarch-agent", "/etc/navarch/agent.yaml"} {
			if !strings.Contains(string(out), " "+p+" ") {
				t.Errorf("%s is not a conffile:\n%s", p, out)
			}
		}
		if v := run(t, "/", nil, "dpkg-query", "-W", "-f", "${Version}", "navarch-controlplane"); string(v) != testDebVersion {
			t.Errorf("installed version %q, want %q", v, testDebVersion)
		}
		if d := run(t, "/", nil, "dpkg-query", "-W", "-f", "${Depends}", "navarch-agent"); !strings.Contains(string(d), "libc6 (>= 2.34)") {
			t.Errorf("navarch-agent depends on %q, not on the glibc its cgo build needs", d)
		}
	})

	t.Run("user", func(t *testing.T) {
		fields := strings.Split(strings.TrimSpace(string(run(t, "/", nil, "getent", "passwd", "navarch"))), ":")
		if len(fields) != 7 {
			t.Fatalf("getent passwd navarch: %q", fields)
		}
		uid, _ := strconv.Atoi(fields[2])
		if uid < 1 || uid >= 1000 {
			t.Errorf("uid %d is not a system user's", uid)
		}
		if fields[5] != "/var/lib/navarch" || !strings.HasSuffix(fields[6], "/nologin") {
			t.Errorf("home %s, shell %s; want /var/lib/navarch and nologin", fields[5], fields[6])
		}
		group := strings.Split(strings.TrimSpace(string(run(t, "/", nil, "getent", "group", "navarch"))), ":")
		if len(group) < 3 || group[2] != fields[3] {
			t.Errorf("the navarch group %q is not the user's (gid %s)", group, fields[3])
		}
	})

	t.Run("units-verify", func(t *testing.T) {
		out, err := exec.Command("systemd-analyze", "verify",
			"/usr/lib/systemd/system/navarch-controlplane.service",
			"/usr/lib/systemd/system/navarch-agent.service").CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
		}
	})

	t.Run("version", func(t *testing.T) {
		for _, d := range daemons {
			out := run(t, "/", nil, "/usr/bin/"+d, "--version")
			if !strings.HasPrefix(string(out), d+" "+testBinVersion+" (") {
				t.Errorf("%s --version: %q", d, out)
			}
		}
	})

	t.Run("agent-config-names-flags", func(t *testing.T) {
		help, _ := exec.Command("/usr/bin/navarch-agent", "--help").CombinedOutput()
		flags := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(string(help), -1) {
			flags[m[1]] = true
		}
		// Every setting the example shows, turned on.
		on := regexp.MustCompile(`(?m)^#([a-z-]+:|  )`).ReplaceAll(readFile(t, "/etc/navarch/agent.yaml"), []byte("$1"))
		var doc map[string]any
		if err := yaml.Unmarshal(on, &doc); err != nil {
			t.Fatal(err)
		}
		for k := range doc {
			if !flags[k] {
				t.Errorf("/etc/navarch/agent.yaml sets %s, which the installed agent has no flag for", k)
			}
		}
	})

	t.Run("reinstall-keeps-config", func(t *testing.T) {
		edited := append(readFile(t, "/etc/navarch/controlplane.yaml"), "# edited by the operator\n"...)
		if err := os.WriteFile("/etc/navarch/controlplane.yaml", edited, 0o644); err != nil {
			t.Fatal(err)
		}
		// The user exists now: the scripts must take it as it is.
		run(t, "/", nil, "dpkg", "-i", b.pkgs["navarch-controlplane"]["deb"])
		if !bytes.Equal(readFile(t, "/etc/navarch/controlplane.yaml"), edited) {
			t.Error("reinstalling replaced the operator's controlplane.yaml")
		}
	})

	t.Run("purge-keeps-data", func(t *testing.T) {
		marker := "/var/lib/navarch/.navarch-package-test"
		if err := os.MkdirAll("/var/lib/navarch", 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			os.Remove(marker)
			os.Remove("/var/lib/navarch") // only if the test's marker was all it held
		})
		run(t, "/", nil, "dpkg", "--purge", "navarch", "navarch-controlplane", "navarch-agent")
		for _, p := range []string{"/usr/bin/navarch", "/usr/bin/navarch-controlplane", "/usr/bin/navarch-agent",
			"/usr/lib/systemd/system/navarch-controlplane.service", "/etc/navarch/controlplane.yaml", "/etc/default/navarch-agent"} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s is still there after the purge (%v)", p, err)
			}
		}
		if _, err := os.Stat(marker); err != nil {
			t.Errorf("the purge removed the control plane's data: %v", err)
		}
		if _, err := exec.Command("getent", "passwd", "navarch").Output(); err != nil {
			t.Error("the purge removed the navarch user, who may still own data")
		}
	})
}

// need skips, or fails under CI, where this machine cannot run the test.
func need(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why + " (under CI this test must run)")
	}
	t.Skip(why)
}

func onPath(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// run runs a command in dir and returns its stdout, failing the test with
// its output when it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
