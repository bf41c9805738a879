// Command image builds Navarch's container images without a Docker
// daemon, with go-containerregistry, one component at a time:
//
//   - controlplane: from scratch, the statically linked control plane,
//     the build machine's CA certificates (for webhooks over HTTPS), an
//     /etc/passwd naming the non-root navarch user it runs as, and
//     /var/lib/navarch as its data volume;
//   - agent: the agent, built with cgo for NVML, with the glibc it was
//     linked against and what the driver's libnvidia-ml.so.1 needs of
//     it, taken from --libc (the build machine's, or Debian's cross libc
//     for arm64), CA certificates and root's account; it finds the
//     driver's libraries where the NVIDIA container toolkit mounts them.
//
// `go tool task release` runs it once for each:
//
//	go run ./release/image --component agent --version 1.2.3 --revision SHA \
//	    --created 2026-11-29T16:00:00Z --out dist \
//	    --binary amd64=PATH --libc amd64=/lib/x86_64-linux-gnu \
//	    --binary arm64=PATH --libc arm64=/usr/aarch64-linux-gnu/lib
//
// It writes OUT/navarch-COMPONENT-image_VERSION_oci, an OCI layout whose
// one entry is the index of every architecture given (what `crane push`
// sends to a registry), and OUT/navarch-COMPONENT-image_VERSION_linux_ARCH.tar,
// one `docker load`-able tarball per architecture, tagged
// navarch-COMPONENT:VERSION.
package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

// archPaths collects a repeatable ARCH=PATH flag.
type archPaths map[string]string

func (b archPaths) String() string { return fmt.Sprint(map[string]string(b)) }

func (b archPaths) Set(v string) error {
	arch, path, ok := strings.Cut(v, "=")
	if !ok || arch == "" || path == "" {
		return fmt.Errorf("%q is not ARCH=PATH", v)
	}
	b[arch] = path
	return nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	comp := fs.String("component", "", "the `COMPONENT` whose image to build: controlplane or agent")
	bins, libcs := archPaths{}, archPaths{}
	fs.Var(bins, "binary", "`ARCH=PATH` of the component's binary; repeatable, one per architecture")
	fs.Var(libcs, "libc", "`ARCH=DIR` of the glibc the agent was linked against, its loader included; one per --binary")
	version := fs.String("version", "dev", "the `VERSION` the labels and the tag name")
	revision := fs.String("revision", "", "the git `COMMIT` built")
	source := fs.String("source", "https://github.com/navarch/navarch", "the source repository's `URL`")
	created := fs.String("created", "", "the build's `TIME` (RFC 3339)")
	certs := fs.String("ca-certs", caCerts, "PEM `FILE` of CA certificates to put in the image")
	out := fs.String("out", "dist", "`DIR` to write the layout and the tarballs into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *comp == "" {
		return errors.New("no --component given")
	}
	if len(bins) == 0 {
		return errors.New("no --binary given")
	}
	for arch := range libcs {
		if _, ok := bins[arch]; !ok {
			return fmt.Errorf("--libc %s: no --binary for %s", arch, arch)
		}
	}
	when, err := time.Parse(time.RFC3339, *created)
	if err != nil {
		return fmt.Errorf("--created: %w", err)
	}
	tag, err := name.NewTag("navarch-" + *comp + ":" + *version)
	if err != nil {
		return fmt.Errorf("--version: %w", err)
	}
	prefix := filepath.Join(*out, "navarch-"+*comp+"-image_"+*version)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range slices.Sorted(maps.Keys(bins)) {
		img, err := Build(Options{
			Component: *comp, Arch: arch, Binary: bins[arch], Libc: libcs[arch], CACerts: *certs,
			Version: *version, Revision: *revision, Source: *source, Created: when,
		})
		if err != nil {
			return fmt.Errorf("%s: %w", arch, err)
		}
		if err := tarball.WriteToFile(prefix+"_linux_"+arch+".tar", tag, img); err != nil {
			return fmt.Errorf("%s: write the docker tarball: %w", arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	dir := prefix + "_oci"
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write the OCI layout: %w", err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": *version,
	})); err != nil {
		return fmt.Errorf("write the image index: %w", err)
	}
	return nil
}
