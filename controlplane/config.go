package controlplane

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/controlplane/pki"
	"github.com/navarch/navarch/controlplane/provider/aws"
	"github.com/navarch/navarch/controlplane/provider/gcp"
	"github.com/navarch/navarch/controlplane/provider/lambda"
	"github.com/navarch/navarch/controlplane/provider/local"
	"github.com/navarch/navarch/controlplane/provider/static"
	"github.com/navarch/navarch/internal/logging"
	"github.com/navarch/navarch/internal/memlimit"
	"github.com/navarch/navarch/internal/statedir"
	"github.com/navarch/navarch/internal/yamlfile"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Config is the control plane's configuration. The YAML file uses the yaml
// tags; flags override what the file sets. Zero values mean the documented
// defaults (see Defaults).
type Config struct {
	// Listen is the gRPC listen address.
	Listen string `yaml:"listen"`
	// DataDir holds the Badger store, the CA (pki/) and the first admin
	// token.
	DataDir string `yaml:"data_dir"`
	// Store is where the fleet's state is kept: badger, embedded in
	// DataDir, or etcd, shared by control planes that elect a leader.
	Store string `yaml:"store"`
	// Etcd configures the etcd store; read only with store etcd.
	Etcd EtcdConfig `yaml:"etcd"`
	// Advertise is the HOST:PORT clients reach this control plane at,
	// which the standbys name while it leads; by default the listen
	// address, which must then name a host.
	Advertise string `yaml:"advertise"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text (slog's key=value lines) or json (one object a
	// line).
	LogFormat string `yaml:"log_format"`
	// HeartbeatInterval is how often agents heartbeat.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// HealthReportInterval is how often agents send a full health snapshot.
	HealthReportInterval Duration `yaml:"health_report_interval"`
	// CommandPollTimeout bounds an agent's command long poll.
	CommandPollTimeout Duration `yaml:"command_poll_timeout"`
	// CommandDelivery is "stream" (agents hold one WatchNodeCommands
	// stream open and get commands at once), "long_poll" (agents hold a
	// GetNodeCommands call open, made again every command_poll_timeout) or
	// "heartbeat" (agents fetch commands when a heartbeat says some are
	// pending: no call held open per node).
	CommandDelivery string `yaml:"command_delivery"`
	// StaleAfter is the heartbeat age at which a node turns STALE.
	StaleAfter Duration `yaml:"stale_after"`
	// OfflineAfter is the heartbeat age at which a node turns OFFLINE.
	OfflineAfter Duration `yaml:"offline_after"`
	// ProvisionTimeout is how long a provisioned node may take to register.
	ProvisionTimeout Duration `yaml:"provision_timeout"`
	// TerminatedRetention is how long terminated nodes stay listed.
	TerminatedRetention Duration `yaml:"terminated_retention"`
	// EventRetention is how long health events are kept.
	EventRetention Duration `yaml:"event_retention"`
	// AuditRetention is how long audit entries are kept.
	AuditRetention Duration `yaml:"audit_retention"`
	// EventsPerNode caps the health events kept per node.
	EventsPerNode int `yaml:"events_per_node"`
	// CommandsPerNode caps the finished commands kept per node.
	CommandsPerNode int `yaml:"commands_per_node"`
	// PolicyFile overrides parts of the built-in fault policy.
	PolicyFile string `yaml:"policy_file"`
	// AutoCordon configures automatic cordoning of UNHEALTHY nodes.
	AutoCordon AutoCordonConfig `yaml:"auto_cordon"`
	// WatchBuffer is how many changes may wait for one WatchFleet watcher
	// before it is told to resync.
	WatchBuffer int `yaml:"watch_buffer"`
	// WatchReplay is how many recent changes are kept for watchers that
	// resume from a revision.
	WatchReplay int `yaml:"watch_replay"`
	// WatchStreamsPerToken caps the WatchFleet streams one operator token
	// may hold open at once.
	WatchStreamsPerToken int `yaml:"watch_streams_per_token"`
	// MaxStreamsPerConnection caps the calls one client connection may
	// have under way at once; more wait for a slot.
	MaxStreamsPerConnection int `yaml:"max_streams_per_connection"`
	// LocalProvider configures the "local" provider, which starts simulated
	// agents on this machine.
	LocalProvider local.Config `yaml:"local_provider"`
	// LambdaProvider configures the "lambda" provider: Lambda Cloud
	// instances.
	LambdaProvider lambda.Config `yaml:"lambda_provider"`
	// AWSProvider configures the "aws" provider: EC2 instances.
	AWSProvider aws.Config `yaml:"aws_provider"`
	// GCPProvider configures the "gcp" provider: Compute Engine instances.
	GCPProvider gcp.Config `yaml:"gcp_provider"`
	// StaticProvider configures the "static" provider: listed bare-metal
	// machines powered on and off through their BMCs (Redfish).
	StaticProvider static.Config `yaml:"static_provider"`
	// Cluster names this control plane to its providers: what it launches
	// is tagged with it, and only what carries it is its own.
	Cluster string `yaml:"cluster"`
	// Bootstrap is how instances that cloud providers launch install and
	// start their agent.
	Bootstrap BootstrapConfig `yaml:"bootstrap"`
	// UnknownInstances is what the control plane does at start with an
	// instance a provider runs for this cluster that it has no record of:
	// report (log and audit it), stop, or adopt.
	UnknownInstances string `yaml:"unknown_instances"`
	// Pools are the pools this file defines.
	Pools []PoolConfig `yaml:"pools"`
	// PoolInterval is the time between the pool reconciler's passes.
	PoolInterval Duration `yaml:"pool_interval"`
	// Slurm says where Slurm is, for pools that scale on a queue.
	Slurm SlurmConfig `yaml:"slurm"`
	// PprofListen, when set, serves Go's profiling endpoints
	// (/debug/pprof/) on this address. Keep it on loopback.
	PprofListen string `yaml:"pprof_listen"`
	// MemoryLimit is the Go runtime's soft memory limit: auto (a share of
	// the cgroup's memory limit, else of the machine's memory), a size
	// such as 2GiB, or off. GOMEMLIMIT in the environment wins over it.
	MemoryLimit string `yaml:"memory_limit"`
	// MetricsListen, when set, serves Prometheus metrics (/metrics) and
	// the probes /healthz and /readyz on this address, plain HTTP unless
	// MetricsWebConfig says otherwise.
	MetricsListen string `yaml:"metrics_listen"`
	// MetricsWebConfig is a Prometheus web-config file (TLS, basic
	// authentication) for the metrics listener.
	MetricsWebConfig string `yaml:"metrics_web_config"`
	// TLS configures the server's certificate. TLS is always on unless
	// Insecure is set.
	TLS TLSConfig `yaml:"tls"`
	// Insecure serves plaintext. It is refused unless the listen address
	// is on loopback.
	Insecure bool `yaml:"insecure"`
	// AgentIdentities has every NodeService call present the certificate
	// its agent got when it joined, for the node the call is about. Off
	// is only for a fleet simulator on this machine, and refused unless
	// the listen address is on loopback.
	AgentIdentities bool `yaml:"agent_identities"`
	// Webhooks are HTTPS endpoints sent node lifecycle changes, health
	// changes and breaker trips as signed JSON (docs/webhooks.md).
	Webhooks []WebhookConfig `yaml:"webhooks"`
}

// TLSConfig configures the server's certificate: by default one the
// control plane's own CA (DATA_DIR/pki) issues, or one the operator brings.
type TLSConfig struct {
	// Names are host names and IP addresses clients dial, added to the
	// generated certificate besides the listen host, localhost and
	// loopback.
	Names []string `yaml:"names"`
	// CertFile and KeyFile are a certificate and key the operator brings
	// instead; both or neither. They are read again when they change.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile is a PEM file of the CAs of the operator's own PKI:
	// an agent may present a client certificate one of them signed,
	// whose common name is its node id, instead of joining.
	ClientCAFile string `yaml:"client_ca_file"`
}

// AutoCordonConfig configures automatic cordoning and its circuit breaker.
type AutoCordonConfig struct {
	// Enabled turns automatic cordoning on; nil means on.
	Enabled *bool `yaml:"enabled"`
	// MaxFraction is the share of the fleet (0–1) that may be cordoned
	// automatically within Window before the breaker trips.
	MaxFraction float64 `yaml:"max_fraction"`
	// Window is the breaker's sliding window.
	Window Duration `yaml:"window"`
}

// Duration is a time.Duration written as "10s" in YAML.
type Duration = yamlfile.Duration

// Defaults returns the configuration used where nothing else is set.
func Defaults() Config {
	on := true
	return Config{
		Listen:               "127.0.0.1:50051",
		DataDir:              DefaultDataDir(),
		Store:                StoreBadger,
		Etcd:                 defaultEtcd(),
		LogLevel:             logging.DefaultLevel,
		LogFormat:            logging.DefaultFormat,
		HeartbeatInterval:    Duration{Duration: 10 * time.Second},
		HealthReportInterval: Duration{Duration: 30 * time.Second},
		CommandPollTimeout:   Duration{Duration: 30 * time.Second},
		CommandDelivery:      "stream",
		StaleAfter:           Duration{Duration: 30 * time.Second},
		OfflineAfter:         Duration{Duration: 90 * time.Second},
		ProvisionTimeout:     Duration{Duration: 5 * time.Minute},
		TerminatedRetention:  Duration{Duration: time.Hour},
		EventRetention:       Duration{Duration: 7 * 24 * time.Hour},
		AuditRetention:       Duration{Duration: 90 * 24 * time.Hour},
		EventsPerNode:        500,
		CommandsPerNode:      200,
		AutoCordon:           AutoCordonConfig{Enabled: &on, MaxFraction: 0.5, Window: Duration{Duration: 5 * time.Minute}},
		WatchBuffer:          65536,
		WatchReplay:          16384,
		AgentIdentities:      true,
		WatchStreamsPerToken: 64,
		// An agent holds a long poll and now and then a heartbeat or a
		// report; a fleet simulator multiplexes many nodes on one
		// connection and raises it.
		MaxStreamsPerConnection: 1000,
		LocalProvider:           local.DefaultConfig(),
		LambdaProvider:          lambda.DefaultConfig(),
		AWSProvider:             aws.DefaultConfig(),
		GCPProvider:             gcp.DefaultConfig(),
		StaticProvider:          static.DefaultConfig(),
		UnknownInstances:        string(fleet.UnknownReport),
		PoolInterval:            Duration{Duration: 10 * time.Second},
		MemoryLimit:             memlimit.Auto,
	}
}

// DefaultDataDir is $XDG_STATE_HOME/navarch, falling back to
// ~/.local/state/navarch.
func DefaultDataDir() string { return statedir.Base() }

// LoadConfigFile reads a YAML config on top of the defaults. An unknown key
// or a malformed value is an error that names it.
func LoadConfigFile(path string) (Config, error) {
	cfg := Defaults()
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := yamlfile.Decode(b, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// AutoCordonEnabled reports whether automatic cordoning is on.
func (c *Config) AutoCordonEnabled() bool {
	return c.AutoCordon.Enabled == nil || *c.AutoCordon.Enabled
}

// Validate checks every field and names the first bad one.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q is not HOST:PORT", c.Listen)
	}
	if err := c.checkTransport(); err != nil {
		return err
	}
	if c.PprofListen != "" {
		if _, _, err := net.SplitHostPort(c.PprofListen); err != nil {
			return fmt.Errorf("pprof_listen: %q is not HOST:PORT", c.PprofListen)
		}
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("metrics_listen: %q is not HOST:PORT", c.MetricsListen)
		}
	} else if c.MetricsWebConfig != "" {
		return errors.New("metrics_web_config: set without metrics_listen, so nothing would serve with it")
	}
	if c.DataDir == "" {
		return errors.New("data_dir: must not be empty")
	}
	if err := c.checkStore(); err != nil {
		return err
	}
	if _, err := memlimit.ParseSetting(c.MemoryLimit); err != nil {
		return fmt.Errorf("memory_limit: %w", err)
	}
	switch c.CommandDelivery {
	case "stream", "long_poll", "heartbeat":
	default:
		return fmt.Errorf("command_delivery: %q is not stream, long_poll or heartbeat", c.CommandDelivery)
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log_level: %w", err)
	}
	if _, err := logging.ParseFormat(c.LogFormat); err != nil {
		return fmt.Errorf("log_format: %w", err)
	}
	positive := []struct {
		name string
		d    time.Duration
		min  time.Duration
	}{
		{"heartbeat_interval", c.HeartbeatInterval.Duration, 100 * time.Millisecond},
		{"health_report_interval", c.HealthReportInterval.Duration, 100 * time.Millisecond},
		{"command_poll_timeout", c.CommandPollTimeout.Duration, 100 * time.Millisecond},
		{"stale_after", c.StaleAfter.Duration, 100 * time.Millisecond},
		{"offline_after", c.OfflineAfter.Duration, 100 * time.Millisecond},
		{"provision_timeout", c.ProvisionTimeout.Duration, time.Second},
		{"terminated_retention", c.TerminatedRetention.Duration, time.Second},
		{"event_retention", c.EventRetention.Duration, time.Minute},
		{"audit_retention", c.AuditRetention.Duration, 24 * time.Hour},
		{"auto_cordon.window", c.AutoCordon.Window.Duration, time.Second},
	}
	for _, p := range positive {
		if p.d < p.min {
			return fmt.Errorf("%s: %s is below the minimum of %s", p.name, p.d, p.min)
		}
	}
	if c.StaleAfter.Duration <= c.HeartbeatInterval.Duration {
		return fmt.Errorf("stale_after: %s must be longer than heartbeat_interval (%s)", c.StaleAfter.Duration, c.HeartbeatInterval.Duration)
	}
	if c.OfflineAfter.Duration <= c.StaleAfter.Duration {
		return fmt.Errorf("offline_after: %s must be longer than stale_after (%s)", c.OfflineAfter.Duration, c.StaleAfter.Duration)
	}
	if c.EventsPerNode < 1 || c.EventsPerNode > 100000 {
		return fmt.Errorf("events_per_node: %d is not within 1–100000", c.EventsPerNode)
	}
	if c.CommandsPerNode < 1 || c.CommandsPerNode > 100000 {
		return fmt.Errorf("commands_per_node: %d is not within 1–100000", c.CommandsPerNode)
	}
	if c.AutoCordon.MaxFraction <= 0 || c.AutoCordon.MaxFraction > 1 {
		return fmt.Errorf("auto_cordon.max_fraction: %g is not within (0, 1]", c.AutoCordon.MaxFraction)
	}
	if c.WatchBuffer < 16 {
		return fmt.Errorf("watch_buffer: %d is below the minimum of 16", c.WatchBuffer)
	}
	if err := c.LocalProvider.Validate(); err != nil {
		return fmt.Errorf("local_provider.%w", err)
	}
	if err := c.LambdaProvider.Validate(); err != nil {
		return fmt.Errorf("lambda_provider.%w", err)
	}
	if err := c.AWSProvider.Validate(); err != nil {
		return fmt.Errorf("aws_provider.%w", err)
	}
	if err := c.GCPProvider.Validate(); err != nil {
		return fmt.Errorf("gcp_provider.%w", err)
	}
	if err := c.StaticProvider.Validate(); err != nil {
		return fmt.Errorf("static_provider.%w", err)
	}
	if err := c.checkFleetSettings(c.enabledProviders()); err != nil {
		return err
	}
	if c.WatchStreamsPerToken < 1 {
		return fmt.Errorf("watch_streams_per_token: %d is below the minimum of 1", c.WatchStreamsPerToken)
	}
	if c.MaxStreamsPerConnection < 16 {
		return fmt.Errorf("max_streams_per_connection: %d is below the minimum of 16", c.MaxStreamsPerConnection)
	}
	if c.WatchReplay < 16 {
		return fmt.Errorf("watch_replay: %d is below the minimum of 16", c.WatchReplay)
	}
	return c.checkWebhooks()
}

// fleetConfig is what the fleet needs of the configuration.
func (c *Config) fleetConfig() fleet.Config {
	delivery := nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM
	switch c.CommandDelivery {
	case "long_poll":
		delivery = nodev1.CommandDelivery_COMMAND_DELIVERY_LONG_POLL
	case "heartbeat":
		delivery = nodev1.CommandDelivery_COMMAND_DELIVERY_HEARTBEAT
	}
	return fleet.Config{
		HeartbeatInterval:     c.HeartbeatInterval.Duration,
		HealthReportInterval:  c.HealthReportInterval.Duration,
		CommandPollTimeout:    c.CommandPollTimeout.Duration,
		CommandDelivery:       delivery,
		StaleAfter:            c.StaleAfter.Duration,
		OfflineAfter:          c.OfflineAfter.Duration,
		ProvisionTimeout:      c.ProvisionTimeout.Duration,
		TerminatedRetention:   c.TerminatedRetention.Duration,
		AutoCordon:            c.AutoCordonEnabled(),
		AutoCordonMaxFraction: c.AutoCordon.MaxFraction,
		AutoCordonWindow:      c.AutoCordon.Window.Duration,
		WatchBuffer:           c.WatchBuffer,
		WatchReplay:           c.WatchReplay,
	}
}

// checkTransport checks the TLS settings, and that plaintext is only ever
// served on loopback.
func (c *Config) checkTransport() error {
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: cert_file and key_file go together")
	}
	for i, n := range c.TLS.Names {
		if strings.TrimSpace(n) == "" || strings.ContainsAny(n, " /:") && net.ParseIP(n) == nil {
			return fmt.Errorf("tls.names[%d]: %q is not a host name or an IP address", i, n)
		}
	}
	if !c.AgentIdentities {
		host, _, _ := net.SplitHostPort(c.Listen)
		if !loopback(host) {
			return fmt.Errorf("agent_identities: agents without identities are allowed only on a loopback address, and listen is %s", c.Listen)
		}
	}
	if !c.Insecure {
		return nil
	}
	if c.TLS.CertFile != "" || len(c.TLS.Names) > 0 || c.TLS.ClientCAFile != "" {
		return errors.New("insecure: plaintext was asked for, and tls settings too; drop one")
	}
	host, _, _ := net.SplitHostPort(c.Listen)
	if !loopback(host) {
		return fmt.Errorf("insecure: plaintext is served only on a loopback address, and listen is %s; use TLS (the default) on this address", c.Listen)
	}
	return nil
}

// loopback reports whether host can only be reached from this machine.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serverNames are the names the generated server certificate covers
// besides localhost and loopback: the listen host (or, for a wildcard,
// this machine's name and addresses) and the configured names.
func (c *Config) serverNames() []string {
	var names []string
	host, _, _ := net.SplitHostPort(c.Listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil {
			names = append(names, h)
		}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
					names = append(names, ipn.IP.String())
				}
			}
		}
	} else {
		names = append(names, host)
	}
	// On etcd, clients sent by a standby to this control plane dial its
	// advertised address and check the certificate against that host.
	if adv, err := c.advertise(); c.Store == StoreEtcd && err == nil {
		if h, _, err := net.SplitHostPort(adv); err == nil && h != host {
			names = append(names, h)
		}
	}
	return append(names, c.TLS.Names...)
}

// caFile is the CA certificate clients on this machine trust the control
// plane with: its own CA's, unless the operator brought the certificate or
// TLS is off.
func (c *Config) caFile() string {
	if c.Insecure || c.TLS.CertFile != "" {
		return ""
	}
	return filepath.Join(c.DataDir, "pki", pki.CACertFile)
}
