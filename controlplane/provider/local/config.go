package local

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Config is the local provider's section of the control plane's
// configuration, under the key local_provider.
type Config struct {
	// Enabled offers the provider. It is off unless set: the provider
	// starts processes on the control plane's own machine.
	Enabled bool `yaml:"enabled"`
	// AgentBinary is the navarch-agent to start; empty means the one beside
	// navarch-controlplane, then $PATH.
	AgentBinary string `yaml:"agent_binary"`
	// MaxNodes caps the agents it runs at once.
	MaxNodes int `yaml:"max_nodes"`
	// SimJobs gives the agents' simulated GPUs real job processes, so that
	// drains wait for them and forced drains signal them.
	SimJobs bool `yaml:"sim_jobs"`
	// SimControlDir is a directory every agent reads to steer its
	// simulated node while it runs (navarch-agent --sim-control): a demo
	// or a test writes DIR/utilization to set the GPUs' load and
	// DIR/NODE.faults to inject faults. Empty means none.
	SimControlDir string `yaml:"sim_control_dir"`
	// CACert is the CA certificate the agents trust the control plane
	// with; empty means the control plane's own CA. Set it when the
	// control plane serves a certificate the operator brought.
	CACert string `yaml:"ca_cert"`
}

// DefaultConfig is the section's defaults.
func DefaultConfig() Config { return Config{MaxNodes: 200} }

// On reports whether the provider is offered.
func (c *Config) On() bool { return c.Enabled }

// Validate checks the section; errors name the key within it.
func (c *Config) Validate() error {
	if c.MaxNodes < 1 || c.MaxNodes > 5000 {
		return fmt.Errorf("max_nodes: %d is not within 1–5000", c.MaxNodes)
	}
	return nil
}

// JoinTokenName names the join token the control plane makes for the
// local provider's agents at each start, and JoinTokenFile is where in the
// data directory it writes it (0600) for the provider to read.
const (
	JoinTokenName = "local-provider"
	JoinTokenFile = "local-agents/join.token"
)

// Build starts the provider as configured: its agents dial server, trust
// caCert unless c names another (or speak plaintext with insecure), join
// with the token the control plane writes to DATA_DIR/local-agents/
// join.token, and write their logs under dataDir.
func Build(c Config, server, caCert string, insecure bool, dataDir string, log *slog.Logger) (*Provider, error) {
	bin := c.AgentBinary
	if bin == "" {
		var err error
		if bin, err = FindAgent(); err != nil {
			return nil, err
		}
	}
	return New(Options{
		AgentBinary: bin,
		Server:      server,
		CACert:      cmp.Or(c.CACert, caCert),
		Insecure:    insecure,
		JoinToken: func() (string, error) {
			b, err := os.ReadFile(filepath.Join(dataDir, JoinTokenFile))
			return strings.TrimSpace(string(b)), err
		},
		LogDir:        filepath.Join(dataDir, "local-agents"),
		MaxNodes:      c.MaxNodes,
		SimJobs:       c.SimJobs,
		SimControlDir: c.SimControlDir,
		Logger:        log,
	})
}
