package rpcclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestConnectionFailuresSayWhatToChange: a call that cannot reach the
// control plane fails Unavailable with what is wrong and what to change
// first, and the transport's own words after it.
func TestConnectionFailuresSayWhatToChange(t *testing.T) {
	ca, other := newCA(t, "navarch CA"), newCA(t, "someone else's CA")
	dir := t.TempDir()
	caFile, otherFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "other.crt")
	for f, c := range map[string]*x509.Certificate{caFile: ca.cert, otherFile: other.cert} {
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	good := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, loopbackServer(), ca.cert)}})
	elsewhere := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, x509.Certificate{DNSNames: []string{"cp.example.com"}}, ca.cert)}})
	expired := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.leaf(t, x509.Certificate{
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}, ca.cert)}})
	plain := servePlaintext(t)
	closed := closedPort(t)

	rows := []struct {
		name   string
		target Target
		want   string // what the message starts with
		keeps  string // the transport's words, kept after it
	}{
		{"ca-file-did-not-sign", Target{Addr: good.addr, CACert: otherFile},
			"the control plane at " + good.addr + " presents a certificate that the CA in " + otherFile + " did not sign", "unknown authority"},
		{"pin-of-another-ca", Target{Addr: good.addr, CAPin: Pin(other.cert)},
			"the control plane at " + good.addr + " does not present the CA pinned by " + Pin(other.cert), "has the CA pin"},
		{"name-not-in-certificate", Target{Addr: elsewhere.addr, CACert: caFile},
			`the control plane's certificate does not name "127.0.0.1", the host dialled`, "IP SANs"},
		{"expired", Target{Addr: expired.addr, CACert: caFile},
			"the control plane's certificate has expired or is not yet valid: check both machines' clocks", "expired"},
		{"tls-client-plaintext-server", Target{Addr: plain, CACert: caFile},
			"the control plane at " + plain + " answers in plaintext", "TLS handshake"},
		{"plaintext-client-tls-server", Target{Addr: good.addr, Insecure: true},
			"the control plane at " + good.addr + " closed a plaintext connection: it serves TLS, so leave out --insecure", ""},
		{"nothing-listens", Target{Addr: closed, CACert: caFile},
			"nothing listens at " + closed, "connection refused"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			err := check(t, row.target)
			msg := status.Convert(err).Message()
			if status.Code(err) != codes.Unavailable || !strings.HasPrefix(msg, row.want) || !strings.Contains(msg, row.keeps) {
				t.Fatalf("got %v\nwant Unavailable starting %q and keeping %q", err, row.want, row.keeps)
			}
		})
	}

	// A stream's failure is explained too: it shows on the first receive.
	conn, err := Dial(Target{Addr: good.addr, CACert: otherFile})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := healthpb.NewHealthClient(conn).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "did not sign") {
		t.Fatalf("stream: got %v, want the explained refusal", err)
	}

	// The right CA still gets through.
	if err := check(t, Target{Addr: good.addr, CACert: caFile}); err != nil {
		t.Fatalf("the right CA: %v", err)
	}
}

// servePlaintext serves the gRPC health service without TLS on loopback.
func servePlaintext(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
