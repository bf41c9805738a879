package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed shape, which docs/install.md's docker run line
// relies on.
const (
	binaryPath = "/usr/bin/navarch-controlplane"
	dataDir    = "/var/lib/navarch"
	caCerts    = "/etc/ssl/certs/ca-certificates.crt"
	port       = "50051"
	// uid and gid of the navarch user: distroless's nonroot, so volumes
	// prepared for those images fit this one.
	uid = 65532
)

// Options describe one architecture's image.
type Options struct {
	// Arch is the Go architecture the binary was built for.
	Arch string
	// Binary is the statically linked navarch-controlplane.
	Binary string
	// CACerts is a PEM bundle of the CAs webhooks over HTTPS are checked
	// against.
	CACerts string
	// Version, Revision and Source go into the OCI labels.
	Version, Revision, Source string
	// Created is the build's time: the image's and every file's.
	Created time.Time
}

// Build makes the image: one layer on nothing, running as the navarch
// user.
func Build(o Options) (v1.Image, error) {
	binary, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("read the control plane's binary: %w", err)
	}
	certs, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("read the CA certificates: %w", err)
	}
	layerTar, err := rootFS(binary, certs, o.Created)
	if err != nil {
		return nil, fmt.Errorf("write the layer: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("compress the layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		History:   v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "release/image", Comment: "navarch-controlplane " + o.Version},
		MediaType: types.OCILayer,
	})
	if err != nil {
		return nil, fmt.Errorf("add the layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read the image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{
		// Numeric, so that Kubernetes' runAsNonRoot can check it.
		User:       fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint: []string{binaryPath, "--data-dir", dataDir, "--listen", "0.0.0.0:" + port},
		Env:        []string{"PATH=/usr/bin", "HOME=" + dataDir},
		WorkingDir: dataDir,
		ExposedPorts: map[string]struct{}{
			port + "/tcp": {},
		},
		Volumes: map[string]struct{}{dataDir: {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "navarch-controlplane",
			"org.opencontainers.image.description": "Navarch control plane for GPU fleets",
			"org.opencontainers.image.version":     o.Version,
			"org.opencontainers.image.revision":    o.Revision,
			"org.opencontainers.image.source":      o.Source,
			"org.opencontainers.image.licenses":    "Apache-2.0",
			"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
		},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set the image config: %w", err)
	}
	return img, nil
}

// rootFS is the layer's tar: the binary, the CA bundle, the navarch user
// and its data directory, and a /tmp.
func rootFS(binary, certs []byte, mtime time.Time) ([]byte, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnavarch:x:%d:%d:Navarch control plane:%s:/sbin/nologin\n", uid, uid, dataDir)
	group := fmt.Sprintf("root:x:0:\nnavarch:x:%d:\n", uid)
	entries := []struct {
		name     string
		mode     int64
		owner    int
		contents []byte
		dir      bool
	}{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, contents: []byte(group)},
		{name: "etc/passwd", mode: 0o644, contents: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: caCerts[1:], mode: 0o644, contents: certs},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/bin/", mode: 0o755, dir: true},
		{name: binaryPath[1:], mode: 0o755, contents: binary},
		{name: "var/", mode: 0o755, dir: true},
		{name: "var/lib/", mode: 0o755, dir: true},
		// The store, its CA and the admin token: the navarch user's alone.
		{name: dataDir[1:] + "/", mode: 0o700, owner: uid, dir: true},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.owner, Gid: e.owner,
			ModTime: mtime.Truncate(time.Second), Typeflag: tar.TypeReg, Size: int64(len(e.contents)),
		}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		if _, err := tw.Write(e.contents); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
