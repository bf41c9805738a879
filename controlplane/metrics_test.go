package controlplane_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
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
		// The policy names 48: its series is there before the first.
		{`navarch_health_events_total{kind="xid",xid="48"}`, 0},
		{`navarch_health_events_total{kind="xid",xid="other"}`, 0},
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

// TestMetricsCountRefusedCalls: calls the gate refuses before any
// interceptor runs, which gRPC's metrics never see, are counted by reason.
func TestMetricsCountRefusedCalls(t *testing.T) {
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.MetricsListen = "127.0.0.1:0" }))
	ctx := ctxT(t)
	viewer, err := h.ops.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "dashboards", Role: controlplanev1.Role_ROLE_VIEWER})
	if err != nil {
		t.Fatal(err)
	}
	stranger := opsAs(t, h.ControlPlane, "dashboards.not-the-secret")
	for range 3 {
		if _, err := stranger.ListNodes(ctx, &controlplanev1.ListNodesRequest{}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("a wrong secret's call: %v", err)
		}
	}
	if _, err := opsAs(t, h.ControlPlane, viewer.GetToken()).CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a viewer's cordon: %v", err)
	}
	text := scrape(t, h.Server.MetricsURL(), http.StatusOK)
	want := []struct {
		series string
		value  float64
	}{
		{`navarch_auth_refused_total{reason="unauthenticated"}`, 3},
		{`navarch_auth_refused_total{reason="role_too_low"}`, 1},
		{`navarch_auth_refused_total{reason="rate_limited"}`, 0},
		{`navarch_auth_refused_total{reason="no_node_certificate"}`, 0},
	}
	for _, w := range want {
		if got := sample(text, w.series); got != w.value {
			t.Errorf("%s = %g, want %g", w.series, got, w.value)
		}
	}
	for _, refused := range []string{
		`grpc_server_handled_total{grpc_code="Unauthenticated",grpc_method="ListNodes",grpc_service="navarch.controlplane.v1.ControlPlaneService",grpc_type="unary"}`,
		`grpc_server_handled_total{grpc_code="PermissionDenied",grpc_method="CordonNode",grpc_service="navarch.controlplane.v1.ControlPlaneService",grpc_type="unary"}`,
	} {
		if got := sample(text, refused); got > 0 {
			t.Errorf("%s = %g: gRPC's metrics saw a call the gate refused, so navarch_auth_refused_total counts it twice", refused, got)
		}
	}
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
