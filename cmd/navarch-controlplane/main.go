// Command navarch-controlplane is the headless control plane daemon: one
// gRPC server hosting NodeService (for agents) and ControlPlaneService (for
// operators), with its state in an embedded Badger store.
//
//	navarch-controlplane --listen 127.0.0.1:50051 --data-dir DIR [--config FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"
	// Pools' schedules name IANA time zones; the binary carries them,
	// for hosts and images without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/internal/logging"
	"github.com/navarch/navarch/internal/memlimit"
	"github.com/navarch/navarch/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the exit, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("navarch-controlplane", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := controlplane.Defaults()
	listen := fs.String("listen", def.Listen, "gRPC listen address `HOST:PORT`")
	dataDir := fs.String("data-dir", def.DataDir, "`DIR` holding the Badger store")
	configFile := fs.String("config", "", "YAML config `FILE`; flags override it")
	logFlags := logging.Flags{Level: def.LogLevel, Format: def.LogFormat}
	logFlags.Register(fs)
	plaintext := fs.Bool("insecure", false, "serve plaintext instead of TLS; refused unless --listen is a loopback address")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus metrics, /healthz and /readyz on `ADDR` (HOST:PORT); off unless set")
	metricsWebConfig := fs.String("metrics-web-config", "", "Prometheus web-config `FILE` for the metrics listener: TLS and basic authentication")
	printPolicy := fs.Bool("print-default-policy", false, "print the built-in fault policy and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: navarch-controlplane --listen HOST:PORT --data-dir DIR [--config FILE]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "navarch-controlplane: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Long("navarch-controlplane"))
		return 0
	}
	if *printPolicy {
		_, _ = stdout.Write(policy.DefaultYAML())
		return 0
	}
	// A bad flag is named as the flag; a bad file value, by its key.
	if _, _, err := logFlags.Parse(); err != nil {
		fmt.Fprintf(stderr, "navarch-controlplane: %v\n", err)
		return 2
	}
	cfg := def
	if *configFile != "" {
		var err error
		if cfg, err = controlplane.LoadConfigFile(*configFile); err != nil {
			fmt.Fprintf(stderr, "navarch-controlplane: %v\n", err)
			return 2
		}
	}
	// Flags given on the command line win over the file.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "data-dir":
			cfg.DataDir = *dataDir
		case "log-level":
			cfg.LogLevel = logFlags.Level
		case "log-format":
			cfg.LogFormat = logFlags.Format
		case "insecure":
			cfg.Insecure = *plaintext
		case "metrics-listen":
			cfg.MetricsListen = *metricsListen
		case "metrics-web-config":
			cfg.MetricsWebConfig = *metricsWebConfig
		}
	})
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "navarch-controlplane: %v\n", err)
		return 2
	}
	// Validate has checked both.
	level, _ := logging.ParseLevel(cfg.LogLevel)
	format, _ := logging.ParseFormat(cfg.LogFormat)
	log := logging.New(stderr, level, format)
	// Validate has checked it too.
	setting, _ := memlimit.ParseSetting(cfg.MemoryLimit)
	limit := memlimit.Set(setting, memlimit.System{Root: "/", Getenv: os.Getenv})
	log.Info("soft memory limit", "limit", limit.String(), "source", string(limit.Source), "basis", limit.Basis)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.PprofListen != "" {
		go func() {
			// net/http/pprof registers its handlers on the default mux.
			srv := &http.Server{Addr: cfg.PprofListen, ReadHeaderTimeout: 5 * time.Second}
			log.Info("profiling endpoints serving", "listen", cfg.PprofListen)
			if err := srv.ListenAndServe(); err != nil {
				log.Error("profiling endpoints stopped", "err", err)
			}
		}()
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "navarch-controlplane: listen on %s: %v\n", cfg.Listen, err)
		return 1
	}
	err = controlplane.Run(ctx, controlplane.Options{
		Config:    cfg,
		Logger:    log,
		Providers: controlplane.Providers(cfg, lis.Addr().String(), log),
	}, lis, func(srv *controlplane.Server) {
		if sized := memlimit.NewFleet(limit); sized.Sized() {
			// Sized once to the fleet loaded before serving, then as it
			// grows.
			f := &fleetLimit{sized: sized, nodes: srv.Fleet().Len, log: log}
			f.update()
			go f.follow(ctx)
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "navarch-controlplane: %v\n", err)
		return 1
	}
	return 0
}

// fleetLimitEvery is how often auto's memory limit is sized to the fleet.
const fleetLimitEvery = 10 * time.Second

// fleetLimit sizes auto's soft memory limit to the fleet.
type fleetLimit struct {
	sized  *memlimit.Fleet
	nodes  func() int
	log    *slog.Logger
	logged int64
}

// update sizes the limit to the fleet now, logging it when it moved by a
// quarter or more since it was last logged.
func (f *fleetLimit) update() {
	n := f.nodes()
	l := f.sized.Update(n)
	if f.logged == 0 || l > f.logged+f.logged/4 || l < f.logged-f.logged/4 {
		f.log.Info("soft memory limit sized to the fleet", "limit", memlimit.FormatSize(l), "nodes", n)
		f.logged = l
	}
}

// follow updates the limit every fleetLimitEvery until ctx ends.
func (f *fleetLimit) follow(ctx context.Context) {
	t := time.NewTicker(fleetLimitEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.update()
		}
	}
}
