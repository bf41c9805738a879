// Package release holds how Navarch's releases are made beyond `go
// build`: the .deb and .rpm packages' definitions and maintainer scripts
// (nfpm/), and the control plane's and the agent's container images
// (image/). The
// Taskfile's release task puts them together; the tests here build the
// packages for this machine, read the .rpm back and install the .deb.
package release
