package controlplane

import (
	"context"
	"errors"
	"net"
	"time"

	"google.golang.org/grpc"

	"github.com/navarch/navarch/internal/metricsserver"
)

// The metrics listener: /metrics from the control plane's registry, and the
// probes, served when metrics_listen is set. The fleet, its store and its
// watchers feed the registry whether or not it is served, which costs a
// few counter increments a change; gRPC's metrics, a few a call, are
// collected only when served.

// interceptors are gRPC interceptors the server adds outermost.
type interceptors struct {
	unary  []grpc.UnaryServerInterceptor
	stream []grpc.StreamServerInterceptor
}

// grpcMetrics are the interceptors that count and time every call the
// gate lets in, when metrics are served; none otherwise. The gate counts
// the calls it refuses itself.
func (s *Server) grpcMetrics() interceptors {
	if s.cfg.MetricsListen == "" {
		return interceptors{}
	}
	return interceptors{
		unary:  []grpc.UnaryServerInterceptor{s.metrics.UnaryServerInterceptor()},
		stream: []grpc.StreamServerInterceptor{s.metrics.StreamServerInterceptor()},
	}
}

// startMetrics starts the metrics listener when one is configured. The
// gRPC services must be registered, so that each method has series from
// the start.
func (s *Server) startMetrics() error {
	if s.cfg.MetricsListen == "" {
		return nil
	}
	s.metrics.InitializeGRPC(s.grpc)
	if host, _, _ := net.SplitHostPort(s.cfg.MetricsListen); s.cfg.MetricsWebConfig == "" && !loopback(host) {
		s.log.Warn("metrics served over plain HTTP beyond this machine; keep the address on a trusted network, or set metrics_web_config for TLS and authentication",
			"metrics_listen", s.cfg.MetricsListen)
	}
	ms, err := metricsserver.Start(metricsserver.Options{
		Addr:          s.cfg.MetricsListen,
		WebConfigFile: s.cfg.MetricsWebConfig,
		Gatherer:      s.metrics.Gatherer(),
		Readyz:        s.ready,
		Logger:        s.log,
	})
	if err != nil {
		return err
	}
	s.metricsServer = ms
	s.log.Info("metrics serving", "url", ms.URL())
	return nil
}

// ready is /readyz: the store is open and the fleet loaded (New did both)
// and gRPC serves, until shutdown begins.
func (s *Server) ready(context.Context) error {
	if !s.serving.Load() {
		return errors.New("not serving: the control plane is starting or shutting down")
	}
	return nil
}

// MetricsURL is the address of the control plane's /metrics; empty when
// metrics are not served.
func (s *Server) MetricsURL() string {
	if s.metricsServer == nil {
		return ""
	}
	return s.metricsServer.URL()
}

// stopMetrics closes the metrics listener, letting a scrape under way
// finish.
func (s *Server) stopMetrics() {
	if s.metricsServer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.metricsServer.Close(ctx); err != nil {
		s.log.Warn("closing the metrics listener", "err", err)
	}
}
