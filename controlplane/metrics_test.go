package controlplane_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/navarch/navarch/controlplane"
)

// scrape gets url and returns its body, failing unless the answer is want.
func scrape(t *testing.T, url string, want int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, body, want)
	}
	return string(body)
}

// sample is the value of one series in a scrape in the text format, as
// written there (labels in name order), or -1 when it is missing.
func sample(text, series string) float64 {
	for line := range strings.Lines(text) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// TestMetricsEndpoint: a control plane with metrics on serves, over HTTP,
// the fleet's counts, an XID counted under its code, the node it made
// UNHEALTHY in the per-node series, gRPC's count of registrations, and a
// ready /readyz, all passing Prometheus' lint.
func TestMetricsEndpoint(t *testing.T) {
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.MetricsListen = "127.0.0.1:0" }))
	for _, id := range []string{"a", "b", "c"} {
		h.register(id, 2)
	}
	h.healthyReport("a", 2)
	h.xid("b", 1, 79)

	url := h.Server.MetricsURL()
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("metrics URL %q", url)
	}
	text := scrape(t, url, http.StatusOK)
	want := []struct {
		series string
		value  float64
	}{
		{`navarch_nodes{lifecycle="ACTIVE"}`, 2},
		{`navarch_nodes{lifecycle="CORDONED"}`, 1},
		{`navarch_nodes{lifecycle="PROVISION_FAILED"}`, 0},
		{`navarch_nodes_health{health="HEALTHY"}`, 1},
		{`navarch_nodes_health{health="UNHEALTHY"}`, 1},
		{`navarch_nodes_health{health="UNKNOWN"}`, 1},
		{`navarch_gpus_health{health="UNHEALTHY"}`, 1},
		{`navarch_node_health{node="a"}`, 1},
		{`navarch_node_health{node="b"}`, 3},
		{`navarch_node_health{node="c"}`, 0},
		{`navarch_health_events_total{kind="xid",xid="79"}`, 1},
		{`navarch_faults_active{remedy="reboot_node"}`, 1},
		{`navarch_auto_cordons_total`, 1},
		{`navarch_commands_total{status="pending",type="cordon"}`, 1},
		{`navarch_breaker_tripped`, 0},
		{`grpc_server_handled_total{grpc_code="OK",grpc_method="RegisterNode",grpc_service="navarch.node.v1.NodeService",grpc_type="unary"}`, 3},
		{`grpc_server_handled_total{grpc_code="OK",grpc_method="ReportHealth",grpc_service="navarch.node.v1.NodeService",grpc_type="unary"}`, 2},
	}
	for _, w := range want {
		if got := sample(text, w.series); got != w.value {
			t.Errorf("%s = %g, want %g", w.series, got, w.value)
		}
	}
	for _, series := range []string{"navarch_store_write_duration_seconds_count", "navarch_fleet_revision", "process_cpu_seconds_total", "go_goroutines"} {
		if got := sample(text, series); got <= 0 {
			t.Errorf("%s = %g, want more than 0", series, got)
		}
	}
	problems, err := promlint.New(strings.NewReader(text)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	base := strings.TrimSuffix(url, "/metrics")
	scrape(t, base+"/healthz", http.StatusOK)
	scrape(t, base+"/readyz", http.StatusOK)
}

// TestMetricsReadiness: a control plane that is built but not serving is
// alive and not ready; one without metrics_listen serves no metrics.
func TestMetricsReadiness(t *testing.T) {
	cfg := controlplane.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.MetricsListen = "127.0.0.1:0"
	srv, err := controlplane.New(ctxT(t), controlplane.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(srv.MetricsURL(), "/metrics")
	scrape(t, base+"/healthz", http.StatusOK)
	if body := scrape(t, base+"/readyz", http.StatusServiceUnavailable); !strings.Contains(body, "not serving") {
		t.Fatalf("/readyz said %q", body)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the metrics listener still answers after Close")
	}

	off := newHarness(t)
	if url := off.Server.MetricsURL(); url != "" {
		t.Fatalf("metrics served at %q without metrics_listen", url)
	}
}
