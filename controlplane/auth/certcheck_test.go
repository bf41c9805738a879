package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"runtime"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/navarch/navarch/controlplane/pki"
	"github.com/navarch/navarch/internal/testutil"
)

// agentsWithCA is an Agents with its own CA, and a node certificate that
// CA signed for gpu-1.
func agentsWithCA(t testing.TB) (*Agents, *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.Open(pki.Options{Dir: filepath.Join(dir, "pki"), CAOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, filepath.Join(dir, "store"))
	a := NewAgents(AgentsOptions{CA: ca, Tokens: NewTokens(st, nil, nil, nil), Store: st})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "gpu-1"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := ca.SignNode(csr, "gpu-1")
	if err != nil {
		t.Fatal(err)
	}
	return a, parse(t, raw)
}

func parse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// connection is a call's context on a connection whose handshake parsed
// cert, as grpc-go hands it to the gate.
func connection(cert *x509.Certificate) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}}})
}

func entries(m interface{ Range(func(k, v any) bool) }) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// TestClientCertificateCheckedOncePerConnection: the gate checks a
// connection's client certificate on its first call and remembers the
// verdict only while the connection's certificate lives.
func TestClientCertificateCheckedOncePerConnection(t *testing.T) {
	a, cert := agentsWithCA(t)
	ctx := connection(cert)
	for range 3 {
		leaf, root, presented, err := a.clientChain(ctx)
		if err != nil || !presented || leaf != cert || root == nil || !root.IsCA {
			t.Fatalf("a certificate the CA signed: leaf %v, root %v, presented %v, %v", leaf != nil, root != nil, presented, err)
		}
	}
	if n := entries(&a.checked); n != 1 {
		t.Fatalf("%d verdicts kept after three calls on one connection, want 1", n)
	}
	// Another connection with the same certificate, parsed again, is
	// checked again.
	again := connection(parse(t, cert.Raw))
	if _, _, _, err := a.clientChain(again); err != nil {
		t.Fatal(err)
	}
	if n := entries(&a.checked); n != 2 {
		t.Fatalf("%d verdicts after a second connection, want 2", n)
	}
	if _, _, presented, err := a.clientChain(context.Background()); presented || err != nil {
		t.Fatalf("no peer: presented %v, %v", presented, err)
	}
	// A refused certificate's verdict is kept, and let go, the same way.
	_, stranger := agentsWithCA(t)
	refused := connection(parse(t, stranger.Raw))
	for range 2 {
		if _, root, presented, err := a.clientChain(refused); !presented || err == nil || root != nil {
			t.Fatalf("another CA's certificate: root %v, presented %v, %v", root != nil, presented, err)
		}
	}
	if n := entries(&a.checked); n != 3 {
		t.Fatalf("%d verdicts after a refused connection, want 3", n)
	}
	// Until here the three connections live; from here none does.
	runtime.KeepAlive(ctx)
	runtime.KeepAlive(again)
	runtime.KeepAlive(refused)
	// Once the connections' certificates are gone, so are the verdicts.
	testutil.Eventually(t, "verdicts dropped with their certificates", func() bool {
		runtime.GC()
		return entries(&a.checked) == 0
	})
}

// BenchmarkClientChain is the gate's check of a client certificate on a
// connection it has seen before: every agent call after the first.
func BenchmarkClientChain(b *testing.B) {
	a, cert := agentsWithCA(b)
	ctx := connection(cert)
	if _, _, _, err := a.clientChain(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := a.clientChain(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
