package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/sim"
)

// BenchmarkMetricsScrape is one Prometheus scrape of the control plane's
// /metrics: a real control plane in this process (internal/cptest) with
// its metrics on loopback, the fleet registered by the fleet simulator as
// the suite registers it, one node in a hundred with an XID (UNHEALTHY,
// some cordoned). Its clock is fake, so the monitor and the watch hub stay
// idle and the process's CPU per scrape is the scrape's: the control
// plane's gathering, encoding and compression, the garbage collector's
// share of it, and this client reading the compressed answer. The figure
// for docs/performance.md:
//
//	go test -run '^$' -bench 'MetricsScrape/nodes=100000' -benchtime 20x ./bench/
func BenchmarkMetricsScrape(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			url := metricsFleet(b, n)
			b.Run("scrape", func(b *testing.B) { benchScrape(b, url) })
		})
	}
}

// metricsFleet starts a control plane with metrics on, registers n
// simulated 8-GPU nodes and reports an XID on every hundredth, and returns
// its /metrics address.
func metricsFleet(b *testing.B, n int) string {
	b.Helper()
	cp := cptest.Start(b, cptest.Options{
		Clock: clockwork.NewFakeClockAt(time.Now()),
		Config: func(c *controlplane.Config) {
			c.MetricsListen = "127.0.0.1:0"
			c.LogLevel = "warn"
		},
	})
	fleet, err := sim.New(sim.Options{Server: cp.Target(), Nodes: n, GPUs: 8, Conns: 8, RegisterConcurrency: 128})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(fleet.Close)
	ctx := context.Background()
	began := time.Now()
	if err := fleet.Register(ctx); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 100 {
		if err := fleet.InjectXID(ctx, i, 3, 79); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d nodes registered in %s", n, time.Since(began).Round(time.Millisecond))
	return cp.Server.MetricsURL()
}

// benchScrape scrapes url as Prometheus does (OpenMetrics, gzip) and
// reports the process's CPU per scrape and the answer's size.
func benchScrape(b *testing.B, url string) {
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
	req.Header.Set("Accept-Encoding", "gzip")
	var size int64
	b.ResetTimer()
	cpu0, err := cpuTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		size, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("scrape: %d %v", resp.StatusCode, err)
		}
	}
	cpu1, err := cpuTime(os.Getpid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(cpu1-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/scrape")
	b.ReportMetric(float64(size), "gzip-bytes")
}
