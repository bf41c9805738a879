package main

import (
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The control plane image's fixed shape, which docs/install.md's docker
// run line relies on.
const (
	dataDir = "/var/lib/navarch"
	port    = "50051"
	// uid and gid of the navarch user: distroless's nonroot, so volumes
	// prepared for those images fit this one.
	uid = 65532
)

// controlPlane is navarch-controlplane's image: the static binary alone
// (nothing to load), run as the non-root navarch user, with its data
// directory as a volume. The CA bundle is for webhooks over HTTPS.
func controlPlane(o Options, _ []byte) (component, error) {
	if o.Libc != "" {
		return component{}, errors.New("the control plane is static: it takes no --libc")
	}
	return component{
		description: "Navarch control plane for GPU fleets",
		licenses:    "Apache-2.0",
		accounts:    []account{{name: "navarch", id: uid, gecos: "Navarch control plane", home: dataDir}},
		files: []file{
			// The store, its CA and the admin token: the navarch user's alone.
			{name: dataDir, mode: 0o700, owner: uid, dir: true},
		},
		config: v1.Config{
			// Numeric, so that Kubernetes' runAsNonRoot can check it.
			User:       fmt.Sprintf("%d:%d", uid, uid),
			Entrypoint: []string{"/usr/bin/navarch-controlplane", "--data-dir", dataDir, "--listen", "0.0.0.0:" + port},
			Env:        []string{"PATH=/usr/bin", "HOME=" + dataDir},
			WorkingDir: dataDir,
			ExposedPorts: map[string]struct{}{
				port + "/tcp": {},
			},
			Volumes: map[string]struct{}{dataDir: {}},
		},
	}, nil
}
