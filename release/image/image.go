package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// caCerts is where every image keeps its CA bundle, and where the build
// machine's is read from by default.
const caCerts = "/etc/ssl/certs/ca-certificates.crt"

// Options describe one component's image for one architecture.
type Options struct {
	// Component is a key of components: controlplane or agent.
	Component string
	// Arch is the Go architecture the binary was built for.
	Arch string
	// Binary is the component's navarch-COMPONENT, built for Arch.
	Binary string
	// Libc is the directory of the glibc the binary was linked against,
	// loader included; the agent's image carries it.
	Libc string
	// CACerts is a PEM bundle of the CAs to trust over HTTPS.
	CACerts string
	// Version, Revision and Source go into the OCI labels.
	Version, Revision, Source string
	// Created is the build's time: the image's and every file's.
	Created time.Time
}

// component is what one binary's image holds beyond what every image
// does (the binary as /usr/bin/NAME, the CA bundle, root's account and a
// /tmp), and how it runs.
type component struct {
	description string
	// licenses is an SPDX expression covering everything in the image.
	licenses string
	// accounts are the users besides root, each with a group of its own.
	accounts []account
	files    []file
	// config is the image's run config; Build adds the OCI labels.
	config v1.Config
	// labels are added to the OCI ones.
	labels map[string]string
}

// components make each component's image contents from its options and
// its binary's bytes. The image is of navarch-KEY.
var components = map[string]func(o Options, binary []byte) (component, error){
	"controlplane": controlPlane,
	"agent":        agent,
}

// account is a line of /etc/passwd and one of /etc/group.
type account struct {
	name  string
	id    int
	gecos string
	home  string
}

// file is one entry of the layer. Directories a file needs that are not
// listed are made root's, 0755.
type file struct {
	name     string // absolute
	mode     int64
	owner    int
	contents []byte
	dir      bool
}

// Build makes the image: one layer on nothing.
func Build(o Options) (v1.Image, error) {
	makeComponent, ok := components[o.Component]
	if !ok {
		return nil, fmt.Errorf("no component %q: want one of %s", o.Component, strings.Join(slices.Sorted(maps.Keys(components)), ", "))
	}
	name := "navarch-" + o.Component
	binary, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("read %s's binary: %w", name, err)
	}
	certs, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("read the CA certificates: %w", err)
	}
	c, err := makeComponent(o, binary)
	if err != nil {
		return nil, err
	}
	passwd, group := accountFiles(c.accounts)
	files := append([]file{
		{name: "/usr/bin/" + name, mode: 0o755, contents: binary},
		{name: caCerts, mode: 0o644, contents: certs},
		{name: "/etc/passwd", mode: 0o644, contents: passwd},
		{name: "/etc/group", mode: 0o644, contents: group},
		{name: "/tmp", mode: 0o1777, dir: true},
	}, c.files...)
	layerTar, err := layerTar(files, o.Created)
	if err != nil {
		return nil, fmt.Errorf("write the layer: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("compress the layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		History:   v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "release/image", Comment: name + " " + o.Version},
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
	cf.Config = c.config
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       name,
		"org.opencontainers.image.description": c.description,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.licenses":    c.licenses,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
	maps.Copy(cf.Config.Labels, c.labels)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set the image config: %w", err)
	}
	return img, nil
}

// accountFiles writes /etc/passwd and /etc/group: root, then accounts.
func accountFiles(accounts []account) (passwd, group []byte) {
	var p, g strings.Builder
	for _, a := range append([]account{{name: "root", gecos: "root", home: "/root"}}, accounts...) {
		fmt.Fprintf(&p, "%s:x:%d:%d:%s:%s:/sbin/nologin\n", a.name, a.id, a.id, a.gecos, a.home)
		fmt.Fprintf(&g, "%s:x:%d:\n", a.name, a.id)
	}
	return []byte(p.String()), []byte(g.String())
}

// layerTar writes files, and the directories they need, in name order.
func layerTar(files []file, mtime time.Time) ([]byte, error) {
	byName := map[string]file{}
	for _, f := range files {
		if _, dup := byName[f.name]; dup {
			return nil, fmt.Errorf("%s is in the layer twice", f.name)
		}
		byName[f.name] = f
	}
	for _, f := range files {
		for dir := path.Dir(f.name); dir != "/"; dir = path.Dir(dir) {
			if _, ok := byName[dir]; !ok {
				byName[dir] = file{name: dir, mode: 0o755, dir: true}
			}
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		f := byName[name]
		h := &tar.Header{
			Name: strings.TrimPrefix(name, "/"), Mode: f.mode, Uid: f.owner, Gid: f.owner,
			ModTime: mtime.Truncate(time.Second), Typeflag: tar.TypeReg, Size: int64(len(f.contents)),
		}
		if f.dir {
			h.Name += "/"
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if _, err := tw.Write(f.contents); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
