package rpcclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/navarch/navarch/internal/testutil"
)

// TestEachAddressIsVerifiedAgainstItsOwnHost: in a list, each control
// plane's certificate is checked against the host it is dialled as, with a
// CA file and with a pin: here one certificate names only 127.0.0.1 and
// the other only localhost, so checking either against the other's name
// fails.
func TestEachAddressIsVerifiedAgainstItsOwnHost(t *testing.T) {
	ca := newCA(t, "navarch CA")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	trusts := map[string]Target{"ca-file": {CACert: caFile}, "pin": {CAPin: Pin(ca.cert)}}
	for name, trust := range trusts {
		t.Run(name, func(t *testing.T) {
			byIP := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, x509.Certificate{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, ca.cert)}})
			byName := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, x509.Certificate{DNSNames: []string{"localhost"}}, ca.cert)}})
			_, port, _ := net.SplitHostPort(byName.addr)
			trust.Addr = byIP.addr + "," + net.JoinHostPort("localhost", port)
			conn, err := Dial(trust)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			health := healthpb.NewHealthClient(conn)
			if _, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("the first address: %v", err)
			}
			byIP.srv.Stop()
			testutil.Eventually(t, "a call answered at the second address", func() bool {
				_, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
				return err == nil
			})
		})
	}
}
