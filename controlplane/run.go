package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/navarch/navarch/controlplane/ha"
	"github.com/navarch/navarch/controlplane/metrics"
	"github.com/navarch/navarch/internal/metricsserver"
	"github.com/navarch/navarch/internal/sdnotify"
	"github.com/navarch/navarch/internal/version"
	etcdstore "github.com/navarch/navarch/store/etcd"
)

// ErrLostLead is returned by Run when this control plane led and lost its
// lease: its writes are fenced off from then on, so it stopped at once.
var ErrLostLead = errors.New("lost the lead: the lease with etcd ended")

// Run serves the control plane on lis until ctx ends. With the Badger
// store it is New and Serve. With etcd it takes part in the election:
// as a standby it answers every call with the leader's address, and once
// it leads it loads the fleet from etcd and serves it, every write fenced
// by the election, until ctx ends or the lease is lost (ErrLostLead).
// serving, when not nil, is told of the server before it serves.
func Run(ctx context.Context, o Options, lis net.Listener, serving func(*Server)) error {
	if o.Config.Store != StoreEtcd || o.Store != nil {
		srv, err := New(ctx, o)
		if err != nil {
			_ = lis.Close()
			return err
		}
		if serving != nil {
			serving(srv)
		}
		return srv.Serve(ctx, lis)
	}
	return runElected(ctx, o, lis, serving)
}

// runElected is Run on etcd.
func runElected(ctx context.Context, o Options, lis net.Listener, serving func(*Server)) error {
	if err := o.Config.Validate(); err != nil {
		_ = lis.Close()
		return fmt.Errorf("config: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		o.Logger = log
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	prefix := o.Config.etcdPrefix()
	handoff := ha.NewHandoff(lis)
	defer handoff.Close()
	addr, _ := o.Config.advertise()
	eo, err := o.Config.etcdOptions()
	if err != nil {
		return err
	}
	// The fence holds nothing until the election is won: a write before
	// then is refused.
	var fence atomic.Pointer[ha.Fence]
	none := ha.NoFence(prefix)
	fence.Store(&none)
	eo.Fence = func() clientv3.Cmp { return fence.Load().Cmp() }
	eo.Logger = log
	// One client for the store and the election, closed last: after the
	// store, and after the election has resigned and revoked its lease,
	// so that a standby takes over at once from a leader that stops.
	client, err := etcdstore.Connect(eo)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer func() { _ = client.Close() }()
	eo.Client = client
	st, err := etcdstore.Open(ctx, eo)
	if err != nil {
		return err
	}
	stClosed := false
	defer func() {
		if !stClosed {
			_ = st.Close()
		}
	}()
	creds, ca, err := (&Server{cfg: o.Config, log: log}).transport(o.Clock)
	if err != nil {
		return err
	}
	if ca != nil {
		if err := ha.CheckCA(ctx, client, prefix, ca.CAHash()); err != nil {
			return err
		}
	}
	el, err := ha.New(ctx, ha.Options{Client: client, Prefix: prefix, Address: addr,
		Version: version.String(), TTL: o.Config.Etcd.LeaseTTL.Duration, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := el.Close(); err != nil {
			log.Warn("leaving the election", "err", err)
		}
	}()
	// The standby keeps a copy of the fleet's state in memory, following
	// etcd's watch, so that taking the lead over reads no whole fleet
	// from the cluster; the copy is handed to the fleet as it loads.
	followCtx, stopFollowing := context.WithCancel(ctx)
	following := make(chan struct{})
	go func() { defer close(following); st.Follow(followCtx) }()
	stopFollow := func() { stopFollowing(); <-following }
	defer stopFollow()
	// The metrics listener is up before the standby answers a call, so
	// that whoever is told of a standby can scrape it.
	standbyMetrics, err := serveStandbyMetrics(o.Config, el, log)
	if err != nil {
		return err
	}
	standby := ha.NewStandby(creds, el.Leader)
	go func() { _ = standby.Serve(handoff.Turn()) }()
	log.Info("standby: answering with the leader's address until this control plane leads", "address", addr, "leader", el.Leader())
	// Under systemd (Type=notify) a standby has started: it does what it
	// is for, and waiting to lead is not a start that never ends.
	if _, err := sdnotify.Ready("standby: answering with the leader's address"); err != nil {
		log.Warn("telling systemd the standby is ready", "err", err)
	}
	won, lost, err := el.Campaign(ctx)
	standby.Stop()
	if standbyMetrics != nil {
		// The leader's server listens on the same address next.
		closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = standbyMetrics.Close(closeCtx)
		cancel()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	fence.Store(&won)
	o.Store = st
	o.Election = el
	stClosed = true // the server owns it now
	srv, err := New(ctx, o)
	stopFollow()
	if err != nil {
		return err
	}
	if serving != nil {
		serving(srv)
	}
	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	lostLead := make(chan struct{})
	go func() {
		select {
		case <-lost:
			if ctx.Err() != nil {
				// Stopping anyway: the election is left at Close.
				return
			}
			log.Error("lost the lead: the lease with etcd ended; stopping, as every write is now refused")
			close(lostLead)
			cancel()
		case <-serveCtx.Done():
		}
	}()
	if err := srv.Serve(serveCtx, handoff.Turn()); err != nil {
		return err
	}
	select {
	case <-lostLead:
		return ErrLostLead
	default:
		return nil
	}
}

// serveStandbyMetrics serves a standby's metrics listener, when one is
// configured: navarch_controlplane_leader at 0 and the failover count, the
// process and runtime series, /healthz as healthy and /readyz as not
// ready, so that a scrape of every control plane finds each one up and
// the count of failovers starts at 0 before a takeover. nil when no
// listener is configured.
func serveStandbyMetrics(cfg Config, el *ha.Election, log *slog.Logger) (*metricsserver.Server, error) {
	if cfg.MetricsListen == "" {
		return nil, nil
	}
	m := metrics.New(metrics.Options{})
	m.ReadElection(el)
	return metricsserver.Start(metricsserver.Options{
		Addr:          cfg.MetricsListen,
		WebConfigFile: cfg.MetricsWebConfig,
		Gatherer:      m.Gatherer(),
		Readyz: func(context.Context) error {
			return fmt.Errorf("standby: the leader is at %q", el.Leader())
		},
		Logger: log,
	})
}
