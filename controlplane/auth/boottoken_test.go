package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/pki"
)

// TestBootstrapTokenJoinsItsNodeOnce: the token made for a launched
// instance joins as its node alone, once, and survives a restart so.
func TestBootstrapTokenJoinsItsNodeOnce(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Open(pki.Options{Dir: filepath.Join(dir, "pki"), CAOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, filepath.Join(dir, "store"))
	tokens := NewTokens(st, nil, nil, nil)
	a := NewAgents(AgentsOptions{CA: ca, Tokens: tokens, Store: st})
	token, err := tokens.CreateForNode(t.Context(), "train-0a1b2c3d", time.Hour)
	if err != nil || !strings.HasPrefix(token, "boot-") {
		t.Fatalf("token %q, %v", token, err)
	}
	csrFor := func(node string) []byte {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: node}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	_, _, err = a.Join(t.Context(), "other-node", token, csrFor("other-node"))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "another node") {
		t.Fatalf("join as another node: %v", err)
	}
	if _, _, err := a.Join(t.Context(), "train-0a1b2c3d", token, csrFor("train-0a1b2c3d")); err != nil {
		t.Fatalf("join as its node: %v", err)
	}
	// After a restart the token is still spent.
	restarted := NewTokens(st, loaded(t, st), nil, nil)
	again := NewAgents(AgentsOptions{CA: ca, Tokens: restarted, Store: st})
	if _, _, err := again.Join(t.Context(), "train-0a1b2c3d", token, csrFor("train-0a1b2c3d")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second join: %v", err)
	}
	for _, info := range restarted.List() {
		if strings.HasPrefix(info.GetName(), "boot-") && (info.GetNodeId() != "train-0a1b2c3d" || info.GetMaxUses() != 1 || info.GetExpiresAt() == nil) {
			t.Fatalf("listed %v", info)
		}
	}
}
