package main

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/navarch/navarch/agent"
	"github.com/navarch/navarch/internal/metricsserver"
)

// errStarting is /healthz before the agent exists: the node has not yet
// joined, or the agent is being made.
var errStarting = errors.New("starting")

// metricsListener serves the agent's metrics and /healthz. It starts
// before the node joins, so that a bad web-config or a taken address is
// found before a join token is spent, and so that the process is watched
// while the control plane cannot be reached at first boot. The agent's
// own series and health check join once the agent exists.
type metricsListener struct {
	srv   *metricsserver.Server
	agent atomic.Pointer[agent.Agent]
}

// startMetrics reads the web-config and listens on addr, serving the Go
// runtime's and the process's metrics at once.
func startMetrics(addr, webConfig string, log *slog.Logger) (*metricsListener, error) {
	m := &metricsListener{}
	process := prometheus.NewRegistry()
	process.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, err := metricsserver.Start(metricsserver.Options{
		Addr: addr, WebConfigFile: webConfig,
		Gatherer: prometheus.Gatherers{process, prometheus.GathererFunc(m.gatherAgent)},
		Healthz:  m.healthz, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	m.srv = srv
	return m, nil
}

// serve adds the agent's series and health check.
func (m *metricsListener) serve(a *agent.Agent) { m.agent.Store(a) }

func (m *metricsListener) gatherAgent() ([]*dto.MetricFamily, error) {
	a := m.agent.Load()
	if a == nil {
		return nil, nil
	}
	return a.Metrics().Gather()
}

func (m *metricsListener) healthz(ctx context.Context) error {
	a := m.agent.Load()
	if a == nil {
		return errStarting
	}
	return a.Healthz(ctx)
}

// close stops the listener, letting a scrape under way finish.
func (m *metricsListener) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.srv.Close(ctx)
}
