package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
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
	_, _, err = a.Join(t.Context(), "other-node", token, request(t, "other-node"))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "another node") {
		t.Fatalf("join as another node: %v", err)
	}
	if _, _, err := a.Join(t.Context(), "train-0a1b2c3d", token, request(t, "train-0a1b2c3d")); err != nil {
		t.Fatalf("join as its node: %v", err)
	}
	// After a restart the token is still spent.
	restarted := NewTokens(st, loaded(t, st), nil, nil)
	again := NewAgents(AgentsOptions{CA: ca, Tokens: restarted, Store: st})
	if _, _, err := again.Join(t.Context(), "train-0a1b2c3d", token, request(t, "train-0a1b2c3d")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("second join: %v", err)
	}
	for _, info := range restarted.List() {
		if strings.HasPrefix(info.GetName(), "boot-") && (info.GetNodeId() != "train-0a1b2c3d" || info.GetMaxUses() != 1 || info.GetExpiresAt() == nil) {
			t.Fatalf("listed %v", info)
		}
	}
}

// TestBootstrapTokenNeedsAnAwaitedNode: a node's token joins only while
// the node waits for its agent; one for no node is refused; spent and
// long-expired bootstrap tokens are dropped as new ones are made.
func TestBootstrapTokenNeedsAnAwaitedNode(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.Open(pki.Options{Dir: filepath.Join(dir, "pki"), CAOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	clock := clockwork.NewFakeClockAt(time.Now())
	st := openStore(t, filepath.Join(dir, "store"))
	tokens := NewTokens(st, nil, clock, nil)
	waiting := map[string]bool{"n1": true}
	a := NewAgents(AgentsOptions{CA: ca, Tokens: tokens, Store: st, Awaited: func(id string) error {
		if !waiting[id] {
			return errors.New("node " + id + " is not waiting for its agent")
		}
		return nil
	}})
	if _, err := tokens.CreateForNode(t.Context(), "", time.Hour); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a token for no node: %v", err)
	}
	t2, err := tokens.CreateForNode(t.Context(), "n2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Join(t.Context(), "n2", t2, request(t, "n2")); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "not waiting") {
		t.Fatalf("join of a node not waiting: %v", err)
	}
	t1, err := tokens.CreateForNode(t.Context(), "n1", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Join(t.Context(), "n1", t1, request(t, "n1")); err != nil {
		t.Fatalf("join of a waiting node: %v", err)
	}
	for _, info := range tokens.List() {
		if life := info.GetExpiresAt().AsTime().Sub(info.GetCreatedAt().AsTime()); info.GetNodeId() == "n1" && life != MaxBootTTL {
			t.Fatalf("a bootstrap token lives %s", life)
		}
	}
	// Later, n1's spent token and n2's expired one go as a new one is made.
	clock.Advance(MaxBootTTL + 2*time.Hour)
	if _, err := tokens.CreateForNode(t.Context(), "n3", time.Hour); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, tok := range loaded(t, st) {
		left = append(left, tok.NodeID)
	}
	if len(left) != 1 || left[0] != "n3" {
		t.Fatalf("stored bootstrap tokens are for %v, want n3 alone", left)
	}
}

func request(t *testing.T, node string) []byte {
	t.Helper()
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
