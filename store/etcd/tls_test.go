package etcdstore

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/navarch/navarch/internal/etcdtest"
	"github.com/navarch/navarch/store"
)

// pki is a CA and the files of certificates it signed.
type pki struct {
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	next int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), next: 2}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if p.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.key = key
	p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate for 127.0.0.1 usable by a server and a client,
// and returns its files.
func (p *pki) issue(t *testing.T, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.next++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.next), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &k.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
}

// TestTLS: a store reaches a cluster over TLS trusting the CA file: with
// the CA alone where the servers ask for no client certificate, with a
// client certificate where they require one, and never a server its CA
// did not sign.
func TestTLS(t *testing.T) {
	p := newPKI(t)
	serverCert, serverKey := p.issue(t, "server")
	clientCert, clientKey := p.issue(t, "client")
	ca := filepath.Join(p.dir, "ca.pem")
	otherCA := filepath.Join(newPKI(t).dir, "ca.pem")
	tests := []struct {
		name   string
		server transport.TLSInfo
		files  TLSFiles
		ok     bool
	}{
		{"server-auth-ca-only", transport.TLSInfo{CertFile: serverCert, KeyFile: serverKey}, TLSFiles{CAFile: ca}, true},
		{"server-auth-another-ca", transport.TLSInfo{CertFile: serverCert, KeyFile: serverKey}, TLSFiles{CAFile: otherCA}, false},
		{"mutual-client-certificate", transport.TLSInfo{CertFile: serverCert, KeyFile: serverKey, TrustedCAFile: ca, ClientCertAuth: true},
			TLSFiles{CAFile: ca, CertFile: clientCert, KeyFile: clientKey}, true},
		{"mutual-ca-only", transport.TLSInfo{CertFile: serverCert, KeyFile: serverKey, TrustedCAFile: ca, ClientCertAuth: true}, TLSFiles{CAFile: ca}, false},
	}
	clusters := make(map[bool]*etcdtest.Cluster) // by whether client certificates are required
	defer func() {
		for _, c := range clusters {
			c.Stop()
		}
	}()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := clusters[tt.server.ClientCertAuth]
			if c == nil {
				var err error
				if c, err = startCluster(1, tt.server); err != nil {
					t.Fatalf("start etcd: %v", err)
				}
				clusters[tt.server.ClientCertAuth] = c
			}
			s, err := Open(t.Context(), Options{Endpoints: c.Endpoints, TLS: tt.files, Prefix: "/navarch-test/" + t.Name(), DialTimeout: 2 * time.Second})
			if !tt.ok {
				if err == nil {
					_ = s.Close()
					t.Fatal("opened")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Apply(t.Context(), store.Write{Counters: map[string]uint64{"ids": 1}}); err != nil {
				t.Fatalf("apply over TLS: %v", err)
			}
		})
	}
}
