package controlplane_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/pki"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// statusOver calls GetFleetStatus through target, failing fast.
func statusOver(t *testing.T, target rpcclient.Target) error {
	t.Helper()
	conn, err := rpcclient.Dial(target)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = controlplanev1.NewControlPlaneServiceClient(conn).GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	return err
}

// TestTLSIsOnByDefault: the control plane serves TLS with its own CA; a
// client that trusts that CA gets through, one that speaks plaintext or
// trusts another CA does not.
func TestTLSIsOnByDefault(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	if err := statusOver(t, cp.Target()); err != nil {
		t.Fatalf("a client trusting the control plane's CA: %v", err)
	}
	plain := cp.Target()
	plain.Insecure = true
	if err := statusOver(t, plain); status.Code(err) != codes.Unavailable {
		t.Fatalf("a plaintext client got %v, want Unavailable", err)
	}
	other, err := pki.Open(pki.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	stranger := cp.Target()
	stranger.CACert = other.CAFile()
	if err := statusOver(t, stranger); status.Code(err) != codes.Unavailable {
		t.Fatalf("a client trusting another CA got %v, want Unavailable", err)
	}
	for _, key := range []string{"ca.key", "server.key"} {
		st, err := os.Stat(filepath.Join(cp.Config.DataDir, "pki", key))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", key, err, st.Mode().Perm())
		}
	}
}

// TestPlaintextOnlyOnLoopback: --insecure serves plaintext on loopback and
// is refused anywhere else.
func TestPlaintextOnlyOnLoopback(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{Config: func(c *controlplane.Config) { c.Insecure = true }})
	if err := statusOver(t, cp.Target()); err != nil {
		t.Fatalf("plaintext on loopback: %v", err)
	}
	if cp.Server.CAFile() != "" {
		t.Fatal("a plaintext control plane names a CA")
	}
	tests := []struct {
		name, want string
		edit       func(*controlplane.Config)
	}{
		{"wildcard", "insecure: plaintext is served only on a loopback address", func(c *controlplane.Config) { c.Listen = "0.0.0.0:50051" }},
		{"host-address", "insecure: plaintext is served only on a loopback address", func(c *controlplane.Config) { c.Listen = "10.0.0.5:50051" }},
		{"with-tls-settings", "insecure:", func(c *controlplane.Config) { c.TLS.Names = []string{"cp.example.com"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := controlplane.Defaults()
			cfg.DataDir = t.TempDir()
			cfg.Insecure = true
			tt.edit(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

// TestBroughtCertificate: a certificate and key the operator brings are
// served instead of the control plane's own, and a half-given pair is
// refused at start.
func TestBroughtCertificate(t *testing.T) {
	theirs, err := pki.Open(pki.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(theirs.CAFile())
	cp := cptest.Start(t, cptest.Options{CACert: theirs.CAFile(), Config: func(c *controlplane.Config) {
		c.TLS.CertFile = filepath.Join(dir, "server.crt")
		c.TLS.KeyFile = filepath.Join(dir, "server.key")
	}})
	if cp.Server.CAFile() != "" {
		t.Fatal("a control plane serving a brought certificate names its own CA")
	}
	if err := statusOver(t, cp.Target()); err != nil {
		t.Fatalf("a client trusting the operator's CA: %v", err)
	}
	// Its own CA signs only agents' certificates: it issues no server
	// certificate beside the brought one.
	if _, err := os.Stat(filepath.Join(cp.Config.DataDir, "pki", "server.crt")); !os.IsNotExist(err) {
		t.Fatalf("the control plane issued a server certificate beside the brought one: %v", err)
	}
	cfg := controlplane.Defaults()
	cfg.TLS.CertFile = filepath.Join(dir, "server.crt")
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "tls: cert_file and key_file go together") {
		t.Fatalf("a certificate without a key: %v", err)
	}
}

// rawCodec sends bytes as they are, to put on the wire what a real client's
// protobuf library would refuse to encode.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(mem.BufferSlice, any) error { return nil }

// TestInvalidUTF8OverTheWire: a request with invalid UTF-8 in a string
// field is InvalidArgument naming it, over real gRPC and TLS.
func TestInvalidUTF8OverTheWire(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	req := protowire.AppendTag(nil, 1, protowire.BytesType)
	req = protowire.AppendBytes(req, []byte("n1"))
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendBytes(req, []byte{'h', 0xff})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []byte
	err := cp.Conn.Invoke(ctx, "/navarch.node.v1.NodeService/RegisterNode", req, &out, grpc.ForceCodecV2(rawCodec{}))
	if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "hostname:") {
		t.Fatalf("got %v, want InvalidArgument naming hostname", err)
	}
}
