package controlplane

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/aws"
	"github.com/navarch/navarch/controlplane/provider/gcp"
	"github.com/navarch/navarch/controlplane/provider/lambda"
	"github.com/navarch/navarch/controlplane/provider/local"
	"github.com/navarch/navarch/controlplane/provider/static"
)

// Providers builds the providers the configuration enables; their agents
// dial addr, the address the server listens on. A provider that cannot
// start is left out with a warning, so the control plane still serves.
//
// A new provider is a package below controlplane/provider, a section in
// Config, and one entry here.
func Providers(cfg Config, addr string, log *slog.Logger) []provider.Provider {
	var out []provider.Provider
	for _, b := range cfg.builders(addr, log) {
		if !b.on {
			continue
		}
		p, err := b.build()
		if err != nil {
			log.Warn(b.name+" provider unavailable", "err", err)
			continue
		}
		out = append(out, p)
	}
	return out
}

type builder struct {
	name  string
	on    bool
	build func() (provider.Provider, error)
}

// builders are every provider, whether the configuration enables it, and
// how to build it.
func (c *Config) builders(addr string, log *slog.Logger) []builder {
	env := provider.Env{Cluster: c.Cluster, Logger: log}
	// Each returns a nil interface, not a nil pointer, when it fails.
	return []builder{
		{"local", c.LocalProvider.On(), func() (provider.Provider, error) {
			return local.Build(c.LocalProvider, dialable(addr), c.caFile(), c.Insecure, c.DataDir, log)
		}},
		{"lambda", c.LambdaProvider.On(), func() (provider.Provider, error) {
			p, err := lambda.Build(c.LambdaProvider, env)
			if err != nil {
				return nil, fmt.Errorf("lambda_provider.%w", err)
			}
			return p, nil
		}},
		{"aws", c.AWSProvider.On(), func() (provider.Provider, error) {
			p, err := aws.Build(c.AWSProvider, env)
			if err != nil {
				return nil, fmt.Errorf("aws_provider.%w", err)
			}
			return p, nil
		}},
		{"gcp", c.GCPProvider.On(), func() (provider.Provider, error) {
			p, err := gcp.Build(c.GCPProvider, env)
			if err != nil {
				return nil, fmt.Errorf("gcp_provider.%w", err)
			}
			return p, nil
		}},
		{"static", c.StaticProvider.On(), func() (provider.Provider, error) {
			p, err := static.Build(c.StaticProvider, env)
			if err != nil {
				return nil, fmt.Errorf("static_provider.%w", err)
			}
			return p, nil
		}},
	}
}

// enabledProviders names the providers the configuration enables.
func (c *Config) enabledProviders() []string {
	var out []string
	for _, b := range c.builders("", nil) {
		if b.on {
			out = append(out, b.name)
		}
	}
	return out
}

// dialable turns a listen address into one a local agent can dial: a
// wildcard host becomes loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
