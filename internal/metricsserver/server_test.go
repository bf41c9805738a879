package metricsserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

func start(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Gatherer == nil {
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "navarch_test_total", Help: "A counter for the test."})
		c.Add(3)
		reg.MustRegister(c)
		o.Gatherer = reg
	}
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func get(t *testing.T, c *http.Client, method, url string, auth ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServesMetricsAndProbes(t *testing.T) {
	var notReady error = errors.New("store not open")
	s := start(t, Options{
		Healthz: func(context.Context) error { return nil },
		Readyz:  func(context.Context) error { return notReady },
	})
	base := strings.TrimSuffix(s.URL(), "/metrics")
	c := http.DefaultClient
	if code, body := get(t, c, "GET", s.URL()); code != 200 || !strings.Contains(body, "navarch_test_total 3") {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	if code, _ := get(t, c, "GET", base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get(t, c, "GET", base+"/readyz"); code != 503 || !strings.Contains(body, "store not open") {
		t.Fatalf("/readyz not ready: %d %q", code, body)
	}
	notReady = nil
	if code, _ := get(t, c, "GET", base+"/readyz"); code != 200 {
		t.Fatalf("/readyz ready: %d", code)
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if code, _ := get(t, c, m, s.URL()); code != http.StatusMethodNotAllowed {
			t.Fatalf("%s /metrics: %d, want 405", m, code)
		}
	}
	if code, _ := get(t, c, "GET", base+"/debug/pprof/"); code != 404 {
		t.Fatalf("an unknown path: %d, want 404", code)
	}
}

// TestTLSAndBasicAuth: a web-config file in Prometheus' format turns on
// TLS and basic authentication; a wrong password or none is refused.
func TestTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	cfg := "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\nbasic_auth_users:\n  prometheus: " + string(hash) + "\n"
	web := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(web, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, Options{WebConfigFile: web})
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s is not https", s.URL())
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	if code, _ := get(t, c, "GET", s.URL()); code != 401 {
		t.Fatalf("no credentials: %d, want 401", code)
	}
	if code, _ := get(t, c, "GET", s.URL(), "prometheus", "wrong"); code != 401 {
		t.Fatalf("a wrong password: %d, want 401", code)
	}
	if code, _ := get(t, c, "GET", s.URL(), "nobody", "s3cret"); code != 401 {
		t.Fatalf("an unknown user: %d, want 401", code)
	}
	for range 2 { // the second is answered from the remembered hash
		if code, body := get(t, c, "GET", s.URL(), "prometheus", "s3cret"); code != 200 || !strings.Contains(body, "navarch_test_total") {
			t.Fatalf("right credentials: %d %q", code, body)
		}
	}
	// Plain HTTP to the TLS port gets nothing.
	if resp, err := http.Get("http://" + s.Addr() + "/metrics"); err == nil && resp.StatusCode == 200 {
		t.Fatal("plain HTTP was served on the TLS listener")
	}
}

func TestBadWebConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, want string
	}{
		{"unknown-key", "tls_server_config:\n  cert: x\n", "cert"},
		{"missing-key-file", "tls_server_config:\n  cert_file: a.crt\n", "key_file"},
		{"not-bcrypt", "basic_auth_users:\n  alice: plain\n", "not a bcrypt hash"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".yml")
			if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Start(Options{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), WebConfigFile: p})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if _, err := Start(Options{Addr: "256.0.0.1:1", Gatherer: prometheus.NewRegistry()}); err == nil {
		t.Fatal("a bad address was accepted")
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "metrics"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// TestClientCAIsChecked: a client_ca_file is checked: given alone, it
// requires a client certificate from that CA; with a client_auth_type that
// checks no CA, the config is refused.
func TestClientCAIsChecked(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	for name, b := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": certPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base := "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_ca_file: ca.crt\n"
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := Start(Options{Addr: "127.0.0.1:0", Gatherer: prometheus.NewRegistry(), WebConfigFile: write("any.yml", base+"  client_auth_type: RequireAnyClientCert\n")}); err == nil || !strings.Contains(err.Error(), "checks no client certificate") {
		t.Fatalf("RequireAnyClientCert with a CA: %v", err)
	}
	s := start(t, Options{WebConfigFile: write("ca.yml", base)})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	if resp, err := c.Get(s.URL()); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d", resp.StatusCode)
	}
}
