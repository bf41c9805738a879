// Package auth decides who is calling the control plane and what they may
// do: operator tokens, stored only as hashes, each with a role; the one
// table of what every RPC needs (Required); and the gate that refuses a
// call before its request is read.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/store"
)

// AdminTokenFile is the file in the data directory where the first admin
// token is written on first start, readable by its owner only.
const AdminTokenFile = "admin.token"

// MinTTL is the shortest life a token may be given.
const MinTTL = time.Minute

// PolicyName is who the audit log and a command's issued_by name for a
// change the fault policy made. No token may take the name, so no
// operator's change reads as the policy's.
const PolicyName = display.ByPolicy

// Caller is who made a call.
type Caller struct {
	Name string
	Role controlplanev1.Role
}

// Tokens holds the operator tokens, kept in the store.
type Tokens struct {
	store store.Store
	clock clockwork.Clock
	log   *slog.Logger

	mu     sync.RWMutex
	byName map[string]*store.Token
}

// NewTokens holds the tokens the store had at start.
func NewTokens(st store.Store, loaded []*store.Token, clock clockwork.Clock, log *slog.Logger) *Tokens {
	if clock == nil {
		clock = clockwork.NewRealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tokens{store: st, clock: clock, log: log, byName: make(map[string]*store.Token, len(loaded))}
	for _, tok := range loaded {
		t.byName[tok.Name] = tok
	}
	return t
}

// Bootstrap makes the first admin token when there is no token at all, and
// writes it to DATA_DIR/admin.token (0600), so the operator who started
// the control plane can use it. It returns the file's path, or "" when
// tokens existed already.
func (t *Tokens) Bootstrap(ctx context.Context, dataDir string) (string, error) {
	t.mu.RLock()
	n := len(t.byName)
	t.mu.RUnlock()
	if n > 0 {
		return "", nil
	}
	path := filepath.Join(dataDir, AdminTokenFile)
	secret, err := newSecret()
	if err != nil {
		return "", err
	}
	token := "admin." + secret
	// The file first: a token stored whose secret was lost would lock the
	// operator out.
	if err := WriteSecret(path, token); err != nil {
		return "", err
	}
	if _, err := t.add(ctx, "admin", controlplanev1.Role_ROLE_ADMIN, secret, 0, 0); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("store the first admin token: %w", err)
	}
	return path, nil
}

// Create makes a token and returns it whole ("NAME.SECRET"); only its hash
// is kept. uses bounds the agents an agent token may join (0: no bound).
func (t *Tokens) Create(ctx context.Context, name string, role controlplanev1.Role, ttl time.Duration, uses int) (string, *controlplanev1.TokenInfo, error) {
	if err := CheckName(name); err != nil {
		return "", nil, err
	}
	if name == PolicyName {
		return "", nil, apierr.Invalid("name", "%q is reserved: the audit log names the fault policy so", name)
	}
	if _, ok := controlplanev1.Role_name[int32(role)]; !ok || role == controlplanev1.Role_ROLE_UNSPECIFIED {
		return "", nil, apierr.Invalid("role", "is required: viewer, operator, admin or agent")
	}
	if uses != 0 && role != controlplanev1.Role_ROLE_AGENT {
		return "", nil, apierr.Invalid("uses", "only bounds an agent token's joins")
	}
	if ttl != 0 && ttl < MinTTL {
		return "", nil, apierr.Invalid("ttl", "%s is shorter than %s", ttl, MinTTL)
	}
	secret, err := newSecret()
	if err != nil {
		return "", nil, status.Error(codes.Internal, "no randomness for a token")
	}
	tok, err := t.add(ctx, name, role, secret, ttl, uses)
	if err != nil {
		return "", nil, err
	}
	t.log.Info("token created", "name", name, "role", role)
	return name + "." + secret, Info(tok), nil
}

func (t *Tokens) add(ctx context.Context, name string, role controlplanev1.Role, secret string, ttl time.Duration, uses int) (*store.Token, error) {
	sum := sha256.Sum256([]byte(secret))
	now := t.clock.Now()
	tok := &store.Token{Name: name, Role: role, Hash: sum[:], CreatedAt: now, MaxUses: uses}
	if ttl > 0 {
		tok.ExpiresAt = now.Add(ttl)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byName[name] != nil {
		return nil, status.Errorf(codes.AlreadyExists, "name: a token named %q exists; revoked tokens keep their names", name)
	}
	if err := t.store.Apply(ctx, store.Write{Tokens: []*store.Token{tok}}); err != nil {
		t.log.Error("store write failed", "token", name, "err", err)
		return nil, apierr.NotSaved()
	}
	t.byName[name] = tok
	return tok, nil
}

// CreateForNode makes the single-use agent token an instance the control
// plane launches joins with: it joins as nodeID alone, once, within ttl.
// Its name is "boot-" and random hex digits.
func (t *Tokens) CreateForNode(ctx context.Context, nodeID string, ttl time.Duration) (string, error) {
	if nodeID == "" {
		return "", apierr.Invalid("node_id", "is required: a bootstrap token is for one node")
	}
	secret, err := newSecret()
	if err != nil {
		return "", status.Error(codes.Internal, "no randomness for a token")
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return "", status.Error(codes.Internal, "no randomness for a token")
	}
	name := "boot-" + hex.EncodeToString(suffix)
	sum := sha256.Sum256([]byte(secret))
	now := t.clock.Now()
	tok := &store.Token{Name: name, Role: controlplanev1.Role_ROLE_AGENT, Hash: sum[:], CreatedAt: now, ExpiresAt: now.Add(min(max(ttl, MinTTL), MaxBootTTL)), MaxUses: 1, NodeID: nodeID}
	t.mu.Lock()
	defer t.mu.Unlock()
	// Bootstrap tokens that are spent or long expired go with this write,
	// so that a fleet that launches all day does not keep them all.
	stale := t.staleBootLocked(now)
	if err := t.store.Apply(ctx, store.Write{Tokens: []*store.Token{tok}, DeleteTokens: stale}); err != nil {
		t.log.Error("store write failed", "token", name, "err", err)
		return "", apierr.NotSaved()
	}
	for _, n := range stale {
		delete(t.byName, n)
	}
	t.byName[name] = tok
	t.log.Info("bootstrap token created", "name", name, "node", nodeID)
	return name + "." + secret, nil
}

// MaxBootTTL bounds a bootstrap token's life, whatever the provision
// timeout.
const MaxBootTTL = 2 * time.Hour

// bootKept is how long a bootstrap token is kept after it was spent or
// expired, for `navarch token list` to show.
const bootKept = time.Hour

// staleBootLocked names the bootstrap tokens spent or expired more than
// bootKept ago. t.mu is held.
func (t *Tokens) staleBootLocked(now time.Time) []string {
	var out []string
	for name, tok := range t.byName {
		if tok.NodeID == "" {
			continue
		}
		spent := tok.MaxUses > 0 && tok.Used >= tok.MaxUses && now.Sub(tok.CreatedAt) > bootKept
		expired := !tok.ExpiresAt.IsZero() && now.Sub(tok.ExpiresAt) > bootKept
		if spent || expired {
			out = append(out, name)
		}
	}
	return out
}

// List describes every token, ordered by name.
func (t *Tokens) List() []*controlplanev1.TokenInfo {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]*controlplanev1.TokenInfo, 0, len(t.byName))
	for _, tok := range t.byName {
		out = append(out, Info(tok))
	}
	slices.SortFunc(out, func(a, b *controlplanev1.TokenInfo) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// Revoke revokes a token; revoking a revoked one changes nothing.
func (t *Tokens) Revoke(ctx context.Context, name string) (*controlplanev1.TokenInfo, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.byName[name]
	if cur == nil {
		return nil, status.Errorf(codes.NotFound, "name: no token %q", name)
	}
	if !cur.RevokedAt.IsZero() {
		return Info(cur), nil
	}
	next := *cur
	next.RevokedAt = t.clock.Now()
	if err := t.store.Apply(ctx, store.Write{Tokens: []*store.Token{&next}}); err != nil {
		t.log.Error("store write failed", "token", name, "err", err)
		return nil, apierr.NotSaved()
	}
	t.byName[name] = &next
	t.log.Info("token revoked", "name", name)
	return Info(&next), nil
}

// errBadToken is what every token that does not work gets, whatever the
// reason, so a caller learns nothing about which names exist.
var errBadToken = errors.New("token is unknown, revoked or expired")

// Verify returns who a token belongs to, if it works.
func (t *Tokens) Verify(token string) (Caller, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	tok, err := t.verifyLocked(token)
	if err != nil {
		return Caller{}, err
	}
	return Caller{Name: tok.Name, Role: tok.Role}, nil
}

// Info describes a token without its hash.
func Info(tok *store.Token) *controlplanev1.TokenInfo {
	info := &controlplanev1.TokenInfo{Name: tok.Name, Role: tok.Role, CreatedAt: timestamppb.New(tok.CreatedAt)}
	if !tok.ExpiresAt.IsZero() {
		info.ExpiresAt = timestamppb.New(tok.ExpiresAt)
	}
	if !tok.RevokedAt.IsZero() {
		info.RevokedAt = timestamppb.New(tok.RevokedAt)
	}
	info.MaxUses, info.Used = uint32(tok.MaxUses), uint32(tok.Used)
	info.NodeId = tok.NodeID
	return info
}

// CheckName enforces the token name grammar: 1–63 characters of lowercase
// letters, digits, '-' and '_', starting with a letter or digit. A name
// never holds '.', which separates it from the secret.
func CheckName(name string) error {
	if name == "" {
		return apierr.Invalid("name", "is required")
	}
	if len(name) > 63 {
		return apierr.Invalid("name", "is %d characters; the limit is 63", len(name))
	}
	for i, r := range name {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || (i > 0 && (r == '-' || r == '_'))
		if !ok {
			return apierr.Invalid("name", "%q has %q at offset %d; use lowercase letters, digits, '-' and '_', starting with a letter or digit", name, r, i)
		}
	}
	return nil
}

// newSecret is 32 random bytes, URL-safe base64.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// WriteSecret writes a token to path, readable by its owner only, by way
// of a temporary file.
func WriteSecret(path, token string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(token + "\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Issue makes a token of this name afresh, replacing one of the same name
// and its secret; the control plane uses it for tokens of its own, such as
// the local provider's agents' join token, made new at each start.
func (t *Tokens) Issue(ctx context.Context, name string, role controlplanev1.Role) (string, error) {
	secret, err := newSecret()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(secret))
	tok := &store.Token{Name: name, Role: role, Hash: sum[:], CreatedAt: t.clock.Now()}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.store.Apply(ctx, store.Write{Tokens: []*store.Token{tok}}); err != nil {
		return "", fmt.Errorf("store token %s: %w", name, err)
	}
	t.byName[name] = tok
	return name + "." + secret, nil
}
