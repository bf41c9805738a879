package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/pki"
	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/store"
)

// Agents holds the agents' identities: for each node id, the public key of
// the agent that joined as it. It signs nodes' certificates when they join
// and renew, and says which node a call's certificate stands for.
type Agents struct {
	ca      *pki.Authority
	tokens  *Tokens
	store   store.Store
	clock   clockwork.Clock
	log     *slog.Logger
	awaited func(nodeID string) error

	// theirs are the operator's own CAs, whose certificates name a node
	// by their common name, without a join.
	theirs []*x509.Certificate
	// roots are the CAs a client certificate may come from: this control
	// plane's and theirs. The TLS handshake asks for a certificate but
	// does not check it, so that one from elsewhere is refused here, as
	// Unauthenticated, rather than as a handshake the client cannot read.
	roots *x509.CertPool
	// checked holds the verdict on each connection's client certificate,
	// keyed weakly by the certificate the handshake parsed, which lives as
	// long as the connection: a certificate is checked once per
	// connection, as the handshake would, not on every call.
	checked sync.Map // weak.Pointer[x509.Certificate] -> verdict

	mu   sync.RWMutex
	keys map[string][]byte // node id -> SHA-256 of its key
}

// AgentsOptions configures NewAgents.
type AgentsOptions struct {
	// CA signs the nodes' certificates. Required.
	CA *pki.Authority
	// Tokens holds the join tokens. Required.
	Tokens *Tokens
	// Store keeps the bindings. Required.
	Store store.Store
	// Loaded are the bindings the store had at start.
	Loaded []*store.NodeKey
	// ClientCAs are the operator's own CAs: a client certificate one of
	// them signed stands for the node its common name names.
	ClientCAs []*x509.Certificate
	// Awaited, when set, says whether a node is waiting for its agent to
	// join: a token made for one node (a launched instance's) joins only
	// then, so that one read from the instance's user data later joins
	// nothing.
	Awaited func(nodeID string) error
	Clock   clockwork.Clock
	Logger  *slog.Logger
}

// NewAgents holds the bindings the store had at start.
func NewAgents(o AgentsOptions) *Agents {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Agents{ca: o.CA, tokens: o.Tokens, store: o.Store, clock: o.Clock, log: o.Logger, theirs: o.ClientCAs, awaited: o.Awaited, roots: o.CA.CAPool(o.ClientCAs...), keys: make(map[string][]byte, len(o.Loaded))}
	for _, k := range o.Loaded {
		a.keys[k.NodeID] = k.KeyHash
	}
	return a
}

// keyHash is the SHA-256 of a key's DER SubjectPublicKeyInfo.
func keyHash(spki []byte) []byte {
	sum := sha256.Sum256(spki)
	return sum[:]
}

func parseRequest(der []byte, nodeID string) (*x509.CertificateRequest, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, apierr.Invalid("certificate_request", "is not a DER PKCS #10 request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, apierr.Invalid("certificate_request", "its signature does not verify: %v", err)
	}
	if csr.Subject.CommonName != nodeID {
		return nil, apierr.Invalid("certificate_request", "is for %q, not node %q", csr.Subject.CommonName, nodeID)
	}
	return csr, nil
}

// Join checks an agent's join token, binds the node id to the key in its
// certificate request, and signs the node's certificate. An agent that
// joins again with the key the node is bound to gets a new certificate; a
// different key is refused until an operator resets the node's identity.
// The token's use and the binding are saved in one write.
func (a *Agents) Join(ctx context.Context, nodeID, token string, csrDER []byte) (cert, ca []byte, err error) {
	csr, err := parseRequest(csrDER, nodeID)
	if err != nil {
		return nil, nil, err
	}
	hash := keyHash(csr.RawSubjectPublicKeyInfo)
	t := a.tokens
	t.mu.Lock()
	defer t.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	tok, err := t.verifyLocked(token)
	if err != nil || tok.Role != controlplanev1.Role_ROLE_AGENT {
		a.log.Warn("join refused: bad join token", "node", nodeID)
		return nil, nil, status.Error(codes.Unauthenticated, "join_token: is unknown, revoked, expired or not an agent token")
	}
	if tok.NodeID != "" && tok.NodeID != nodeID {
		a.log.Warn("join refused: token bound to another node; its user data may have been read", "node", nodeID, "token", tok.Name, "token_node", tok.NodeID)
		return nil, nil, status.Errorf(codes.PermissionDenied, "join_token: token %q is for another node", tok.Name)
	}
	if tok.NodeID != "" && a.awaited != nil {
		if err := a.awaited(nodeID); err != nil {
			a.log.Warn("join refused: node is not waiting for its agent", "node", nodeID, "token", tok.Name, "why", err)
			return nil, nil, status.Errorf(codes.PermissionDenied, "join_token: token %q: %v", tok.Name, err)
		}
	}
	if tok.MaxUses > 0 && tok.Used >= tok.MaxUses {
		return nil, nil, status.Errorf(codes.PermissionDenied, "join_token: token %q has been used by all %d agents it allows", tok.Name, tok.MaxUses)
	}
	if bound, ok := a.keys[nodeID]; ok && !bytes.Equal(bound, hash) {
		a.log.Warn("join refused: node id bound to another key", "node", nodeID)
		return nil, nil, status.Errorf(codes.FailedPrecondition,
			"node_id: node %q already has an identity, another machine's; an operator must reset it ('navarch reset-identity %s') before a new machine joins as it", nodeID, nodeID)
	}
	der, err := a.ca.SignNode(csr, nodeID)
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "sign the node's certificate: %v", err)
	}
	used := *tok
	used.Used++
	w := store.Write{Tokens: []*store.Token{&used}, NodeKeys: []*store.NodeKey{{NodeID: nodeID, KeyHash: hash, BoundAt: a.clock.Now()}}}
	if err := a.store.Apply(ctx, w); err != nil {
		a.log.Error("store write failed", "node", nodeID, "err", err)
		return nil, nil, apierr.NotSaved()
	}
	t.byName[tok.Name] = &used
	a.keys[nodeID] = hash
	a.log.Info("agent joined", "node", nodeID, "token", tok.Name)
	return der, a.ca.CACert(), nil
}

// Renew signs a new certificate for a node that calls with its current
// one; the request must be for the node's bound key.
func (a *Agents) Renew(nodeID string, csrDER []byte) ([]byte, error) {
	csr, err := parseRequest(csrDER, nodeID)
	if err != nil {
		return nil, err
	}
	a.mu.RLock()
	bound := a.keys[nodeID]
	a.mu.RUnlock()
	if !bytes.Equal(bound, keyHash(csr.RawSubjectPublicKeyInfo)) {
		return nil, apierr.Invalid("certificate_request", "is for a key other than node %q's", nodeID)
	}
	der, err := a.ca.SignNode(csr, nodeID)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "sign the node's certificate: %v", err)
	}
	return der, nil
}

// Reset forgets the key a node is bound to: its agent's certificate stops
// working at once, and a machine with a join token may join as the node.
func (a *Agents) Reset(ctx context.Context, nodeID string) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.keys[nodeID]; !ok {
		return false, nil
	}
	if err := a.store.Apply(ctx, store.Write{DeleteNodeKeys: []string{nodeID}}); err != nil {
		a.log.Error("store write failed", "node", nodeID, "err", err)
		return false, apierr.NotSaved()
	}
	delete(a.keys, nodeID)
	a.log.Info("node identity reset", "node", nodeID)
	return true, nil
}

// Forget drops the binding of nodes the store has deleted.
func (a *Agents) Forget(nodeIDs ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range nodeIDs {
		delete(a.keys, id)
	}
}

// clientChain checks the client certificate of the call's connection
// against this control plane's CA and the operator's client CAs, as the
// handshake would have, and returns it with the CA its chain ends at.
// presented is false when the client showed no certificate; err says why
// one shown is not trusted.
func (a *Agents) clientChain(ctx context.Context) (leaf, root *x509.Certificate, presented bool, err error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, nil, false, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil, nil, false, nil
	}
	certs := info.State.PeerCertificates
	leaf = certs[0]
	key := weak.Make(leaf)
	if v, ok := a.checked.Load(key); ok {
		v := v.(verdict)
		return leaf, v.root, true, v.err
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	// The verdict keeps the root, one of a.roots, and never the leaf: a
	// strong reference to it would keep it, and the verdict, forever. So
	// it keeps a refusal's words only, since x509's errors hold the
	// certificate they refused.
	var v verdict
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: a.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		v.err = errors.New(err.Error())
	} else if v.root = chains[0][len(chains[0])-1]; v.root == leaf {
		v.root, v.err = nil, errors.New("the certificate is one of the CAs itself, not a client's")
	}
	if _, loaded := a.checked.LoadOrStore(key, v); !loaded {
		runtime.AddCleanup(leaf, func(k weak.Pointer[x509.Certificate]) { a.checked.Delete(k) }, key)
	}
	return leaf, v.root, true, v.err
}

// verdict is what checking a client certificate found: the CA it chains
// to, or why it is not trusted.
type verdict struct {
	root *x509.Certificate
	err  error
}

// nodeOf returns the node a call's client certificate stands for, when it
// is trusted (see clientChain) and is a node certificate from this CA for
// the key the node is bound to, or one of the operator's client CAs
// signed.
func (a *Agents) nodeOf(ctx context.Context) (string, bool) {
	leaf, root, _, err := a.clientChain(ctx)
	if err != nil || leaf == nil {
		return "", false
	}
	if slices.ContainsFunc(a.theirs, func(c *x509.Certificate) bool { return c.Equal(root) }) {
		// The operator's PKI vouches for the node: no join, no binding.
		return leaf.Subject.CommonName, leaf.Subject.CommonName != ""
	}
	if !slices.Contains(leaf.Subject.OrganizationalUnit, pki.NodeUnit) {
		return "", false
	}
	id := leaf.Subject.CommonName
	a.mu.RLock()
	bound, ok := a.keys[id]
	a.mu.RUnlock()
	if !ok || !bytes.Equal(bound, keyHash(leaf.RawSubjectPublicKeyInfo)) {
		return "", false
	}
	return id, true
}

type nodeKey struct{}

// NodeFrom returns the node the calling agent's certificate stands for.
func NodeFrom(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(nodeKey{}).(string)
	return id, ok
}

// verifyLocked finds the token a secret belongs to, if the token works.
// The caller holds t.mu.
func (t *Tokens) verifyLocked(token string) (*store.Token, error) {
	name, secret, ok := strings.Cut(token, ".")
	if !ok || name == "" || secret == "" {
		return nil, errBadToken
	}
	sum := sha256.Sum256([]byte(secret))
	tok := t.byName[name]
	if tok == nil || subtle.ConstantTimeCompare(sum[:], tok.Hash) != 1 {
		return nil, errBadToken
	}
	now := t.clock.Now()
	if !tok.RevokedAt.IsZero() || (!tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt)) {
		return nil, errBadToken
	}
	return tok, nil
}
