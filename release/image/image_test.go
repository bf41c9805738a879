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

// TestImage builds the image for this machine's architecture from a real
// static control plane, reads it back from the docker tarball and from
// the OCI layout, and runs the binary it holds.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "navarch-controlplane")
	build := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X github.com/navarch/navarch/internal/version.Version=v9.9.9-test",
		"github.com/navarch/navarch/cmd/navarch-controlplane")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the control plane: %v\n%s", err, out)
	}
	certs := filepath.Join(dir, "ca-certificates.crt")
	pem := []byte("-----BEGIN CERTIFICATE-----\nTUlJ\n-----END CERTIFICATE-----\n")
	if err := os.WriteFile(certs, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "dist")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	err := run([]string{
		"--version", "9.9.9-test", "--revision", "0123abcd", "--created", "2026-11-29T16:00:00Z",
		"--ca-certs", certs, "--binary", runtime.GOARCH + "=" + bin, "--out", out,
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(filepath.Join(out, "navarch-controlplane-image_9.9.9-test_linux_"+runtime.GOARCH+".tar"), nil)
	if err != nil {
		t.Fatalf("read the docker tarball: %v", err)
	}

	t.Run("config", func(t *testing.T) {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
			t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
		}
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
		for k, v := range map[string]string{
			"org.opencontainers.image.version":  "9.9.9-test",
			"org.opencontainers.image.revision": "0123abcd",
			"org.opencontainers.image.source":   "https://github.com/navarch/navarch",
			"org.opencontainers.image.licenses": "Apache-2.0",
			"org.opencontainers.image.created":  "2026-11-29T16:00:00Z",
		} {
			if c.Labels[k] != v {
				t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
			}
		}
	})

	files := layerFiles(t, img)
	t.Run("files", func(t *testing.T) {
		tests := []struct {
			name     string
			path     string
			mode     int64
			uid      int
			contains string
		}{
			{"binary", "usr/bin/navarch-controlplane", 0o755, 0, "\x7fELF"},
			{"passwd", "etc/passwd", 0o644, 0, "navarch:x:65532:65532:Navarch control plane:/var/lib/navarch:/sbin/nologin\n"},
			{"group", "etc/group", 0o644, 0, "navarch:x:65532:\n"},
			{"ca-certificates", "etc/ssl/certs/ca-certificates.crt", 0o644, 0, string(pem)},
			{"data-dir", "var/lib/navarch", 0o700, 65532, ""},
			{"tmp", "tmp", 0o1777, 0, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f, ok := files[tt.path]
				if !ok {
					t.Fatalf("%s is not in the layer", tt.path)
				}
				if f.hdr.Mode != tt.mode || f.hdr.Uid != tt.uid || f.hdr.Gid != tt.uid {
					t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", tt.path, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid, tt.mode, tt.uid, tt.uid)
				}
				if !bytes.Contains(f.body, []byte(tt.contains)) {
					t.Errorf("%s lacks %q", tt.path, tt.contains)
				}
			})
		}
	})

	t.Run("binary-runs", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "navarch-controlplane")
		f := files["usr/bin/navarch-controlplane"]
		if err := os.WriteFile(p, f.body, os.FileMode(f.hdr.Mode)); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command(p, "--version").Output()
		if err != nil || !strings.HasPrefix(string(got), "navarch-controlplane v9.9.9-test ") {
			t.Fatalf("--version: %v: %q", err, got)
		}
	})

	t.Run("oci-layout", func(t *testing.T) {
		lp, err := layout.ImageIndexFromPath(filepath.Join(out, "navarch-controlplane-image_9.9.9-test_oci"))
		if err != nil {
			t.Fatal(err)
		}
		top, err := lp.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(top.Manifests) != 1 || top.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "9.9.9-test" {
			t.Fatalf("the layout holds %+v, want one index named 9.9.9-test", top.Manifests)
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
		// A docker tarball keeps the config as it is, but not the
		// manifest: the two are one image when their configs are.
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
	})
}

type layerFile struct {
	hdr  *tar.Header
	body []byte
}

// layerFiles reads the image's flattened file system.
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
