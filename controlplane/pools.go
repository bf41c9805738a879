package controlplane

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
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

// newBootstrapper returns nil where no bootstrap is configured. With a
// package the control plane serves, instances download it from the
// address they dial.
func newBootstrapper(cfg Config, tokens *auth.Tokens, pkg *agentPackage) *bootstrapper {
	if !cfg.Bootstrap.On() {
		return nil
	}
	server := cfg.Bootstrap.Server
	if server == "" {
		_, port, _ := net.SplitHostPort(cfg.Listen)
		server = net.JoinHostPort(cfg.TLS.Names[0], port)
	}
	b := &bootstrapper{cfg: cfg.Bootstrap, server: server, tokens: tokens, ttl: cfg.ProvisionTimeout.Duration, caHash: cfg.Bootstrap.CAHash}
	if pkg != nil {
		b.cfg.PackageURL = "https://" + server + pkg.path
		b.cfg.PackageSHA256 = pkg.sha256
	}
	return b
}

// agentPackage is the agent's .deb, read once at start and served to
// launched instances as it was then, whose SHA-256 their user data
// carries.
type agentPackage struct {
	path   string // URL path: /packages/NAME
	body   []byte
	sha256 string
	mod    time.Time
}

// maxPackage bounds the package read into memory.
const maxPackage = 512 << 20

// loadAgentPackage reads bootstrap.package_file; nil when none is set.
func loadAgentPackage(b BootstrapConfig) (*agentPackage, error) {
	if b.PackageFile == "" {
		return nil, nil
	}
	f, err := os.Open(b.PackageFile)
	if err != nil {
		return nil, fmt.Errorf("bootstrap.package_file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("bootstrap.package_file: %w", err)
	}
	if !info.Mode().IsRegular() || info.Size() > maxPackage {
		return nil, fmt.Errorf("bootstrap.package_file: %s is not a regular file of at most %d MiB", b.PackageFile, maxPackage>>20)
	}
	body, err := io.ReadAll(io.LimitReader(f, maxPackage))
	if err != nil {
		return nil, fmt.Errorf("bootstrap.package_file: %w", err)
	}
	sum := sha256.Sum256(body)
	p := &agentPackage{path: "/packages/" + url.PathEscape(filepath.Base(b.PackageFile)), body: body, sha256: hex.EncodeToString(sum[:]), mod: info.ModTime()}
	if b.PackageSHA256 != "" && !strings.EqualFold(b.PackageSHA256, p.sha256) {
		return nil, fmt.Errorf("bootstrap.package_sha256: %s is not the SHA-256 of %s (%s)", b.PackageSHA256, b.PackageFile, p.sha256)
	}
	return p, nil
}

// ServeHTTP serves the package at its path, and nothing else.
func (p *agentPackage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != p.path || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.debian.binary-package")
	http.ServeContent(w, r, "", p.mod, bytes.NewReader(p.body))
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
