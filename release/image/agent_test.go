package main

import (
	"bufio"
	"context"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentImage builds the agent's image for this machine's
// architecture from an agent built with cgo, as the release builds it,
// with this machine's glibc; reads it back; and, as root, runs the agent
// inside the image's own file system, where the only libc is the
// image's.
func TestAgentImage(t *testing.T) {
	t.Parallel()
	p, ok := platforms[runtime.GOARCH]
	if !ok {
		t.Skipf("the agent's image is not made for %s", runtime.GOARCH)
	}
	libc := "/lib/" + p.tuple
	bin := buildBinary(t, "navarch-agent", "1")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	interp, _, err := dynamic(data, p.machine)
	if err != nil || interp == "" {
		t.Fatalf("the agent's interpreter: %q, %v", interp, err)
	}
	out := buildImage(t, "agent", "--binary", runtime.GOARCH+"="+bin, "--libc", runtime.GOARCH+"="+libc)
	img := readTarball(t, out, "agent")
	cf := configFile(t, img)
	env := cf.Config.Env

	t.Run("config", func(t *testing.T) {
		c := cf.Config
		if c.User != "0:0" {
			t.Errorf("user %q, want root, 0:0", c.User)
		}
		if want := []string{"/usr/bin/navarch-agent"}; !slices.Equal(c.Entrypoint, want) {
			t.Errorf("entrypoint %q, want %q", c.Entrypoint, want)
		}
		if want := "LD_LIBRARY_PATH=/usr/lib/" + p.tuple + ":/usr/lib64"; !slices.Contains(env, want) {
			t.Errorf("env %q lacks %s", env, want)
		}
		checkLabels(t, c, "navarch-agent", "Apache-2.0 AND LGPL-2.1-or-later")
		if got := c.Labels["io.github.navarch.glibc"]; !glibcLabelShape.MatchString(got) {
			t.Errorf("glibc label %q, want the library's own name and version, and its licence", got)
		}
	})

	files := layerFiles(t, img)
	t.Run("files", func(t *testing.T) {
		tests := []wantFile{
			{name: "binary", path: "usr/bin/navarch-agent", mode: 0o755, same: bin},
			{name: "loader", path: interp[1:], mode: 0o755, same: filepath.Join(libc, path.Base(interp))},
			{name: "passwd", path: "etc/passwd", mode: 0o644, body: "root:x:0:0:root:/root:/sbin/nologin\n"},
			{name: "group", path: "etc/group", mode: 0o644, body: "root:x:0:\n"},
			{name: "ca-certificates", path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: testPEM},
			{name: "tmp", path: "tmp", mode: 0o1777, dir: true},
			{name: "root-home", path: "root", mode: 0o700, dir: true},
			{name: "driver-libs-" + p.tuple, path: "usr/lib/" + p.tuple, mode: 0o755, dir: true},
			{name: "driver-libs-lib64", path: "usr/lib64", mode: 0o755, dir: true},
		}
		for _, lib := range nvmlNeeds {
			host := filepath.Join(libc, lib)
			fi, err := os.Stat(host)
			if err != nil {
				t.Fatal(err)
			}
			tests = append(tests, wantFile{name: lib, path: "lib/" + p.tuple + "/" + lib, mode: int64(fi.Mode().Perm()), same: host})
		}
		checkFiles(t, files, tests)
	})

	t.Run("oci-layout", func(t *testing.T) { checkLayout(t, out, "agent", img) })

	t.Run("runs-in-image", func(t *testing.T) {
		if os.Geteuid() != 0 {
			if os.Getenv("CI") != "" {
				t.Fatal("running the agent inside its image needs root (chroot) under CI")
			}
			t.Skip("running the agent inside its image needs root (chroot); the config and files are checked above")
		}
		root := extract(t, files)
		t.Run("version", func(t *testing.T) {
			got, err := inImage(context.Background(), root, env, "--version").CombinedOutput()
			if err != nil || !strings.HasPrefix(string(got), "navarch-agent "+testBinVersion+" ") {
				t.Fatalf("--version: %v: %q", err, got)
			}
		})
		t.Run("simulated-start", func(t *testing.T) { testSimulatedStart(t, root, env) })
		t.Run("loads-nvml", func(t *testing.T) { testLoadsNVML(t, root, env, p.tuple) })
	})
}

// glibcLabelShape is the io.github.navarch.glibc label's shape, such as
// "Debian GLIBC 2.36-9+deb12u14 (GNU C Library 2.36, LGPL-2.1-or-later)".
var glibcLabelShape = regexp.MustCompile(`^\S.* \(GNU C Library 2\.[0-9]+(\.[0-9]+)?, LGPL-2\.1-or-later\)$`)

// testSimulatedStart starts the agent on simulated GPUs, against a
// control plane that is not there, and stops it once it has found them:
// without NVML, the image is enough to start.
func testSimulatedStart(t *testing.T, root string, env []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := inImage(ctx, root, env, "--simulate", "--gpus", "1", "--insecure", "--server", "127.0.0.1:1",
		"--node-id", "image-test", "--state-dir", "/tmp/agent")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var seen []string
	for sc := bufio.NewScanner(stderr); sc.Scan(); {
		line := sc.Text()
		seen = append(seen, line)
		if strings.Contains(line, `msg="GPUs found"`) {
			if !strings.Contains(line, "count=1") || !strings.Contains(line, "simulated=true") {
				t.Errorf("found other GPUs than one simulated: %s", line)
			}
			return
		}
	}
	t.Fatalf("the agent never said it found its GPUs:\n%s", strings.Join(seen, "\n"))
}

// testLoadsNVML puts a stand-in for the driver's libnvidia-ml.so.1,
// linked as the driver's is, in each directory the NVIDIA container
// toolkit mounts the driver's libraries into, and checks that the agent
// in the image loads it there, with no ld.so.cache, through the image's
// LD_LIBRARY_PATH and glibc. Without it, the agent finds no NVML.
func testLoadsNVML(t *testing.T, root string, env []string, tuple string) {
	fake := filepath.Join(t.TempDir(), "libnvidia-ml.so.1")
	cc := exec.Command("gcc", "-shared", "-fPIC", "-o", fake, "-Wl,-soname,libnvidia-ml.so.1", "-Wl,--no-as-needed",
		// glibc 2.34 and later put libdl, libpthread and librt in libc and
		// link nothing for -ldl; NVML, built against older ones, still
		// needs them by name.
		"testdata/fakenvml.c", "-lm", "-l:libdl.so.2", "-l:libpthread.so.0", "-l:librt.so.1")
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("build the stand-in NVML: %v\n%s", err, out)
	}
	lib, err := os.ReadFile(fake)
	if err != nil {
		t.Fatal(err)
	}
	if _, needed, err := dynamic(lib, platforms[runtime.GOARCH].machine); err != nil || !slices.Equal(slices.Sorted(slices.Values(needed)), nvmlNeeds) {
		t.Fatalf("the stand-in NVML needs %q (%v), want what the driver's needs, %q", needed, err, nvmlNeeds)
	}
	tests := []struct {
		name string
		dir  string
		want string
	}{
		{"none", "", "nvmlInit returned ERROR_LIBRARY_NOT_FOUND"},
		{"usr-lib64", "/usr/lib64", "nvmlInit returned fake NVML: no driver here (kernel driver not loaded)"},
		{"usr-lib-" + tuple, "/usr/lib/" + tuple, "nvmlInit returned fake NVML: no driver here (kernel driver not loaded)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.dir != "" {
				p := filepath.Join(root, tt.dir, "libnvidia-ml.so.1")
				if err := os.WriteFile(p, lib, 0o755); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(p)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := inImage(ctx, root, env, "--insecure", "--server", "127.0.0.1:1",
				"--node-id", "image-test", "--state-dir", "/tmp/agent").CombinedOutput()
			if err == nil || !strings.Contains(string(got), tt.want) {
				t.Fatalf("got %v:\n%s\nwant it to stop saying %q", err, got, tt.want)
			}
		})
	}
}

// inImage runs the image's agent with args, chrooted into root, with the
// image's environment alone: `chroot ROOT /usr/bin/navarch-agent ARGS`.
func inImage(ctx context.Context, root string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/usr/bin/navarch-agent", args...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	return cmd
}

// extract writes the image's files into a new directory, with their
// modes.
func extract(t *testing.T, files map[string]layerFile) string {
	t.Helper()
	root := t.TempDir()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		f := files[name]
		p := filepath.Join(root, name)
		var err error
		if f.hdr.FileInfo().IsDir() {
			err = os.MkdirAll(p, 0o700)
		} else {
			err = os.WriteFile(p, f.body, 0o600)
		}
		if err == nil {
			err = os.Chmod(p, f.hdr.FileInfo().Mode())
		}
		if err != nil {
			t.Fatalf("extract %s: %v", name, err)
		}
	}
	return root
}

// TestGlibcLabel reads the version libc.so.6 names itself by, as it
// prints it when run, out of the library's bytes.
func TestGlibcLabel(t *testing.T) {
	tests := []struct {
		name string
		libc string
		want string
	}{
		{"debian", "\x00GNU C Library (Debian GLIBC 2.36-9+deb12u14) stable release version 2.36.\nCopyright",
			"Debian GLIBC 2.36-9+deb12u14 (GNU C Library 2.36, LGPL-2.1-or-later)"},
		{"ubuntu", "GNU C Library (Ubuntu GLIBC 2.39-0ubuntu8.4) stable release version 2.39.\n",
			"Ubuntu GLIBC 2.39-0ubuntu8.4 (GNU C Library 2.39, LGPL-2.1-or-later)"},
		{"development", "GNU C Library (GNU libc) development release version 2.40.9000.\n",
			"GNU libc (GNU C Library 2.40.9000, LGPL-2.1-or-later)"},
		{"not-glibc", "musl libc (x86_64)\nVersion 1.2.4\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := glibcLabel([]byte(tt.libc))
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("got %q, %v, want %q", got, ok, tt.want)
			}
		})
	}
}
