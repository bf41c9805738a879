// Package identity owns an agent's identity: its own key, the node
// certificate the control plane's CA signed for that key and node id, and
// that CA, kept in a state directory so that a restarted agent needs no
// join token. The key is made once and never leaves the directory; a join
// or a renewal sends only a certificate request signed with it.
//
// The directory holds key.pem (ECDSA P-256, PKCS #8, 0600), cert.pem (the
// node certificate) and ca.crt (the CA JoinNode returned), in a directory
// made 0700. Each file is replaced whole, never left half written.
package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"

	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// The files in the state directory.
const (
	keyFile  = "key.pem"
	certFile = "cert.pem"
	caFile   = "ca.crt"
)

// Joiner is the call Join makes; a NodeServiceClient is one.
type Joiner interface {
	JoinNode(ctx context.Context, in *nodev1.JoinNodeRequest, opts ...grpc.CallOption) (*nodev1.JoinNodeResponse, error)
}

// Identity is an agent's key, node certificate and CA, as kept in its
// state directory. It is safe for concurrent use.
type Identity struct {
	dir string

	mu   sync.RWMutex
	key  *ecdsa.PrivateKey // nil until made
	cert *tls.Certificate  // nil until joined
	ca   *x509.Certificate // nil until joined
}

// Open loads the identity kept in dir. A directory that does not exist, or
// holds no identity yet, is no error: the identity is then not Joined. A
// certificate that does not belong to the key beside it is.
func Open(dir string) (*Identity, error) {
	id := &Identity{dir: dir}
	key, err := readKey(id.path(keyFile))
	if err != nil {
		return nil, err
	}
	id.key = key
	leaf, err := readCertificate(id.path(certFile))
	if err != nil {
		return nil, err
	}
	ca, err := readCertificate(id.path(caFile))
	if err != nil {
		return nil, err
	}
	if leaf == nil || ca == nil {
		return id, nil // not joined, or a join stopped before its end
	}
	if key == nil {
		return nil, fmt.Errorf("open identity: %s has a certificate but no key", dir)
	}
	if err := checkIssued(leaf, ca, key, leaf.Subject.CommonName); err != nil {
		return nil, fmt.Errorf("open identity in %s: %w", dir, err)
	}
	id.cert, id.ca = tlsCertificate(leaf, key), ca
	return id, nil
}

// Dir is the state directory.
func (id *Identity) Dir() string { return id.dir }

// CAFile is the CA the control plane gave at the join, to trust it with
// from then on.
func (id *Identity) CAFile() string { return id.path(caFile) }

// Joined reports whether the identity has a node certificate.
func (id *Identity) Joined() bool {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.cert != nil
}

// NodeID is the node the certificate is for; "" before the join.
func (id *Identity) NodeID() string {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.cert == nil {
		return ""
	}
	return id.cert.Leaf.Subject.CommonName
}

// NotAfter is when the certificate expires; zero before the join.
func (id *Identity) NotAfter() time.Time {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.cert == nil {
		return time.Time{}
	}
	return id.cert.Leaf.NotAfter
}

// CA is the CA the control plane gave at the join; nil before it.
func (id *Identity) CA() *x509.Certificate {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.ca
}

// Certificate is the current node certificate with its key, for
// rpcclient.Target.Certificate: each new connection presents the latest.
func (id *Identity) Certificate() (*tls.Certificate, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.cert == nil {
		return nil, fmt.Errorf("no node certificate in %s: this node has not joined", id.dir)
	}
	return id.cert, nil
}

// Join gets a node certificate for nodeID with an operator's join token:
// it makes the key if there is none yet (and keeps the one there is, which
// the control plane knows the node by), asks JoinNode to sign a request
// for it, and keeps the certificate and CA it returns. The token is sent
// once and kept nowhere.
func (id *Identity) Join(ctx context.Context, client Joiner, nodeID, token string) error {
	if nodeID == "" || token == "" {
		return errors.New("join: a node id and a join token are required")
	}
	if err := os.MkdirAll(id.dir, 0o700); err != nil {
		return fmt.Errorf("join: make the state directory: %w", err)
	}
	key, err := id.ensureKey()
	if err != nil {
		return err
	}
	csr, err := certificateRequest(key, nodeID)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	resp, err := client.JoinNode(ctx, &nodev1.JoinNodeRequest{NodeId: nodeID, JoinToken: token, CertificateRequest: csr})
	if err != nil {
		return fmt.Errorf("join as %s: %w", nodeID, err)
	}
	ca, err := x509.ParseCertificate(resp.GetCaCertificate())
	if err != nil {
		return fmt.Errorf("join: read the CA certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil {
		return fmt.Errorf("join: read the node certificate: %w", err)
	}
	if err := checkIssued(leaf, ca, key, nodeID); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	// The CA first: a certificate without it is not an identity, so a
	// join cut short here is simply made again.
	if err := writeFile(id.path(caFile), encodeCertificate(ca), 0o644); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	if err := writeFile(id.path(certFile), encodeCertificate(leaf), 0o644); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	id.mu.Lock()
	id.cert, id.ca = tlsCertificate(leaf, key), ca
	id.mu.Unlock()
	return nil
}

// ensureKey returns the key, making and saving it the first time.
func (id *Identity) ensureKey() (*ecdsa.PrivateKey, error) {
	id.mu.Lock()
	defer id.mu.Unlock()
	if id.key != nil {
		return id.key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make the node key: %w", err)
	}
	pem, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFile(id.path(keyFile), pem, 0o600); err != nil {
		return nil, fmt.Errorf("save the node key: %w", err)
	}
	id.key = key
	return key, nil
}

func (id *Identity) path(name string) string { return filepath.Join(id.dir, name) }

// certificateRequest is a DER PKCS #10 request for nodeID, signed by key.
func certificateRequest(key *ecdsa.PrivateKey, nodeID string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: nodeID}}, key)
	if err != nil {
		return nil, fmt.Errorf("make the certificate request: %w", err)
	}
	return der, nil
}

// checkIssued makes sure a certificate from the control plane is what was
// asked for: for this key and node id, for client authentication, signed
// by ca. It is checked at its own start, not now, so that a control plane
// whose clock runs a little ahead does not make a good certificate look
// bad; the TLS handshake checks the time.
func checkIssued(leaf, ca *x509.Certificate, key *ecdsa.PrivateKey, nodeID string) error {
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("the node certificate is not for this node's key")
	}
	if leaf.Subject.CommonName != nodeID {
		return fmt.Errorf("the node certificate is for %q, not %q", leaf.Subject.CommonName, nodeID)
	}
	if !ca.BasicConstraintsValid || !ca.IsCA {
		return errors.New("the CA certificate is not a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: leaf.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return fmt.Errorf("check the node certificate against the CA: %w", err)
	}
	return nil
}

func tlsCertificate(leaf *x509.Certificate, key *ecdsa.PrivateKey) *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
}
