// Package metricsserver is the HTTP listener the control plane and the
// agent serve their Prometheus metrics and probes on: /metrics, /healthz
// and /readyz, read-only. It is plain HTTP by default, as exporters are;
// a web-config file in Prometheus' own format turns on TLS and basic
// authentication.
package metricsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures Start.
type Options struct {
	// Addr is the address to listen on, such as "127.0.0.1:9400". Required.
	Addr string
	// WebConfigFile, when set, is a Prometheus web-config file
	// (tls_server_config, basic_auth_users) read at start.
	WebConfigFile string
	// Gatherer is what /metrics serves. Required.
	Gatherer prometheus.Gatherer
	// Healthz says whether the process can do its work; nil is always
	// healthy.
	Healthz func(context.Context) error
	// Readyz says whether it is ready to serve; nil answers as Healthz.
	Readyz func(context.Context) error
	// Logger hears about scrapes that fail; nil discards.
	Logger *slog.Logger
}

// Server is a started listener.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	scheme string
	done   chan struct{}
}

// probeTimeout bounds one probe's checks.
const probeTimeout = 5 * time.Second

// Start listens on o.Addr and serves until Close.
func Start(o Options) (*Server, error) {
	if o.Addr == "" {
		return nil, errors.New("metrics: no address to listen on")
	}
	if o.Gatherer == nil {
		return nil, errors.New("metrics: nothing to serve")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := readWebConfig(o.WebConfigFile)
	if err != nil {
		return nil, err
	}
	readyz := o.Readyz
	if readyz == nil {
		readyz = o.Healthz
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
		ErrorLog:          slogPrinter{log},
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
		Timeout:           10 * time.Second,
		// A scrape of a large fleet costs a fifth of a second of CPU:
		// whoever can reach the listener must not be able to run many at
		// once. Prometheus scrapes one at a time.
		MaxRequestsInFlight: 2,
	}))
	mux.Handle("/healthz", probe(o.Healthz))
	mux.Handle("/readyz", probe(readyz))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "Navarch metrics: /metrics, /healthz, /readyz")
	})
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", o.Addr, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           readOnly(cfg.authenticate(mux)),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		ln:     ln,
		scheme: "http",
		done:   make(chan struct{}),
	}
	if cfg.tls != nil {
		s.srv.TLSConfig = cfg.tls
		s.ln = newTLSListener(ln, cfg.tls)
		s.scheme = "https"
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the address of /metrics.
func (s *Server) URL() string { return s.scheme + "://" + s.Addr() + "/metrics" }

// Close stops the server, letting scrapes under way finish within ctx.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		// Out of time: scrapes still running are cut off.
		_ = s.srv.Close()
	}
	<-s.done
	return err
}

// probe answers 200 "ok" when check passes and 503 with the reason when it
// does not.
func probe(check func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if check != nil {
			ctx, cancel := context.WithTimeout(r.Context(), probeTimeout)
			defer cancel()
			if err := check(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintln(w, err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
}

// readOnly refuses every method but GET and HEAD: nothing served here
// changes anything.
func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "read-only: GET or HEAD", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// slogPrinter lets promhttp report gathering errors through slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics scrape", "err", fmt.Sprint(v...)) }
