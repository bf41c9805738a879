package identity

import (
	"cmp"
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
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/rpcclient"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

const (
	goodToken = "join.s3cret-token"
	certLife  = 90 * 24 * time.Hour
)

// fakeCP is a NodeService over real TLS on loopback with a CA of its own,
// made here: JoinNode checks the token and binds a node id to the key it
// first joined with, RenewNodeCertificate and Heartbeat need the node's
// certificate. Certificates are issued, and client certificates checked,
// at the fake clock's time.
type fakeCP struct {
	t      *testing.T
	clock  *clockwork.FakeClock
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	addr   string
	caFile string

	mu sync.Mutex
	// keys binds each joined node id to its key.
	keys   map[string]crypto.PublicKey
	joins  []*nodev1.JoinNodeRequest
	renews int
	// failRenewals fails that many renewals with Unavailable.
	failRenewals int
	// renewLife, when set, is the life of renewed certificates.
	renewLife time.Duration
	// tamper, when set, changes a certificate JoinNode is about to give.
	tamper func(*x509.Certificate, crypto.PublicKey) (*x509.Certificate, *x509.Certificate)
	// seen is the serial of the certificate each heartbeat came with.
	seen []*big.Int
}

type fakeNodeService struct {
	nodev1.UnimplementedNodeServiceServer
	f *fakeCP
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

func mustSign(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
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

// newCA is a CA valid a year either side of now.
func newCA(t *testing.T, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-365 * 24 * time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	return mustSign(t, tmpl, tmpl, key.Public(), key), key
}

func newFakeCP(t *testing.T) *fakeCP {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Now())
	f := &fakeCP{t: t, clock: clock, keys: map[string]crypto.PublicKey{}}
	f.caCert, f.caKey = newCA(t, clock.Now())
	f.caFile = filepath.Join(t.TempDir(), "cp-ca.crt")
	if err := os.WriteFile(f.caFile, encodeCertificate(f.caCert), 0o644); err != nil {
		t.Fatal(err)
	}
	serverKey := newKey(t)
	server := mustSign(t, &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "control plane"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, f.caCert, serverKey.Public(), f.caKey)
	pool := x509.NewCertPool()
	pool.AddCert(f.caCert)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{server.Raw, f.caCert.Raw}, PrivateKey: serverKey}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
		Time:         clock.Now,
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	nodev1.RegisterNodeServiceServer(srv, fakeNodeService{f: f})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return f
}

// issue signs a client certificate for csr, valid from now for life.
func (f *fakeCP) issue(csr *x509.CertificateRequest, life time.Duration) *x509.Certificate {
	now := f.clock.Now()
	return mustSign(f.t, &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: csr.Subject.CommonName},
		NotBefore: now, NotAfter: now.Add(life),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, f.caCert, csr.PublicKey, f.caKey)
}

func parseRequest(der []byte) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate_request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate_request: %v", err)
	}
	return csr, nil
}

// caller is the node certificate the call came with.
func caller(ctx context.Context) (*x509.Certificate, error) {
	p, _ := peer.FromContext(ctx)
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
		return ti.State.VerifiedChains[0][0], nil
	}
	return nil, status.Error(codes.Unauthenticated, "no node certificate")
}

func (s fakeNodeService) JoinNode(_ context.Context, req *nodev1.JoinNodeRequest) (*nodev1.JoinNodeResponse, error) {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.joins = append(f.joins, req)
	if req.GetJoinToken() != goodToken {
		return nil, status.Error(codes.Unauthenticated, "join token not valid")
	}
	csr, err := parseRequest(req.GetCertificateRequest())
	if err != nil {
		return nil, err
	}
	if csr.Subject.CommonName != req.GetNodeId() {
		return nil, status.Error(codes.InvalidArgument, "certificate_request is not for node_id")
	}
	if k, ok := f.keys[req.GetNodeId()]; ok && !k.(*ecdsa.PublicKey).Equal(csr.PublicKey) {
		return nil, status.Error(codes.AlreadyExists, "node joined with another key")
	}
	f.keys[req.GetNodeId()] = csr.PublicKey
	cert, ca := f.issue(csr, certLife), f.caCert
	if f.tamper != nil {
		cert, ca = f.tamper(cert, csr.PublicKey)
	}
	return &nodev1.JoinNodeResponse{Certificate: cert.Raw, CaCertificate: ca.Raw}, nil
}

func (s fakeNodeService) RenewNodeCertificate(ctx context.Context, req *nodev1.RenewNodeCertificateRequest) (*nodev1.RenewNodeCertificateResponse, error) {
	f := s.f
	cert, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	csr, err := parseRequest(req.GetCertificateRequest())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renews++
	if f.failRenewals > 0 {
		f.failRenewals--
		return nil, status.Error(codes.Unavailable, "control plane busy")
	}
	if csr.Subject.CommonName != cert.Subject.CommonName || !cert.PublicKey.(*ecdsa.PublicKey).Equal(csr.PublicKey) {
		return nil, status.Error(codes.PermissionDenied, "not the caller's node and key")
	}
	return &nodev1.RenewNodeCertificateResponse{Certificate: f.issue(csr, cmp.Or(f.renewLife, certLife)).Raw}, nil
}

func (s fakeNodeService) Heartbeat(ctx context.Context, req *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error) {
	cert, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if cert.Subject.CommonName != req.GetNodeId() {
		return nil, status.Error(codes.PermissionDenied, "not the caller's node")
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.seen = append(s.f.seen, cert.SerialNumber)
	return &nodev1.HeartbeatResponse{}, nil
}

func (f *fakeCP) state() (joins, renews int, seen []*big.Int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.joins), f.renews, append([]*big.Int(nil), f.seen...)
}

// joinClient reaches the fake as an agent that has not joined: it trusts
// the fake's CA and presents no certificate.
func (f *fakeCP) joinClient(t *testing.T) nodev1.NodeServiceClient {
	t.Helper()
	return f.client(t, rpcclient.Target{Addr: f.addr, CACert: f.caFile})
}

// nodeClient reaches the fake with id's certificate.
func (f *fakeCP) nodeClient(t *testing.T, id *Identity) nodev1.NodeServiceClient {
	t.Helper()
	return f.client(t, rpcclient.Target{Addr: f.addr, CACert: id.CAFile(), Certificate: id.Certificate})
}

func (f *fakeCP) client(t *testing.T, target rpcclient.Target) nodev1.NodeServiceClient {
	t.Helper()
	conn, err := rpcclient.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return nodev1.NewNodeServiceClient(conn)
}

// pemCertificate reads the certificate in a PEM file.
func pemCertificate(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
