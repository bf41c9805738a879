package controlplane_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/providertest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// userDataRecorder is the test provider, rendering each node's user data
// as a cloud provider does.
type userDataRecorder struct {
	providertest.Recorder
	rendered map[string][]byte
}

func (p *userDataRecorder) Provision(ctx context.Context, spec provider.Spec) ([]provider.Instance, error) {
	if spec.UserData == nil {
		return nil, nil
	}
	p.rendered = map[string][]byte{}
	for _, id := range spec.NodeIDs {
		b, err := spec.UserData(ctx, id, spec.Labels)
		if err != nil {
			return nil, err
		}
		p.rendered[id] = b
	}
	return p.Recorder.Provision(ctx, spec)
}

// TestServedAgentPackage: with bootstrap.package_file, the control plane
// serves the package over HTTP/1.1 on its own TLS port, gRPC keeps
// working there, and each launched node's user data points at the
// package with its SHA-256, pins the CA, and carries a join token that
// joins as that node alone.
func TestServedAgentPackage(t *testing.T) {
	deb := filepath.Join(t.TempDir(), "navarch-agent_1.0_amd64.deb")
	body := []byte("!<arch>\nnot really a package, but bytes to check\n")
	if err := os.WriteFile(deb, body, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	p := &userDataRecorder{}
	h := newHarness(t, withProviders(p), withConfig(func(c *controlplane.Config) {
		c.TLS.Names = []string{"localhost"}
		c.Bootstrap = controlplane.BootstrapConfig{PackageFile: deb}
	}))
	ctx := ctxT(t)
	resp, err := h.ops.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{Provider: "test", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(h.Addr)
	url := "https://localhost:" + port + "/packages/navarch-agent_1.0_amd64.deb"
	tokens := map[string]string{}
	for _, n := range resp.GetNodes() {
		var doc struct {
			WriteFiles []struct{ Path, Content string } `yaml:"write_files"`
			Runcmd     [][]string                       `yaml:"runcmd"`
		}
		if err := yaml.Unmarshal(p.rendered[n.GetNodeId()], &doc); err != nil {
			t.Fatal(err)
		}
		cmd := strings.Join(doc.Runcmd[len(doc.Runcmd)-1], " ")
		if !strings.Contains(cmd, url) || !strings.Contains(cmd, hex.EncodeToString(sum[:])) || !strings.Contains(cmd, "--no-tls-verify") {
			t.Fatalf("install command %q", cmd)
		}
		for _, f := range doc.WriteFiles {
			if f.Path == "/etc/navarch/agent.yaml" {
				var settings map[string]string
				if err := yaml.Unmarshal([]byte(f.Content), &settings); err != nil {
					t.Fatal(err)
				}
				if settings["node-id"] != n.GetNodeId() || !strings.HasPrefix(settings["ca-hash"], "sha256:") || settings["server"] != "localhost:"+port {
					t.Fatalf("agent.yaml %v", settings)
				}
				tokens[n.GetNodeId()] = settings["join-token"]
			}
		}
	}
	if len(tokens) != 2 {
		t.Fatalf("tokens %v", tokens)
	}

	// The package over HTTP/1.1, checked against the control plane's CA.
	ca, err := os.ReadFile(h.Server.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	r, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r.Body)
	_ = r.Body.Close()
	if r.StatusCode != http.StatusOK || string(got) != string(body) {
		t.Fatalf("GET the package: %d, %d bytes", r.StatusCode, len(got))
	}
	if r, err := hc.Get("https://localhost:" + port + "/packages/../admin.token"); err != nil || r.StatusCode != http.StatusNotFound {
		t.Fatalf("another path: %v %v", r, err)
	}

	// A node's token joins as that node alone.
	ids := []string{resp.GetNodes()[0].GetNodeId(), resp.GetNodes()[1].GetNodeId()}
	_, err = h.node.JoinNode(ctx, &nodev1.JoinNodeRequest{NodeId: ids[1], JoinToken: tokens[ids[0]], CertificateRequest: newMachine(t, h.ControlPlane).request(ids[1])})
	wantCode(t, err, codes.PermissionDenied, "join_token")
	if _, err := h.node.JoinNode(ctx, &nodev1.JoinNodeRequest{NodeId: ids[0], JoinToken: tokens[ids[0]], CertificateRequest: newMachine(t, h.ControlPlane).request(ids[0])}); err != nil {
		t.Fatalf("join as its node: %v", err)
	}
}
