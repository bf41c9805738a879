package rpcclient

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// testCA is a CA made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t *testing.T, name string) testCA { return makeCA(t, name, nil) }

// intermediate is a CA signed by ca.
func (ca testCA) intermediate(t *testing.T, name string) testCA { return makeCA(t, name, &ca) }

// makeCA makes a CA signed by parent, or by itself when parent is nil.
func makeCA(t *testing.T, name string, parent *testCA) testCA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	return testCA{cert: sign(t, tmpl, issuer, key.Public(), signer), key: key}
}

func sign(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// leaf is a certificate ca signs for tmpl's names, usage and lifetime
// (a day from now for a server when tmpl leaves them out), with the
// chain given after it.
func (ca testCA) leaf(t *testing.T, tmpl x509.Certificate, chain ...*x509.Certificate) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	if tmpl.NotAfter.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	}
	if tmpl.ExtKeyUsage == nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	c := sign(t, &tmpl, ca.cert, key.Public(), ca.key)
	out := tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key, Leaf: c}
	for _, ch := range chain {
		out.Certificate = append(out.Certificate, ch.Raw)
	}
	return out
}

func loopbackServer() x509.Certificate {
	return x509.Certificate{DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
}

// tlsServer serves the gRPC health service over TLS with cfg on
// loopback until the test ends, and records the common name of each
// client certificate it is shown.
type tlsServer struct {
	addr string
	srv  *grpc.Server

	mu      sync.Mutex
	clients []string
}

func serveTLS(t *testing.T, cfg *tls.Config) *tlsServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tlsServer{addr: lis.Addr().String()}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if p, ok := peer.FromContext(ctx); ok {
				if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
					s.mu.Lock()
					s.clients = append(s.clients, ti.State.PeerCertificates[0].Subject.CommonName)
					s.mu.Unlock()
				}
			}
			return handler(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	s.srv = srv
	return s
}

func (s *tlsServer) clientNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.clients...)
}

// check makes one call to the server at addr through a fresh connection.
func check(t *testing.T, target Target) error {
	t.Helper()
	conn, err := Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	return err
}

func TestPinnedServerVerification(t *testing.T) {
	ca, other := newCA(t, "navarch CA"), newCA(t, "someone else's CA")
	inter := ca.intermediate(t, "navarch intermediate")
	rows := []struct {
		name    string
		server  tls.Certificate
		pin     string
		host    string // dialled instead of 127.0.0.1
		wantErr string // empty: accepted
	}{
		{name: "right-pin", server: ca.leaf(t, loopbackServer(), ca.cert), pin: Pin(ca.cert)},
		{name: "right-pin-by-name", server: ca.leaf(t, loopbackServer(), ca.cert), pin: Pin(ca.cert), host: "localhost"},
		{name: "through-an-intermediate", server: inter.leaf(t, loopbackServer(), inter.cert, ca.cert), pin: Pin(ca.cert)},
		{name: "wrong-pin", server: ca.leaf(t, loopbackServer(), ca.cert), pin: Pin(other.cert), wantErr: "no certificate it presented has the CA pin"},
		{name: "pinned-ca-not-in-chain", server: ca.leaf(t, loopbackServer()), pin: Pin(ca.cert), wantErr: "no certificate it presented has the CA pin"},
		{name: "leaf-not-signed-by-pinned-ca", server: other.leaf(t, loopbackServer(), ca.cert), pin: Pin(ca.cert), wantErr: "unknown authority"},
		{name: "wrong-host", server: ca.leaf(t, x509.Certificate{DNSNames: []string{"cp.example.com"}}, ca.cert), pin: Pin(ca.cert), wantErr: "doesn't contain any IP SANs"},
		{name: "wrong-name", server: ca.leaf(t, x509.Certificate{DNSNames: []string{"cp.example.com"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, ca.cert), pin: Pin(ca.cert), host: "localhost", wantErr: "not localhost"},
		{name: "expired", server: ca.leaf(t, x509.Certificate{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}, ca.cert), pin: Pin(ca.cert), wantErr: "expired"},
		{name: "leaf-not-for-servers", server: ca.leaf(t, x509.Certificate{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca.cert), pin: Pin(ca.cert), wantErr: "key usage"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			srv := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{row.server}})
			addr := srv.addr
			if row.host != "" {
				_, port, _ := net.SplitHostPort(addr)
				addr = net.JoinHostPort(row.host, port)
			}
			err := check(t, Target{Addr: addr, CAPin: row.pin})
			if row.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), row.wantErr) {
				t.Fatalf("got %v, want Unavailable saying %q", err, row.wantErr)
			}
		})
	}
}

func TestPinIsTheHashOfThePublicKey(t *testing.T) {
	ca := newCA(t, "navarch CA")
	pin := Pin(ca.cert)
	if !strings.HasPrefix(pin, "sha256:") || len(pin) != len("sha256:")+64 {
		t.Fatalf("pin %q", pin)
	}
	// The same key in a new certificate keeps its pin; another key does not.
	again := sign(t, &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: "renamed"}, NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}, ca.cert, ca.key.Public(), ca.key)
	if Pin(again) != pin {
		t.Fatal("a certificate for the same key has another pin")
	}
	if Pin(newCA(t, "navarch CA").cert) == pin {
		t.Fatal("another key has the same pin")
	}
	if err := CheckPin(pin); err != nil {
		t.Fatal(err)
	}
	if err := CheckPin(strings.ToUpper(pin[7:])); err == nil {
		t.Fatal("a pin without its sha256: prefix was accepted")
	}
}

func TestDialRefusesMalformedPins(t *testing.T) {
	for _, pin := range []string{"abc", "sha1:0011", "sha256:zz", "sha256:" + strings.Repeat("0", 62)} {
		if _, err := Dial(Target{Addr: "127.0.0.1:1", CAPin: pin}); err == nil || !strings.Contains(err.Error(), "CA pin") {
			t.Fatalf("pin %q: %v", pin, err)
		}
	}
	if _, err := Dial(Target{Addr: ":50051", CAPin: Pin(newCA(t, "ca").cert)}); err == nil {
		t.Fatal("a pinned dial without a host was accepted: there would be no name to check")
	}
}

func TestClientCertificateIsAskedAtEachHandshake(t *testing.T) {
	ca := newCA(t, "navarch CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv := serveTLS(t, &tls.Config{
		Certificates: []tls.Certificate{ca.leaf(t, loopbackServer(), ca.cert)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	})
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	client := func(name string) *tls.Certificate {
		c := ca.leaf(t, x509.Certificate{Subject: pkix.Name{CommonName: name}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
		return &c
	}
	var mu sync.Mutex
	current := client("node-1")
	asked := 0
	target := Target{Addr: srv.addr, CACert: caFile, Certificate: func() (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		asked++
		return current, nil
	}}
	if err := check(t, target); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	current = client("node-1-renewed")
	mu.Unlock()
	if err := check(t, target); err != nil {
		t.Fatal(err)
	}
	if got := srv.clientNames(); len(got) != 2 || got[0] != "node-1" || got[1] != "node-1-renewed" {
		t.Fatalf("server saw %v, want node-1 then node-1-renewed", got)
	}
	if asked != 2 {
		t.Fatalf("certificate asked %d times for two handshakes", asked)
	}

	t.Run("none", func(t *testing.T) {
		if err := check(t, Target{Addr: srv.addr, CACert: caFile}); status.Code(err) != codes.Unavailable {
			t.Fatalf("no client certificate: %v", err)
		}
		none := Target{Addr: srv.addr, CACert: caFile, Certificate: func() (*tls.Certificate, error) { return nil, nil }}
		if err := check(t, none); status.Code(err) != codes.Unavailable {
			t.Fatalf("a nil certificate: %v", err)
		}
	})
	t.Run("error", func(t *testing.T) {
		failing := Target{Addr: srv.addr, CACert: caFile, Certificate: func() (*tls.Certificate, error) { return nil, os.ErrNotExist }}
		if err := check(t, failing); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "client certificate") {
			t.Fatalf("a failing certificate: %v", err)
		}
	})
	t.Run("pinned", func(t *testing.T) {
		if err := check(t, Target{Addr: srv.addr, CAPin: Pin(ca.cert), Certificate: func() (*tls.Certificate, error) { return client("node-2"), nil }}); err != nil {
			t.Fatal(err)
		}
	})
}
