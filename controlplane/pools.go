package controlplane

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/controlplane/bootstrap"
	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/controlplane/pool"
	"github.com/navarch/navarch/controlplane/pool/autoscale"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/store"
)

// bootstrapper renders the user data of a node a cloud provider launches:
// a join token for that node alone, the CA's pin, and the agent package.
type bootstrapper struct {
	cfg    BootstrapConfig
	server string
	tokens *auth.Tokens
	// ttl bounds the join token's life: the node must join within the
	// provision timeout.
	ttl time.Duration

	mu     sync.Mutex
	caHash string
}

// newBootstrapper returns nil where no bootstrap is configured.
func newBootstrapper(cfg Config, tokens *auth.Tokens) *bootstrapper {
	if !cfg.Bootstrap.On() {
		return nil
	}
	server := cfg.Bootstrap.Server
	if server == "" {
		_, port, _ := net.SplitHostPort(cfg.Listen)
		server = net.JoinHostPort(cfg.TLS.Names[0], port)
	}
	return &bootstrapper{cfg: cfg.Bootstrap, server: server, tokens: tokens, ttl: cfg.ProvisionTimeout.Duration, caHash: cfg.Bootstrap.CAHash}
}

// pinCA sets the pin of the control plane's own CA, unless the operator
// gave one.
func (b *bootstrapper) pinCA(hash string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.caHash == "" {
		b.caHash = hash
	}
}

// userData is the fleet's provider.UserDataFunc; nil without a bootstrap.
func (b *bootstrapper) userData() provider.UserDataFunc {
	if b == nil {
		return nil
	}
	return func(ctx context.Context, nodeID string, labels map[string]string) ([]byte, error) {
		b.mu.Lock()
		pin := b.caHash
		b.mu.Unlock()
		token, err := b.tokens.CreateForNode(ctx, nodeID, b.ttl)
		if err != nil {
			return nil, fmt.Errorf("join token for %s: %w", nodeID, err)
		}
		return bootstrap.CloudConfig(bootstrap.Options{
			NodeID: nodeID, Server: b.server, CAHash: pin, JoinToken: token, Labels: labels,
			PackageURL: b.cfg.PackageURL, PackageSHA256: b.cfg.PackageSHA256, Settings: b.cfg.Settings,
		})
	}
}

// newPools loads the pools over the fleet.
func newPools(ctx context.Context, cfg Config, fl *fleet.Fleet, st store.Store, state *store.State, providers *provider.Registry, o Options) (*pool.Pools, error) {
	q := autoscale.SlurmQueue{Bin: cfg.Slurm.Bin}
	if cfg.Slurm.Conf != "" {
		q.Env = []string{"SLURM_CONF=" + cfg.Slurm.Conf}
	}
	return pool.New(ctx, pool.Options{
		Fleet: fl, Store: st, Providers: providers.Names(), Config: cfg.configPools(), Stored: state.Pools,
		Queue: q, Interval: cfg.PoolInterval.Duration, Clock: o.Clock, Logger: o.Logger,
	})
}

// runPools reconciles the fleet with what the providers run, then starts
// hearing their notices and keeping the pools, until ctx ends.
func (s *Server) runPools(ctx context.Context) {
	s.fleet.Reconcile(ctx, fleet.Unknown(s.cfg.UnknownInstances))
	s.fleet.WatchProviders(ctx)
	s.pools.Run(ctx)
}

// Pools returns the server's pools.
func (s *Server) Pools() *pool.Pools { return s.pools }
