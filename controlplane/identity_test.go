package controlplane_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/pki"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// machine is an agent's machine: its own key, and the certificate it got.
type machine struct {
	t    *testing.T
	cp   *cptest.ControlPlane
	key  *ecdsa.PrivateKey
	cert *tls.Certificate
}

func newMachine(t *testing.T, cp *cptest.ControlPlane) *machine {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &machine{t: t, cp: cp, key: key}
}

func (m *machine) request(nodeID string) []byte {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: nodeID}}, m.key)
	if err != nil {
		m.t.Fatal(err)
	}
	return der
}

// nodes is NodeService as this machine calls it: with its certificate
// once it has one, and never with an operator token.
func (m *machine) nodes() nodev1.NodeServiceClient {
	return nodev1.NewNodeServiceClient(m.conn())
}

// ops is ControlPlaneService as this machine would call it, with its
// node certificate and no operator token.
func (m *machine) ops() controlplanev1.ControlPlaneServiceClient {
	return controlplanev1.NewControlPlaneServiceClient(m.conn())
}

func (m *machine) conn() *grpc.ClientConn {
	target := m.cp.Target()
	target.Token = ""
	if m.cert != nil {
		target.Certificate = func() (*tls.Certificate, error) { return m.cert, nil }
	}
	conn, err := rpcclient.Dial(target)
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func (m *machine) join(nodeID, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := m.nodes().JoinNode(ctx, &nodev1.JoinNodeRequest{NodeId: nodeID, JoinToken: token, CertificateRequest: m.request(nodeID)})
	if err != nil {
		return err
	}
	m.cert = &tls.Certificate{Certificate: [][]byte{resp.GetCertificate()}, PrivateKey: m.key}
	return nil
}

func (m *machine) register(nodeID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := m.nodes().RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: nodeID, Gpus: fleettest.GPUs(1)})
	return err
}

// watchCommands opens the node's command stream and returns how its
// first read ends.
func (m *machine) watchCommands(nodeID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := m.nodes().WatchNodeCommands(ctx, &nodev1.WatchNodeCommandsRequest{NodeId: nodeID})
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

func TestAgentsJoinAndActOnlyForTheirNode(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) { c.AgentIdentities = true }})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	joinTok, err := cp.Ops.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "rack-a", Role: controlplanev1.Role_ROLE_AGENT, Uses: 2})
	if err != nil {
		t.Fatal(err)
	}
	a := newMachine(t, cp)
	if err := a.register("gpu-1"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("an agent without a certificate: %v, want Unauthenticated", err)
	}
	if err := a.watchCommands("gpu-1"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a command stream without a certificate: %v, want Unauthenticated", err)
	}
	if err := a.join("gpu-1", "rack-a.wrong"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong join token: %v", err)
	}
	if err := a.join("gpu-1", cp.AdminToken()); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("an operator token is no join token: %v", err)
	}
	if err := a.join("gpu-1", joinTok.GetToken()); err != nil {
		t.Fatal(err)
	}
	if err := a.register("gpu-1"); err != nil {
		t.Fatalf("the agent on its own node: %v", err)
	}
	if err := a.register("gpu-2"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("the agent acting for another node: %v, want PermissionDenied", err)
	}
	// Nor can it forge another node's XIDs, take its commands or report
	// their results (which would mark a drain done with its jobs running).
	forged := []error{
		func() error {
			_, err := a.nodes().ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "gpu-2", Events: []*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79}}})
			return err
		}(),
		func() error {
			_, err := a.nodes().GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "gpu-2"})
			return err
		}(),
		a.watchCommands("gpu-2"),
		func() error {
			_, err := a.nodes().ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{NodeId: "gpu-2", CommandId: "cmd-1", Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED})
			return err
		}(),
		func() error {
			_, err := a.nodes().Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "gpu-2"})
			return err
		}(),
	}
	for i, err := range forged {
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("forged call %d for another node: %v, want PermissionDenied", i, err)
		}
	}
	// A node's certificate is no operator's token: it reads and changes
	// nothing.
	if _, err := a.ops().ListNodes(ctx, &controlplanev1.ListNodesRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("an agent's certificate read the fleet: %v", err)
	}
	if _, err := a.ops().CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "gpu-1"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("an agent's certificate cordoned a node: %v", err)
	}
	// A join token reads nothing and changes nothing.
	agentOps := opsAs(t, cp, joinTok.GetToken())
	if _, err := agentOps.ListNodes(ctx, &controlplanev1.ListNodesRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a join token read the fleet: %v", err)
	}
	// A second machine with a valid token cannot take the node id.
	b := newMachine(t, cp)
	if err := b.join("gpu-1", joinTok.GetToken()); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a second machine claiming gpu-1: %v, want FailedPrecondition", err)
	}
	// The same machine joining again is fine; the token allows two joins.
	if err := a.join("gpu-1", joinTok.GetToken()); err != nil {
		t.Fatalf("the same machine joining again: %v", err)
	}
	if err := b.join("gpu-2", joinTok.GetToken()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a third join with a two-use token: %v, want PermissionDenied", err)
	}
	// Renewal: for the same key only.
	renewed, err := a.nodes().RenewNodeCertificate(ctx, &nodev1.RenewNodeCertificateRequest{CertificateRequest: a.request("gpu-1")})
	if err != nil || len(renewed.GetCertificate()) == 0 {
		t.Fatalf("renew: %v", err)
	}
	if _, err := a.nodes().RenewNodeCertificate(ctx, &nodev1.RenewNodeCertificateRequest{CertificateRequest: b.request("gpu-1")}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("renewing for another key: %v", err)
	}
	// The identity survives a restart.
	cp.Restart()
	if err := a.register("gpu-1"); err != nil {
		t.Fatalf("the agent after a restart: %v", err)
	}
	// An operator resets it: the old certificate stops working, and the
	// second machine may join as the node.
	if resp, err := cp.Ops.ResetNodeIdentity(ctx, &controlplanev1.ResetNodeIdentityRequest{NodeId: "gpu-1"}); err != nil || !resp.GetHadIdentity() {
		t.Fatalf("reset: %v, %v; want had_identity", resp, err)
	}
	if resp, err := cp.Ops.ResetNodeIdentity(ctx, &controlplanev1.ResetNodeIdentityRequest{NodeId: "gpu-1"}); err != nil || resp.GetHadIdentity() {
		t.Fatalf("second reset: %v, %v; want success without an identity", resp, err)
	}
	if _, err := cp.Ops.ResetNodeIdentity(ctx, &controlplanev1.ResetNodeIdentityRequest{NodeId: "gpu-typo"}); status.Code(err) != codes.NotFound ||
		!strings.HasPrefix(status.Convert(err).Message(), "node_id:") {
		t.Fatalf("reset of an unknown id: %v, want NotFound naming node_id", err)
	}
	if err := a.register("gpu-1"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a reset node's old certificate: %v, want Unauthenticated", err)
	}
	more, err := cp.Ops.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "rack-b", Role: controlplanev1.Role_ROLE_AGENT})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.join("gpu-1", more.GetToken()); err != nil {
		t.Fatalf("a new machine after the reset: %v", err)
	}
	if err := b.register("gpu-1"); err != nil {
		t.Fatal(err)
	}
}

// TestAgentsWithTheOperatorsOwnCertificates: with tls.client_ca_file, an
// agent may present a certificate from the operator's own PKI, whose
// common name is its node id, instead of joining; it acts for that node
// only.
func TestAgentsWithTheOperatorsOwnCertificates(t *testing.T) {
	theirs, err := pki.Open(pki.Options{Dir: t.TempDir(), CAOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) {
		c.AgentIdentities = true
		c.TLS.ClientCAFile = theirs.CAFile()
	}})
	m := newMachine(t, cp)
	csr, err := x509.ParseCertificateRequest(m.request("gpu-9"))
	if err != nil {
		t.Fatal(err)
	}
	der, err := theirs.SignNode(csr, "gpu-9")
	if err != nil {
		t.Fatal(err)
	}
	m.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: m.key}
	if err := m.register("gpu-9"); err != nil {
		t.Fatalf("a node with the operator's certificate: %v", err)
	}
	if err := m.register("gpu-8"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("acting for another node: %v, want PermissionDenied", err)
	}
}

// TestUntrustedClientCertificatesAreUnauthenticated: a client certificate
// from a CA this control plane does not trust, for an agent or beside a
// valid operator token, gets Unauthenticated with the reason, from the
// control plane, not a broken handshake; health stays open.
func TestUntrustedClientCertificatesAreUnauthenticated(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) { c.AgentIdentities = true }})
	stranger, err := pki.Open(pki.Options{Dir: t.TempDir(), CAOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	m := newMachine(t, cp)
	csr, err := x509.ParseCertificateRequest(m.request("gpu-1"))
	if err != nil {
		t.Fatal(err)
	}
	der, err := stranger.SignNode(csr, "gpu-1")
	if err != nil {
		t.Fatal(err)
	}
	m.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: m.key}
	isRefusal := func(err error) bool {
		return status.Code(err) == codes.Unauthenticated && strings.Contains(status.Convert(err).Message(), "client certificate: not one this control plane trusts")
	}
	if err := m.register("gpu-1"); !isRefusal(err) {
		t.Fatalf("an agent with another CA's certificate: %v, want Unauthenticated naming the certificate", err)
	}

	// The same certificate beside the admin token, here and on a control
	// plane whose agents call without identities (a simulator's).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range []*cptest.ControlPlane{cp, cptest.Start(t, cptest.Options{})} {
		target := c.Target()
		target.Certificate = func() (*tls.Certificate, error) { return m.cert, nil }
		conn, err := rpcclient.Dial(target)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := controlplanev1.NewControlPlaneServiceClient(conn).GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{}); !isRefusal(err) {
			t.Fatalf("identities %v: an admin token with another CA's certificate: %v, want Unauthenticated naming the certificate", c.Config.AgentIdentities, err)
		}
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("health with any certificate: %v", err)
		}
	}
	// Nothing was registered.
	if _, err := cp.Ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "gpu-1"}); status.Code(err) != codes.NotFound {
		t.Fatalf("gpu-1 after the refusals: %v, want NotFound", err)
	}
}
