package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The version the test's binaries and images carry.
const (
	testVersion    = "9.9.9-test"
	testBinVersion = "v" + testVersion
	testPEM        = "-----BEGIN CERTIFICATE-----\nTUlJ\n-----END CERTIFICATE-----\n"
)

// TestControlPlaneImage builds the control plane's image for this
// machine's architecture from a real static control plane, reads it back
// from the docker tarball and from the OCI layout, and runs the binary it
// holds.
func TestControlPlaneImage(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t, "navarch-controlplane", "0")
	out := buildImage(t, "controlplane", "--binary", runtime.GOARCH+"="+bin)
	img := readTarball(t, out, "controlplane")

	t.Run("config", func(t *testing.T) {
		cf := configFile(t, img)
		c := cf.Config
		if c.User != "65532:65532" {
			t.Errorf("user %q, want the navarch user 65532:65532", c.User)
		}
		want := []string{"/usr/bin/navarch-controlplane", "--data-dir", "/var/lib/navarch", "--listen", "0.0.0.0:50051"}
		if !slices.Equal(c.Entrypoint, want) {
			t.Errorf("entrypoint %q, want %q", c.Entrypoint, want)
		}
		if _, ok := c.ExposedPorts["50051/tcp"]; !ok || len(c.ExposedPorts) != 1 {
			t.Errorf("exposed ports %v, want 50051/tcp", c.ExposedPorts)
		}
		if _, ok := c.Volumes["/var/lib/navarch"]; !ok || len(c.Volumes) != 1 {
			t.Errorf("volumes %v, want /var/lib/navarch", c.Volumes)
		}
		checkLabels(t, c, "navarch-controlplane", "Apache-2.0")
	})

	files := layerFiles(t, img)
	t.Run("files", func(t *testing.T) {
		checkFiles(t, files, []wantFile{
			{name: "binary", path: "usr/bin/navarch-controlplane", mode: 0o755, same: bin},
			{name: "passwd", path: "etc/passwd", mode: 0o644, body: "root:x:0:0:root:/root:/sbin/nologin\nnavarch:x:65532:65532:Navarch control plane:/var/lib/navarch:/sbin/nologin\n"},
			{name: "group", path: "etc/group", mode: 0o644, body: "root:x:0:\nnavarch:x:65532:\n"},
			{name: "ca-certificates", path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: testPEM},
			{name: "data-dir", path: "var/lib/navarch", mode: 0o700, uid: 65532, dir: true},
			{name: "tmp", path: "tmp", mode: 0o1777, dir: true},
			{name: "parent-dir", path: "var/lib", mode: 0o755, dir: true},
		})
	})

	t.Run("binary-runs", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "navarch-controlplane")
		f := files["usr/bin/navarch-controlplane"]
		if err := os.WriteFile(p, f.body, os.FileMode(f.hdr.Mode)); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command(p, "--version").Output()
		if err != nil || !strings.HasPrefix(string(got), "navarch-controlplane "+testBinVersion+" ") {
			t.Fatalf("--version: %v: %q", err, got)
		}
	})

	t.Run("oci-layout", func(t *testing.T) { checkLayout(t, out, "controlplane", img) })
}

// TestRunRefuses: wrong flags and inputs are refused with what is wrong,
// rather than made into an image that cannot run.
func TestRunRefuses(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "navarch-agent")
	if err := os.WriteFile(bin, []byte("not ELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	common := []string{"--created", "2026-11-29T16:00:00Z", "--ca-certs", "/dev/null", "--out", dir}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no-component", []string{"--binary", "amd64=" + bin}, "no --component given"},
		{"unknown-component", []string{"--component", "console", "--binary", "amd64=" + bin}, `no component "console": want one of agent, controlplane`},
		{"no-binary", []string{"--component", "agent"}, "no --binary given"},
		{"libc-without-binary", []string{"--component", "agent", "--binary", "amd64=" + bin, "--libc", "arm64=/lib"}, "--libc arm64: no --binary for arm64"},
		{"agent-without-libc", []string{"--component", "agent", "--binary", "amd64=" + bin}, "the agent needs --libc"},
		{"agent-not-elf", []string{"--component", "agent", "--binary", "amd64=" + bin, "--libc", "amd64=/lib"}, "read the agent's binary"},
		{"agent-unknown-arch", []string{"--component", "agent", "--binary", "riscv64=" + bin, "--libc", "riscv64=/lib"}, "not made for riscv64"},
		{"controlplane-with-libc", []string{"--component", "controlplane", "--binary", "amd64=" + bin, "--libc", "amd64=/lib"}, "takes no --libc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(append(slices.Clone(common), tt.args...))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// buildBinary builds cmd/NAME for this machine with the test's version,
// cgo on or off as the release builds it, into a directory of the test's.
func buildBinary(t *testing.T, name, cgo string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-trimpath", "-o", bin,
		"-ldflags", "-X github.com/navarch/navarch/internal/version.Version="+testBinVersion,
		"github.com/navarch/navarch/cmd/"+name)
	build.Env = append(os.Environ(), "CGO_ENABLED="+cgo)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	return bin
}

// buildImage runs the program for component with the test's version,
// revision, time and CA bundle, and returns the directory it wrote.
func buildImage(t *testing.T, component string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	certs := filepath.Join(dir, "ca-certificates.crt")
	if err := os.WriteFile(certs, []byte(testPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "dist")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	err := run(append([]string{
		"--component", component, "--version", testVersion, "--revision", "0123abcd",
		"--created", "2026-11-29T16:00:00Z", "--ca-certs", certs, "--out", out,
	}, args...))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readTarball reads back this architecture's docker tarball.
func readTarball(t *testing.T, out, component string) v1.Image {
	t.Helper()
	p := filepath.Join(out, "navarch-"+component+"-image_"+testVersion+"_linux_"+runtime.GOARCH+".tar")
	img, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		t.Fatalf("read the docker tarball: %v", err)
	}
	return img
}

// configFile reads the image's config and checks its platform.
func configFile(t *testing.T, img v1.Image) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	return cf
}

// checkLabels checks the OCI labels every image carries.
func checkLabels(t *testing.T, c v1.Config, title, licenses string) {
	t.Helper()
	for k, v := range map[string]string{
		"org.opencontainers.image.title":    title,
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.revision": "0123abcd",
		"org.opencontainers.image.source":   "https://github.com/navarch/navarch",
		"org.opencontainers.image.licenses": licenses,
		"org.opencontainers.image.created":  "2026-11-29T16:00:00Z",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
}

// wantFile is a file or directory an image must hold: its mode and
// owner, and its contents, given or those of a file on this machine.
type wantFile struct {
	name string
	path string
	mode int64
	uid  int
	body string
	same string
	dir  bool
}

func checkFiles(t *testing.T, files map[string]layerFile, tests []wantFile) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ok := files[tt.path]
			if !ok {
				t.Fatalf("%s is not in the layer", tt.path)
			}
			if f.hdr.Mode != tt.mode || f.hdr.Uid != tt.uid || f.hdr.Gid != tt.uid {
				t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", tt.path, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, tt.mode, tt.uid, tt.uid)
			}
			if (f.hdr.Typeflag == tar.TypeDir) != tt.dir {
				t.Errorf("%s: type %c", tt.path, f.hdr.Typeflag)
			}
			want := []byte(tt.body)
			if tt.same != "" {
				var err error
				if want, err = os.ReadFile(tt.same); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(f.body, want) {
				t.Errorf("%s holds %d bytes that are not the %d wanted (%.40q)", tt.path, len(f.body), len(want), f.body)
			}
		})
	}
}

// checkLayout reads the OCI layout back: one index, named by the
// version, listing this architecture's image, which is the tarball's.
func checkLayout(t *testing.T, out, component string, img v1.Image) {
	t.Helper()
	lp, err := layout.ImageIndexFromPath(filepath.Join(out, "navarch-"+component+"-image_"+testVersion+"_oci"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 || top.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != testVersion {
		t.Fatalf("the layout holds %+v, want one index named %s", top.Manifests, testVersion)
	}
	idx, err := lp.ImageIndex(top.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || !im.Manifests[0].Platform.Equals(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}) {
		t.Fatalf("the index lists %+v, want linux/%s", im.Manifests, runtime.GOARCH)
	}
	// A docker tarball keeps the config as it is, but not the manifest:
	// the two are one image when their configs are.
	li, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, err := li.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("the layout's image has config %s, the tarball's %s", got, want)
	}
}

type layerFile struct {
	hdr  *tar.Header
	body []byte
}

// layerFiles reads the image's flattened file system, by path without
// a leading or trailing slash.
func layerFiles(t *testing.T, img v1.Image) map[string]layerFile {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	files := map[string]layerFile{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatalf("read the layer: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = layerFile{hdr: h, body: body}
	}
}
