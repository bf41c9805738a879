// Package controlplane is navarch-controlplane: its configuration, and the
// one gRPC server that hosts NodeService for agents and ControlPlaneService
// for operators (package api) over the fleet's state (package fleet), kept
// in a store (the embedded Badger one unless another is given). This
// package only wires the parts together; see docs/architecture.md.
package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/navarch/navarch/controlplane/api"
	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/controlplane/ha"
	"github.com/navarch/navarch/controlplane/metrics"
	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/controlplane/pool"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/local"
	"github.com/navarch/navarch/controlplane/tlsmux"
	"github.com/navarch/navarch/controlplane/webhook"
	"github.com/navarch/navarch/internal/metricsserver"
	"github.com/navarch/navarch/internal/sdnotify"
	"github.com/navarch/navarch/internal/version"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
	badgerstore "github.com/navarch/navarch/store/badger"
)

// Options configures New.
type Options struct {
	// Config is the validated configuration.
	Config Config
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Clock drives intervals and timestamps; nil means the real clock.
	Clock clockwork.Clock
	// Providers are the providers ProvisionNodes may use; see Providers
	// for the ones the configuration enables.
	Providers []provider.Provider
	// Store holds the fleet's durable state; nil opens the embedded Badger
	// store in Config.DataDir. Once New is called the server owns it: it
	// closes it when it stops, or at once if New fails.
	Store store.Store
	// Election is this control plane's part in the election of the
	// leader, set by Run on etcd: operators read its status. nil for a
	// lone control plane.
	Election *ha.Election
}

// Server is a running control plane.
type Server struct {
	cfg       Config
	caFile    string
	clientCAs []*x509.Certificate
	log       *slog.Logger
	store     store.Store
	fleet     *fleet.Fleet
	grpc      *grpc.Server
	health    *health.Server
	providers *provider.Registry
	pools     *pool.Pools
	// tls is the server's TLS configuration; nil for plaintext.
	tls *tls.Config
	// pkg is the agent package the server hands to launched instances;
	// nil when it serves none.
	pkg *agentPackage
	// stopPools ends the pools' reconciler; poolsDone is closed once it
	// has.
	stopPools context.CancelFunc
	poolsDone chan struct{}
	// metrics count what the control plane does, served on the metrics
	// listener when one is configured (metricsServer, else nil).
	metrics       *metrics.Metrics
	metricsServer *metricsserver.Server
	// webhooks send saved node changes and breaker trips to the
	// configured endpoints.
	webhooks *webhook.Dispatcher
	// serving is set while gRPC serves, for /readyz.
	serving atomic.Bool
}

// New opens the store, loads the policy and the fleet, and builds the gRPC
// server. Serve starts it.
func New(ctx context.Context, o Options) (s *Server, err error) {
	if o.Store != nil {
		defer func() {
			if err != nil {
				_ = o.Store.Close()
			}
		}()
	}
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pol := policy.Default()
	if o.Config.PolicyFile != "" {
		var err error
		if pol, err = policy.LoadFile(o.Config.PolicyFile); err != nil {
			return nil, err
		}
	}
	endpoints, err := o.Config.webhookEndpoints()
	if err != nil {
		return nil, err
	}
	st := o.Store
	if st == nil {
		var err error
		st, err = badgerstore.Open(badgerstore.Options{
			Dir:    o.Config.DataDir,
			Limits: o.Config.storeLimits(),
			Logger: log,
		})
		if err != nil {
			return nil, err
		}
	}
	m := metrics.New(metrics.Options{KnownXIDs: pol.KnownXIDs()})
	if o.Election != nil {
		m.ReadElection(o.Election)
	}
	st = m.Store(st)
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	providers := provider.NewRegistry(o.Providers...)
	state, err := st.Load(ctx)
	if err != nil {
		if o.Store == nil {
			_ = st.Close()
		}
		return nil, fmt.Errorf("load state: %w", err)
	}
	hooks, err := webhook.New(webhook.Options{Endpoints: endpoints, Logger: log, Clock: o.Clock})
	if err != nil {
		if o.Store == nil {
			_ = st.Close()
		}
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	defer func() {
		if err != nil {
			hooks.Close()
		}
	}()
	m.WebhookDrops(hooks.Dropped)
	tokens := auth.NewTokens(st, state.Tokens, o.Clock, log)
	adminFile, err := tokens.Bootstrap(ctx, o.Config.DataDir)
	if err != nil {
		if o.Store == nil {
			_ = st.Close()
		}
		return nil, err
	}
	if adminFile != "" {
		log.Info("first start: an admin token was written; keep it safe, and make others with 'navarch token create'", "file", adminFile)
	}
	pkg, err := loadAgentPackage(o.Config.Bootstrap)
	if err != nil {
		if o.Store == nil {
			_ = st.Close()
		}
		return nil, err
	}
	boot := newBootstrapper(o.Config, tokens, pkg)
	fl, err := fleet.New(ctx, fleet.Options{
		UserData:  boot.userData(),
		Config:    o.Config.fleetConfig(),
		Store:     st,
		State:     state,
		Policy:    pol,
		Clock:     o.Clock,
		Logger:    log,
		Providers: providers,
		Observer:  fleetObserver{Metrics: m, hooks: hooks},
		// Nothing is launched before the records are compared with what
		// the providers run (runPools).
		ReconcileAtStart: true,
	})
	if err != nil {
		if o.Store == nil {
			_ = st.Close()
		}
		return nil, err
	}
	m.ReadFleet(fl)
	pools, err := newPools(ctx, o.Config, fl, st, state, providers, Options{Clock: o.Clock, Logger: log})
	if err != nil {
		fl.Close()
		if o.Store == nil {
			_ = st.Close()
		}
		return nil, err
	}
	m.ReadPools(pools)
	s = &Server{cfg: o.Config, log: log, store: st, fleet: fl, health: health.NewServer(), providers: providers, pools: pools, pkg: pkg, metrics: m, webhooks: hooks}
	creds, ca, err := s.transport(o.Clock)
	if err == nil && ca != nil {
		boot.pinCA(ca.CAHash())
		err = s.agentsJoin(ctx, tokens)
	}
	if err != nil {
		fl.Close()
		if o.Store == nil {
			_ = st.Close()
		}
		return nil, err
	}
	// Agents join with a token and call with their own certificate; on a
	// plaintext control plane, or one configured so for a simulator on
	// this machine, they call without one.
	var agents *auth.Agents
	var ids api.Identities
	if ca != nil {
		agents = auth.NewAgents(auth.AgentsOptions{CA: ca, Tokens: tokens, Store: st, Loaded: state.NodeKeys, ClientCAs: s.clientCAs, Awaited: fl.AwaitsAgent, Clock: o.Clock, Logger: log})
		ids = agents
		fl.OnRemove(agents.Forget)
	}
	gate := auth.NewGate(tokens, agents, o.Config.AgentIdentities, log)
	gate.OnRefused(m.AuthRefused)
	codec := api.NewCodec()
	// Every call that changes the fleet or its tokens is recorded, with
	// its result, once the gate has let it in.
	audit := api.NewAudit(fl, log)
	// One line per call, first in the chain so it times and sees every
	// answer the others give.
	requests := api.NewRequestLog(log, fl.Stopping)
	calls := &api.Interceptors{Log: requests, Gate: gate, Audit: audit, Codec: codec, Panics: log}
	grpcMetrics := s.grpcMetrics()
	s.grpc = grpc.NewServer(
		grpc.Creds(creds),
		// gRPC's metrics, outermost, so that they count every answer the
		// interceptors and handlers give. A call the gate refuses at the
		// tap never reaches them: the gate counts it instead, in
		// navarch_auth_refused_total.
		grpc.ChainUnaryInterceptor(grpcMetrics.unary...),
		grpc.ChainStreamInterceptor(grpcMetrics.stream...),
		// Callers are checked as a call's headers arrive, before its
		// request is read.
		grpc.InTapHandle(gate.Tap),
		// Invalid UTF-8 in a request is InvalidArgument naming the field,
		// not the Internal gRPC would answer.
		grpc.ForceServerCodecV2(codec),
		grpc.ChainUnaryInterceptor(calls.Unary),
		grpc.ChainStreamInterceptor(calls.Stream),
		s.readBuffer(),
		grpc.MaxRecvMsgSize(api.MaxRecvMsgBytes),
		grpc.MaxConcurrentStreams(uint32(o.Config.MaxStreamsPerConnection)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// A peer that stops answering pings (a dead host, a suspended
		// console) loses its connection, and with it its long polls and
		// watch queues, instead of waiting for TCP to give up.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	)
	api.RegisterNodeService(s.grpc, fl, ids)
	cpo := api.ControlPlaneOptions{Fleet: fl, Tokens: tokens, Clock: o.Clock, WatchStreamsPerToken: o.Config.WatchStreamsPerToken, Pools: pools, Power: fl}
	if agents != nil {
		cpo.Identities = agents
	}
	if o.Election != nil {
		cpo.Election = o.Election
	}
	api.RegisterControlPlaneService(s.grpc, cpo)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	if err := s.startMetrics(); err != nil {
		fl.Close()
		if o.Store == nil {
			_ = st.Close()
		}
		return nil, err
	}
	return s, nil
}

// agentsJoin gives the local provider's agents a join token of their own,
// new at each start: written to DATA_DIR/local-agents/join.token (0600),
// where the provider reads it as it starts an agent.
func (s *Server) agentsJoin(ctx context.Context, tokens *auth.Tokens) error {
	if !s.cfg.LocalProvider.On() {
		return nil
	}
	token, err := tokens.Issue(ctx, local.JoinTokenName, controlplanev1.Role_ROLE_AGENT)
	if err != nil {
		return fmt.Errorf("local provider's join token: %w", err)
	}
	return auth.WriteSecret(filepath.Join(s.cfg.DataDir, local.JoinTokenFile), token)
}

// CAFile is the certificate of the CA clients must trust, when the control
// plane runs its own; empty when the operator brought the certificate or
// TLS is off.
func (s *Server) CAFile() string { return s.caFile }

// Fleet returns the server's fleet state.
func (s *Server) Fleet() *fleet.Fleet { return s.fleet }

// Serve serves on lis until ctx ends, then shuts down: long polls and
// watchers end, in-flight calls get a few seconds to finish, last-seen
// times are saved and the store is closed.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.fleet.Start(ctx)
	poolCtx, stop := context.WithCancel(ctx)
	s.stopPools, s.poolsDone = stop, make(chan struct{})
	go func() {
		defer close(s.poolsDone)
		s.runPools(poolCtx)
	}()
	for _, svc := range []string{"", nodev1.NodeService_ServiceDesc.ServiceName, controlplanev1.ControlPlaneService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	}
	errc := make(chan error, 1)
	grpcLis := lis
	if s.pkg != nil {
		mux := tlsmux.New(lis, s.tls, s.pkg, s.log)
		defer mux.Close()
		go func() { _ = mux.Serve() }()
		grpcLis = mux.GRPC()
	}
	go func() { errc <- s.grpc.Serve(grpcLis) }()
	s.serving.Store(true)
	s.log.Info("control plane serving", "listen", lis.Addr().String(), "data_dir", s.cfg.DataDir,
		"nodes", s.fleet.Len(), "version", version.String())
	// Under systemd (Type=notify), `systemctl start` returns now.
	if _, err := sdnotify.Ready("serving on " + lis.Addr().String()); err != nil {
		s.log.Warn("telling systemd the control plane is ready", "err", err)
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.shutdown()
	if serveErr != nil && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return fmt.Errorf("serve: %w", serveErr)
	}
	return nil
}

func (s *Server) shutdown() {
	s.log.Info("control plane shutting down")
	_, _ = sdnotify.Stopping()
	s.serving.Store(false)
	s.health.Shutdown()
	s.stopPools()
	<-s.poolsDone
	s.fleet.StopServing()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.grpc.Stop()
	}
	if err := s.providers.Close(); err != nil {
		s.log.Error("closing providers", "err", err)
	}
	s.fleet.Close()
	s.webhooks.Close()
	if err := s.store.Close(); err != nil {
		s.log.Error("closing store", "err", err)
	}
	s.stopMetrics()
}

// Close releases the store and the metrics listener of a server that was
// never served.
func (s *Server) Close() error {
	s.fleet.Close()
	s.webhooks.Close()
	s.stopMetrics()
	return s.store.Close()
}

// fleetObserver is the fleet's observer: the metrics count what was saved,
// and the webhooks send its node changes and breaker trips.
type fleetObserver struct {
	*metrics.Metrics
	hooks *webhook.Dispatcher
}

func (o fleetObserver) NodeChanged(prev, next *fleetv1.Node) { o.hooks.NodeChanged(prev, next) }

func (o fleetObserver) BreakerTripped(s *fleetv1.BreakerStatus) { o.hooks.BreakerTripped(s) }
