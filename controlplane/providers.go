package controlplane

import (
	"log/slog"
	"net"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/local"
)

// Providers builds the providers the configuration enables; their agents
// dial addr, the address the server listens on. A provider that cannot
// start is left out with a warning, so the control plane still serves.
//
// A new provider is a package below controlplane/provider, a section in
// Config, and one entry here.
func Providers(cfg Config, addr string, log *slog.Logger) []provider.Provider {
	builders := []struct {
		name  string
		on    bool
		build func() (provider.Provider, error)
	}{
		{"local", cfg.LocalProvider.On(), func() (provider.Provider, error) {
			return local.Build(cfg.LocalProvider, dialable(addr), cfg.caFile(), cfg.Insecure, cfg.DataDir, log)
		}},
	}
	var out []provider.Provider
	for _, b := range builders {
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
