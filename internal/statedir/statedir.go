// Package statedir says where Navarch keeps state on this machine by
// default: $XDG_STATE_HOME/navarch, else ~/.local/state/navarch. The
// control plane's data directory defaults to it, and clients look there
// for the control plane's CA when none is given; agents keep their
// identities under it.
package statedir

import (
	"os"
	"path/filepath"
)

// Base is the default state directory.
func Base() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "navarch")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "navarch")
	}
	return "navarch-data"
}

// CACert is where a control plane with the default data directory keeps
// its CA certificate.
func CACert() string { return filepath.Join(Base(), "pki", "ca.crt") }

// AdminToken is where a control plane with the default data directory
// writes its first admin token.
func AdminToken() string { return filepath.Join(Base(), "admin.token") }

// Agent is the default state directory of the agent of node nodeID, where
// it keeps its key and certificate: one directory per node id, so that
// several simulated agents on one machine keep their identities apart.
func Agent(nodeID string) string { return filepath.Join(Base(), "agent", nodeID) }
