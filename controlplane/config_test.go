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
		{"bad-store", "store: postgres", `store: "postgres" is not badger or etcd`},
		{"etcd-without-endpoints", "store: etcd\nlisten: 10.0.0.1:50051", "etcd.endpoints: store is etcd but no endpoint"},
		{"bad-etcd-endpoint", "store: etcd\nlisten: 10.0.0.1:50051\netcd:\n  endpoints: [etcd-1]", `etcd.endpoints[0]: "etcd-1" is not a URL or HOST:PORT`},
		{"bad-etcd-url", "store: etcd\nlisten: 10.0.0.1:50051\netcd:\n  endpoints: [ftp://etcd-1:2379]", "etcd.endpoints[0]"},
		{"etcd-cert-without-key", "store: etcd\nlisten: 10.0.0.1:50051\netcd:\n  endpoints: [etcd-1:2379]\n  cert_file: /c.crt", "etcd.cert_file"},
		{"etcd-user-without-password", "store: etcd\nlisten: 10.0.0.1:50051\netcd:\n  endpoints: [etcd-1:2379]\n  username: navarch", "etcd.password_file"},
		{"etcd-bad-prefix", "store: etcd\nlisten: 10.0.0.1:50051\netcd:\n  endpoints: [etcd-1:2379]\n  prefix: navarch", "etcd.prefix"},
		{"etcd-short-lease", "store: etcd\nlisten: 10.0.0.1:50051\netcd:\n  endpoints: [etcd-1:2379]\n  lease_ttl: 500ms", "etcd.lease_ttl"},
		{"etcd-wildcard-listen", "store: etcd\nlisten: 0.0.0.0:50051\netcd:\n  endpoints: [etcd-1:2379]", "advertise: must be set"},
		{"etcd-http-with-tls", "store: etcd\nlisten: 10.0.0.1:50051\netcd:\n  endpoints: [http://etcd-1:2379]\n  ca_file: /ca.crt", `etcd.endpoints[0]: "http://etcd-1:2379" is plain http, but TLS files or a user are set`},
		{"etcd-missing-password-file", "store: etcd\nlisten: 10.0.0.1:50051\netcd:\n  endpoints: [https://etcd-1:2379]\n  username: navarch\n  password_file: /nonexistent/etcd-password", "etcd.password_file"},
		{"etcd-wildcard-advertise", "store: etcd\nadvertise: 0.0.0.0:50051\netcd:\n  endpoints: [etcd-1:2379]", "advertise: \"0.0.0.0:50051\" is not an address"},
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

// TestPoolsInTheConfigFile: a pool reads whole, autoscaling included, and
// every kind of mistake in one names where it is.
func TestPoolsInTheConfigFile(t *testing.T) {
	cfg, err := controlplane.LoadConfigFile(writeConfig(t, `
local_provider: {enabled: true}
cluster: lab-east
pools:
  - name: train
    providers: [local]
    min: 2
    max: 6
    labels: {team: ml}
    replace_unhealthy: true
    unhealthy_grace: 3m
    autoscaling:
      utilization: {scale_up_above: 80, scale_down_below: 20, window: 2m}
      schedules:
        - {cron: "0 8 * * 1-5", duration: 10h, size: 4, time_zone: Europe/Paris}
      queue: {partition: gpu}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Pools) != 1 || cfg.Cluster != "lab-east" || cfg.Pools[0].UnhealthyGrace.Duration != 3*time.Minute ||
		cfg.Pools[0].Autoscaling.Schedules[0].Duration.Duration != 10*time.Hour || cfg.Pools[0].Autoscaling.Queue.Partition != "gpu" {
		t.Fatalf("%+v", cfg.Pools)
	}
	pool := func(body string) string {
		return "local_provider: {enabled: true}\npools:\n  - " + strings.ReplaceAll(body, "\n", "\n    ")
	}
	rows := []struct{ name, body, want string }{
		{"bad-name", pool("name: Train\nproviders: [local]\nmax: 1"), "pools[0].name"},
		{"provider-not-enabled", pool("name: a\nproviders: [aws]\nmax: 1"), `pools[0].providers[0]: provider "aws" is not offered`},
		{"min-above-max", pool("name: a\nproviders: [local]\nmin: 3\nmax: 1"), "pools[0].min"},
		{"bad-label", pool("name: a\nproviders: [local]\nmax: 1\nlabels: {k: a=b}"), "pools[0].labels[k]"},
		{"bad-cron", pool("name: a\nproviders: [local]\nmax: 1\nautoscaling: {schedules: [{cron: nope, size: 1, duration: 1h}]}"), "pools[0].autoscaling"},
		{"unknown-key", pool("name: a\nproviders: [local]\nmax: 1\nsize: 3"), "size"},
		{"twice", "local_provider: {enabled: true}\npools:\n  - {name: a, providers: [local], max: 1}\n  - {name: a, providers: [local], max: 1}", `pools[1].name: "a" is defined twice`},
		{"bad-cluster", "cluster: Lab East", "cluster"},
		{"bad-unknown-instances", "unknown_instances: ignore", "unknown_instances"},
		{"bootstrap-without-sha", "bootstrap: {package_url: https://x.example/a.deb}\ntls: {names: [cp.example]}", "bootstrap: package_url and package_sha256 go together"},
		{"bootstrap-without-server", "bootstrap: {package_url: https://x.example/a.deb, package_sha256: " + strings.Repeat("a", 64) + "}", "bootstrap.server"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			_, err := controlplane.LoadConfigFile(writeConfig(t, row.body))
			if err == nil || !strings.Contains(err.Error(), row.want) {
				t.Fatalf("err = %v, want one naming %q", err, row.want)
			}
		})
	}
}

// TestEtcdPasswordFile: the etcd password file must be its owner's alone
// and hold a password; a unix socket endpoint is taken.
func TestEtcdPasswordFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name, file, want string
	}{
		{"owner-only", write("ok", "s3cret\n", 0o600), ""},
		{"readable-by-others", write("open", "s3cret\n", 0o644), "may be read or changed by its group or others"},
		{"empty", write("empty", "\n", 0o600), "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := "store: etcd\nlisten: 10.0.0.1:50051\netcd:\n  endpoints: [unix:///run/etcd.sock, https://etcd-1:2379]\n  username: navarch\n  password_file: " + tt.file + "\n"
			_, err := controlplane.LoadConfigFile(writeConfig(t, body))
			if tt.want == "" && err != nil {
				t.Fatalf("a good password file refused: %v", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "s3cret")) {
				t.Fatalf("err = %v, want one naming %q and not the password", err, tt.want)
			}
		})
	}
}
