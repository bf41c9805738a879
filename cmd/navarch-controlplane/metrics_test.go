package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsFlagErrors: a bad metrics address is refused as the key it
// sets, and a web-config file without a listener is refused too.
func TestMetricsFlagErrors(t *testing.T) {
	rows := []struct {
		name string
		args []string
		want string
	}{
		{"bad-address", []string{"--metrics-listen", "9400", "--data-dir", t.TempDir()}, `metrics_listen: "9400" is not HOST:PORT`},
		{"web-config-alone", []string{"--metrics-web-config", "web.yaml", "--data-dir", t.TempDir()}, "metrics_web_config: set without metrics_listen"},
		{"missing-web-config", []string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--metrics-web-config", "/nonexistent.yaml", "--data-dir", t.TempDir()}, "nonexistent.yaml"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			var errOut bytes.Buffer
			if code := run(row.args, io.Discard, &errOut); code == 0 {
				t.Fatal("started")
			}
			if !strings.Contains(errOut.String(), row.want) {
				t.Fatalf("stderr %q does not mention %q", errOut.String(), row.want)
			}
		})
	}
}

// TestMetricsListen: the binary started with --metrics-listen serves
// /metrics and is ready once serving.
func TestMetricsListen(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	startBinary(t, "--data-dir", t.TempDir(), "--metrics-listen", addr)
	for path, want := range map[string]string{"/readyz": "ok", "/metrics": `navarch_nodes{lifecycle="ACTIVE"} 0`} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s: %d, body without %q:\n%.2000s", path, resp.StatusCode, want, body)
		}
	}
}
