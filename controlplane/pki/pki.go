// Package pki is the control plane's own certificate authority. On first
// start it creates a private CA and a server certificate in DATA_DIR/pki
// (keys 0600), so TLS is on without any set-up; it renews the server
// certificate before it expires, and reissues it when the names it must
// cover change. Operators who bring their own certificate use FileTLS
// instead.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// File names in the PKI directory.
const (
	CACertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

// Lifetimes. The server certificate is renewed once less than a third of
// its life is left, so a control plane that runs for months keeps a valid
// one without a restart.
const (
	caLifetime     = 10 * 365 * 24 * time.Hour
	serverLifetime = 365 * 24 * time.Hour
	renewWhenLeft  = serverLifetime / 3
	// NodeLifetime is how long a node's certificate is valid; agents
	// renew it once a third of that is left.
	NodeLifetime = 90 * 24 * time.Hour
)

// Options configures Open.
type Options struct {
	// Dir holds the CA and the server certificate; created 0700 if missing.
	Dir string
	// Names are the host names and IP addresses the server certificate
	// must cover, besides localhost and the loopback addresses.
	Names []string
	// Clock decides validity and renewal; nil means the real clock.
	Clock clockwork.Clock
	// Logger is told of certificates created and renewed; nil discards.
	Logger *slog.Logger
	// CAOnly keeps the CA for signing nodes' certificates and issues no
	// server certificate: the operator brought the server's.
	CAOnly bool
}

// Authority is an open CA with the server certificate it issued.
type Authority struct {
	dir   string
	names []string
	clock clockwork.Clock
	log   *slog.Logger

	caCert *x509.Certificate
	caKey  crypto.Signer

	mu     sync.Mutex
	server *tls.Certificate
}

// Open loads the CA in o.Dir, creating it on first start, and a server
// certificate for o.Names, issuing one if there is none, it does not cover
// the names, or it is due for renewal.
func Open(o Options) (*Authority, error) {
	if o.Dir == "" {
		return nil, errors.New("pki: directory is required")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create %s: %w", o.Dir, err)
	}
	a := &Authority{dir: o.Dir, names: serverNames(o.Names), clock: o.Clock, log: o.Logger}
	if err := a.loadOrCreateCA(); err != nil {
		return nil, err
	}
	if o.CAOnly {
		return a, nil
	}
	if _, err := a.serverCert(); err != nil {
		return nil, err
	}
	return a, nil
}

// CAFile is the path of the CA certificate, for clients to trust.
func (a *Authority) CAFile() string { return filepath.Join(a.dir, CACertFile) }

// CAPool is a pool holding the CA certificate and any others given, such
// as the operator's client CAs.
func (a *Authority) CAPool(others ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.caCert)
	for _, c := range others {
		p.AddCert(c)
	}
	return p
}

// CAHash is the CA's pin in the form agents take: sha256 of its public
// key, as kubeadm writes it ("sha256:HEX").
func (a *Authority) CAHash() string { return PublicKeyHash(a.caCert) }

// PublicKeyHash is a certificate's pin: "sha256:" and the hex SHA-256 of
// its DER-encoded SubjectPublicKeyInfo.
func PublicKeyHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ServerTLS is the server's TLS configuration. Every handshake gets the
// current server certificate, renewed first when it is due, and a client
// may present a node certificate this CA signed.
func (a *Authority) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return a.serverCert()
		},
		// Asked for, not checked here: the gate checks a certificate
		// shown (auth.Agents), so that an untrusted one is answered
		// Unauthenticated instead of with a failed handshake.
		ClientAuth: tls.RequestClientCert,
		ClientCAs:  a.CAPool(),
	}
}

// SignNode issues a node's client certificate for the key in csr, whose
// common name must be the node id.
func (a *Authority) SignNode(csr *x509.CertificateRequest, nodeID string) ([]byte, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	if csr.Subject.CommonName != nodeID {
		return nil, fmt.Errorf("certificate request: it is for %q, not node %q", csr.Subject.CommonName, nodeID)
	}
	now := a.clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, OrganizationalUnit: []string{NodeUnit}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(NodeLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, csr.PublicKey, a.caKey)
	if err != nil {
		return nil, fmt.Errorf("sign node certificate: %w", err)
	}
	return der, nil
}

// NodeUnit marks a certificate as a node's: its subject's organizational
// unit.
const NodeUnit = "navarch-node"

// CACert is the CA certificate, DER-encoded.
func (a *Authority) CACert() []byte { return a.caCert.Raw }

// serverCert returns the server certificate, issuing a new one when there
// is none, it misses a name, or it is due for renewal.
func (a *Authority) serverCert() (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.server == nil {
		if c, err := tls.LoadX509KeyPair(filepath.Join(a.dir, serverCertFile), filepath.Join(a.dir, serverKeyFile)); err == nil {
			c.Certificate = append(c.Certificate, a.caCert.Raw)
			a.server = &c
		}
	}
	if a.server != nil && a.server.Leaf != nil && a.fresh(a.server.Leaf) {
		return a.server, nil
	}
	c, err := a.issueServer()
	if err != nil {
		return nil, err
	}
	a.server = c
	a.log.Info("server certificate issued", "names", a.names, "expires", c.Leaf.NotAfter.Format(time.RFC3339))
	return c, nil
}

// fresh reports whether a server certificate can still serve: signed by
// this CA, covering every name, and not yet due for renewal.
func (a *Authority) fresh(leaf *x509.Certificate) bool {
	if leaf.CheckSignatureFrom(a.caCert) != nil {
		return false
	}
	now := a.clock.Now()
	if now.Before(leaf.NotBefore) || leaf.NotAfter.Sub(now) < renewWhenLeft {
		return false
	}
	for _, n := range a.names {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func (a *Authority) issueServer() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: server key: %w", err)
	}
	now := a.clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "navarch-controlplane"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(serverLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range a.names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.caCert, key.Public(), a.caKey)
	if err != nil {
		return nil, fmt.Errorf("pki: sign server certificate: %w", err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFile(filepath.Join(a.dir, serverKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(a.dir, serverCertFile), certPEM, 0o644); err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: server certificate: %w", err)
	}
	// The chain carries the CA, so an agent that pins the CA by its hash
	// can find it.
	c.Certificate = append(c.Certificate, a.caCert.Raw)
	return &c, nil
}

func (a *Authority) loadOrCreateCA() error {
	certPath, keyPath := filepath.Join(a.dir, CACertFile), filepath.Join(a.dir, caKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("pki: load CA from %s: %w", a.dir, err)
		}
		signer, ok := c.PrivateKey.(crypto.Signer)
		if !ok {
			return fmt.Errorf("pki: CA key in %s cannot sign", keyPath)
		}
		a.caCert, a.caKey = c.Leaf, signer
		return nil
	case errors.Is(certErr, os.ErrNotExist) && errors.Is(keyErr, os.ErrNotExist):
		return a.createCA(certPath, keyPath)
	case certErr != nil:
		return fmt.Errorf("pki: read CA certificate: %w", certErr)
	default:
		return fmt.Errorf("pki: read CA key: %w", keyErr)
	}
}

func (a *Authority) createCA(certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: CA key: %w", err)
	}
	now := a.clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "navarch CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("pki: sign CA: %w", err)
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The key first: a certificate without its key would be taken for a
	// CA brought by the operator.
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFile(certPath, certPEM, 0o644); err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("pki: CA certificate: %w", err)
	}
	a.caCert, a.caKey = cert, key
	a.log.Info("certificate authority created", "ca", certPath, "pin", PublicKeyHash(cert))
	return nil
}

// serverNames are the names a server certificate covers: the given ones,
// and localhost with the loopback addresses, so local clients can always
// dial 127.0.0.1.
func serverNames(extra []string) []string {
	names := []string{"localhost", "127.0.0.1", "::1"}
	for _, n := range extra {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return n
}

func keyToPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeFile replaces path with data, with the given permissions, by way of
// a temporary file so a crash never leaves half a key.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	return nil
}
