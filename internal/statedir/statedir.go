// Package statedir says where Navarch keeps its files on this machine by
// default: state in $XDG_STATE_HOME/navarch, else ~/.local/state/navarch,
// and the client's configuration in $XDG_CONFIG_HOME/navarch, else
// ~/.config/navarch. The control plane's data directory defaults to the
// state directory, and clients look there for the control plane's CA when
// none is given; agents keep their identities under it.
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

// ClientConfig is the file where navarch keeps its named contexts:
// $XDG_CONFIG_HOME/navarch/config.yaml, else ~/.config/navarch/config.yaml.
func ClientConfig() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "navarch", "config.yaml")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".config", "navarch", "config.yaml")
	}
	return filepath.Join("navarch-config", "config.yaml")
}
