package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// handshake connects to a TLS server with cfg over loopback as a client
// trusting a's CA, and returns the certificate the server showed.
func handshake(t *testing.T, a *Authority, cfg *tls.Config, serverName string) (*tls.ConnectionState, error) {
	t.Helper()
	return handshakeAt(t, a, cfg, serverName, nil)
}

// handshakeAt is handshake with the client's clock set to now.
func handshakeAt(t *testing.T, a *Authority, cfg *tls.Config, serverName string, now func() time.Time) (*tls.ConnectionState, error) {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		c, err := lis.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	d := tls.Dialer{Config: &tls.Config{RootCAs: a.CAPool(), ServerName: serverName, MinVersion: tls.VersionTLS12, Time: now}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", lis.Addr().String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.(*tls.Conn).ConnectionState()
	return &st, nil
}

func TestFirstStartCreatesTheCAAndAServerCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	a, err := Open(Options{Dir: dir, Names: []string{"cp.example.com", "10.1.2.3"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{CACertFile: 0o644, caKeyFile: 0o600, serverCertFile: 0o644, serverKeyFile: 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s is %o, want %o", name, st.Mode().Perm(), want)
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("pki directory is %o, want 700", st.Mode().Perm())
	}
	for _, name := range []string{"cp.example.com", "10.1.2.3", "127.0.0.1", "localhost"} {
		if _, err := handshake(t, a, a.ServerTLS(), name); err != nil {
			t.Errorf("a client dialling %s does not trust the server: %v", name, err)
		}
	}
	if _, err := handshake(t, a, a.ServerTLS(), "elsewhere.example.com"); err == nil {
		t.Error("the certificate covers a name it was not given")
	}
}

func TestRestartKeepsTheCA(t *testing.T) {
	dir := t.TempDir()
	a, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if a.CAHash() != b.CAHash() {
		t.Fatalf("the CA changed across a restart: %s, then %s", a.CAHash(), b.CAHash())
	}
	sa, _ := a.serverCert()
	sb, _ := b.serverCert()
	if sa.Leaf.SerialNumber.Cmp(sb.Leaf.SerialNumber) != 0 {
		t.Fatal("a restart issued a new server certificate that was not due")
	}
}

func TestANewNameReissuesTheServerCertificate(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	a, err := Open(Options{Dir: dir, Names: []string{"cp.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, a, a.ServerTLS(), "cp.example.com"); err != nil {
		t.Fatalf("a name added to the configuration is not covered: %v", err)
	}
}

func TestServerCertificateIsRenewedBeforeItExpires(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	a, err := Open(Options{Dir: t.TempDir(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := a.serverCert()
	clock.Advance(serverLifetime - renewWhenLeft - time.Hour)
	if c, _ := a.serverCert(); c != first {
		t.Fatal("renewed while more than a third of its life was left")
	}
	clock.Advance(2 * time.Hour)
	renewed, err := a.serverCert()
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatal("a certificate with less than a third of its life left was not renewed")
	}
	// The renewed certificate is what the next handshake shows.
	st, err := handshakeAt(t, a, a.ServerTLS(), "127.0.0.1", clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	if st.PeerCertificates[0].SerialNumber.Cmp(renewed.Leaf.SerialNumber) != 0 {
		t.Fatal("the handshake showed the old certificate")
	}
}

func TestHalfACAIsAnError(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(Options{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, caKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Fatal("a CA certificate without its key was accepted, or replaced")
	}
}

func TestFileTLSPicksUpARenewedCertificate(t *testing.T) {
	a, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	copyPair := func() {
		for from, to := range map[string]string{serverCertFile: certFile, serverKeyFile: keyFile} {
			b, err := os.ReadFile(filepath.Join(a.dir, from))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	copyPair()
	cfg, err := FileTLS(certFile, keyFile, a.CAPool())
	if err != nil {
		t.Fatal(err)
	}
	before, err := handshake(t, a, cfg, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	a.server = nil
	a.mu.Unlock()
	if _, err := a.issueServer(); err != nil {
		t.Fatal(err)
	}
	copyPair()
	later := time.Now().Add(time.Minute)
	_ = os.Chtimes(certFile, later, later)
	_ = os.Chtimes(keyFile, later, later)
	after, err := handshake(t, a, cfg, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if before.PeerCertificates[0].SerialNumber.Cmp(after.PeerCertificates[0].SerialNumber) == 0 {
		t.Fatal("a certificate replaced on disk was not served")
	}
	if _, err := FileTLS(filepath.Join(dir, "missing.crt"), keyFile, nil); err == nil {
		t.Fatal("a missing certificate file was accepted")
	}
}

func TestSignNode(t *testing.T) {
	a, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "gpu-7"}}, key)
	csr, _ := x509.ParseCertificateRequest(csrDER)
	if _, err := a.SignNode(csr, "gpu-8"); err == nil {
		t.Fatal("a request for one node was signed for another")
	}
	der, err := a.SignNode(csr, "gpu-7")
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: a.CAPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("the node certificate does not verify as a client: %v", err)
	}
	if cert.Subject.CommonName != "gpu-7" || cert.Subject.OrganizationalUnit[0] != NodeUnit {
		t.Fatalf("subject %v", cert.Subject)
	}
	if st, err := handshake(t, a, a.ServerTLS(), "127.0.0.1"); err != nil || len(st.PeerCertificates) != 2 || PublicKeyHash(st.PeerCertificates[1]) != a.CAHash() {
		t.Fatalf("the server's chain does not carry the CA for a pin: %v", err)
	}
}
