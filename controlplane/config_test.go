package controlplane_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "navarch.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfigFile(t *testing.T) {
	cfg, err := controlplane.LoadConfigFile(writeConfig(t, `
listen: 0.0.0.0:7000
data_dir: /var/lib/navarch
heartbeat_interval: 5s
stale_after: 20s
offline_after: 1m
audit_retention: 720h
log_format: json
metrics_listen: 127.0.0.1:9400
metrics_web_config: /etc/navarch/web.yaml
auto_cordon:
  enabled: false
  max_fraction: 0.2
  window: 10m
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:7000" || cfg.HeartbeatInterval.Duration != 5*time.Second || cfg.AutoCordonEnabled() || cfg.AutoCordon.MaxFraction != 0.2 {
		t.Fatalf("%+v", cfg)
	}
	if cfg.AuditRetention.Duration != 30*24*time.Hour {
		t.Fatalf("audit_retention read as %s", cfg.AuditRetention.Duration)
	}
	if cfg.LogFormat != "json" {
		t.Fatalf("log_format read as %q", cfg.LogFormat)
	}
	if cfg.MetricsListen != "127.0.0.1:9400" || cfg.MetricsWebConfig != "/etc/navarch/web.yaml" {
		t.Fatalf("metrics_listen, metrics_web_config read as %q, %q", cfg.MetricsListen, cfg.MetricsWebConfig)
	}
	if cfg.HealthReportInterval.Duration != 30*time.Second || cfg.LogLevel != "info" {
		t.Fatalf("unset keys lost their defaults: %s %q", cfg.HealthReportInterval.Duration, cfg.LogLevel)
	}
	if _, err := controlplane.LoadConfigFile(writeConfig(t, "")); err != nil {
		t.Fatalf("empty file: %v", err)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	rows := []struct{ name, body, want string }{
		{"unknown-key", "listen_addr: x", "listen_addr"},
		{"unknown-nested-key", "auto_cordon:\n  max_share: 0.3", "max_share"},
		{"bad-duration", "heartbeat_interval: often", `heartbeat_interval: "often" is not a duration`},
		{"bad-nested-duration", "auto_cordon:\n  window: soon", "auto_cordon.window"},
		{"bad-number", "events_per_node: abc", "events_per_node"},
		{"bad-listen", "listen: nowhere", "listen"},
		{"stale-before-heartbeat", "heartbeat_interval: 1m", "stale_after"},
		{"bad-fraction", "auto_cordon:\n  max_fraction: 1.5", "auto_cordon.max_fraction"},
		{"bad-level", "log_level: loud", `log_level: "loud" is not debug, info, warn or error`},
		{"bad-format", "log_format: xml", `log_format: "xml" is not text or json`},
		{"bad-events", "events_per_node: 0", "events_per_node"},
		{"bad-delivery", "command_delivery: carrier_pigeon", "command_delivery"},
		{"short-audit-retention", "audit_retention: 1h", "audit_retention: 1h0m0s is below the minimum of 24h0m0s"},
		{"not-yaml", "{{", "yaml"},
		{"bad-metrics-listen", "metrics_listen: 9400", `metrics_listen: "9400" is not HOST:PORT`},
		{"metrics-web-config-alone", "metrics_web_config: /etc/navarch/web.yaml", "metrics_web_config: set without metrics_listen"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			_, err := controlplane.LoadConfigFile(writeConfig(t, row.body))
			if err == nil || !strings.Contains(err.Error(), row.want) {
				t.Fatalf("err = %v, want one naming %q", err, row.want)
			}
		})
	}
	if _, err := controlplane.LoadConfigFile(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestPolicyFileOverride(t *testing.T) {
	cfg := controlplane.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.PolicyFile = writeConfig(t, "xids:\n  - codes: [13]\n    meaning: fatal here\n    health: UNHEALTHY\n    remedy: RESET_GPU\n")
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.PolicyFile = cfg.PolicyFile }))
	h.register("a", 1)
	h.register("b", 1)
	h.register("c", 1)
	h.xid("a", 0, 13)
	if h.lifecycle("a") != cordoned {
		t.Fatal("overridden XID 13 did not cordon")
	}
	cfg.PolicyFile = writeConfig(t, "xids: [{codes: [13], meaning: x, health: SICK, remedy: NONE}]")
	if _, err := controlplane.New(ctxT(t), controlplane.Options{Config: cfg}); err == nil || !strings.Contains(err.Error(), "SICK") {
		t.Fatalf("bad policy file: %v", err)
	}
}

// TestLocalProviderIsOffByDefault: the provider that starts processes on
// the control plane's machine runs only where it is asked for.
func TestLocalProviderIsOffByDefault(t *testing.T) {
	cfg := controlplane.Defaults()
	if cfg.LocalProvider.On() {
		t.Fatal("the local provider is on by default")
	}
	if len(controlplane.Providers(cfg, "127.0.0.1:50051", nil)) != 0 {
		t.Fatal("a default configuration offers a provider")
	}
}
