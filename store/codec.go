package store

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Defaults of the limits every backend takes as options, so that a fleet
// keeps the same history whichever backend holds it.
const (
	// DefaultEventRetention is how long health events are kept.
	DefaultEventRetention = 7 * 24 * time.Hour
	// DefaultEventsPerNode caps the events kept per node.
	DefaultEventsPerNode = 500
	// DefaultCommandsPerNode caps the commands kept per node.
	DefaultCommandsPerNode = 200
	// DefaultAuditRetention is how long audit entries are kept.
	DefaultAuditRetention = 90 * 24 * time.Hour
)

// Limits are the retention and per-node caps a backend keeps history to.
// A zero field means its default above.
type Limits struct {
	// EventRetention is how long health events are kept.
	EventRetention time.Duration
	// EventsPerNode caps the events kept per node, the oldest going first.
	EventsPerNode int
	// CommandsPerNode caps the commands kept per node, the oldest finished
	// ones going first; unfinished ones count towards the cap but are
	// always kept.
	CommandsPerNode int
	// AuditRetention is how long audit entries are kept.
	AuditRetention time.Duration
}

// WithDefaults returns l with each zero or negative field at its default.
func (l Limits) WithDefaults() Limits {
	if l.EventRetention <= 0 {
		l.EventRetention = DefaultEventRetention
	}
	if l.EventsPerNode <= 0 {
		l.EventsPerNode = DefaultEventsPerNode
	}
	if l.CommandsPerNode <= 0 {
		l.CommandsPerNode = DefaultCommandsPerNode
	}
	if l.AuditRetention <= 0 {
		l.AuditRetention = DefaultAuditRetention
	}
	return l
}

// The encodings below are the stored form of records that are not
// protobuf messages, shared by every backend so that a record reads the
// same wherever it was written. Each is JSON with named fields rather than
// the Go struct, so that the stored format changes only when the record
// type does: roles as their numbers, times as RFC 3339 in UTC with
// nanoseconds, a zero time left out. A time outside the years 1 to 9999
// (RFC 3339 has four-digit years) is refused on encoding, which keeps a
// record that could not be read back out of the store.

// tokenRecord is a token's stored form; its name is the backend's key.
// The use counts are left out at zero, so records written before they
// existed read as no limit and no uses.
type tokenRecord struct {
	Role      int32  `json:"role"`
	Hash      []byte `json:"hash"`
	CreatedAt string `json:"created_at,omitempty"`
	ExpiresAt string `json:"expires_at,omitempty"`
	RevokedAt string `json:"revoked_at,omitempty"`
	MaxUses   int    `json:"max_uses,omitempty"`
	Used      int    `json:"used,omitempty"`
	NodeID    string `json:"node_id,omitempty"`
}

// EncodeToken renders a token as stored, under a key that holds its name.
func EncodeToken(t *Token) ([]byte, error) {
	if t == nil || t.Name == "" {
		return nil, errors.New("token without name")
	}
	r := tokenRecord{Role: int32(t.Role), Hash: t.Hash, MaxUses: t.MaxUses, Used: t.Used, NodeID: t.NodeID}
	for _, f := range []struct {
		to   *string
		from time.Time
	}{{&r.CreatedAt, t.CreatedAt}, {&r.ExpiresAt, t.ExpiresAt}, {&r.RevokedAt, t.RevokedAt}} {
		s, err := formatTime(f.from)
		if err != nil {
			return nil, fmt.Errorf("token %s: %w", t.Name, err)
		}
		*f.to = s
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode token %s: %w", t.Name, err)
	}
	return b, nil
}

// DecodeToken reads back the token named name from what EncodeToken made.
func DecodeToken(name string, v []byte) (*Token, error) {
	var r tokenRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode token %s: %w", name, err)
	}
	t := &Token{Name: name, Role: controlplanev1.Role(r.Role), Hash: r.Hash, MaxUses: r.MaxUses, Used: r.Used, NodeID: r.NodeID}
	for _, f := range []struct {
		to   *time.Time
		from string
	}{{&t.CreatedAt, r.CreatedAt}, {&t.ExpiresAt, r.ExpiresAt}, {&t.RevokedAt, r.RevokedAt}} {
		at, err := parseTime(f.from)
		if err != nil {
			return nil, fmt.Errorf("decode token %s: %w", name, err)
		}
		*f.to = at
	}
	return t, nil
}

// nodeKeyRecord is a node's key binding's stored form; the node id is the
// backend's key.
type nodeKeyRecord struct {
	KeyHash []byte `json:"key_hash"`
	BoundAt string `json:"bound_at,omitempty"`
}

// EncodeNodeKey renders a binding as stored, under a key that holds its
// node id. A binding that holds no whole SHA-256 could match no key, or
// the wrong one: refusing it keeps a node from being bound to nothing.
func EncodeNodeKey(k *NodeKey) ([]byte, error) {
	if k == nil || k.NodeID == "" {
		return nil, errors.New("node key without node id")
	}
	if len(k.KeyHash) != sha256.Size {
		return nil, fmt.Errorf("node key of %s: key hash of %d bytes, want %d", k.NodeID, len(k.KeyHash), sha256.Size)
	}
	at, err := formatTime(k.BoundAt)
	if err != nil {
		return nil, fmt.Errorf("node key of %s: %w", k.NodeID, err)
	}
	b, err := json.Marshal(nodeKeyRecord{KeyHash: k.KeyHash, BoundAt: at})
	if err != nil {
		return nil, fmt.Errorf("encode node key of %s: %w", k.NodeID, err)
	}
	return b, nil
}

// DecodeNodeKey reads back node's binding from what EncodeNodeKey made.
func DecodeNodeKey(node string, v []byte) (*NodeKey, error) {
	var r nodeKeyRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode node key of %s: %w", node, err)
	}
	at, err := parseTime(r.BoundAt)
	if err != nil {
		return nil, fmt.Errorf("decode node key of %s: %w", node, err)
	}
	return &NodeKey{NodeID: node, KeyHash: r.KeyHash, BoundAt: at}, nil
}

// auditRecord is an audit entry's stored form.
type auditRecord struct {
	ID      string `json:"id"`
	Time    string `json:"time,omitempty"`
	Who     string `json:"who,omitempty"`
	Role    int32  `json:"role,omitempty"`
	RPC     string `json:"rpc,omitempty"`
	NodeID  string `json:"node_id,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Params  string `json:"params,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// EncodeAudit renders an audit entry as stored and returns the sequence
// number of its id, which orders the log.
func EncodeAudit(a *AuditEntry) (v []byte, seq uint64, err error) {
	if a == nil {
		return nil, 0, errors.New("audit entry is nil")
	}
	if seq, err = ParseSeq(a.ID); err != nil {
		return nil, 0, fmt.Errorf("audit entry %q: %w", a.ID, err)
	}
	at, err := formatTime(a.Time)
	if err != nil {
		return nil, 0, fmt.Errorf("audit entry %s: %w", a.ID, err)
	}
	r := auditRecord{ID: a.ID, Time: at, Who: a.Who, Role: int32(a.Role), RPC: a.RPC, NodeID: a.NodeID,
		Reason: a.Reason, Params: a.Params, Code: a.Code, Message: a.Message}
	if v, err = json.Marshal(r); err != nil {
		return nil, 0, fmt.Errorf("encode audit entry %s: %w", a.ID, err)
	}
	return v, seq, nil
}

// DecodeAudit reads back an audit entry from what EncodeAudit made.
func DecodeAudit(v []byte) (*AuditEntry, error) {
	var r auditRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode audit entry: %w", err)
	}
	at, err := parseTime(r.Time)
	if err != nil {
		return nil, fmt.Errorf("decode audit entry %s: %w", r.ID, err)
	}
	return &AuditEntry{ID: r.ID, Time: at, Who: r.Who, Role: controlplanev1.Role(r.Role), RPC: r.RPC, NodeID: r.NodeID,
		Reason: r.Reason, Params: r.Params, Code: r.Code, Message: r.Message}, nil
}

// breakerRecord is the breaker state's stored form; a zero count is left
// out.
type breakerRecord struct {
	Recent     []string `json:"recent,omitempty"`
	TrippedAt  string   `json:"tripped_at,omitempty"`
	Suppressed uint32   `json:"suppressed,omitempty"`
}

// EncodeBreaker renders the breaker state as stored.
func EncodeBreaker(b *BreakerState) ([]byte, error) {
	r := breakerRecord{Suppressed: b.Suppressed}
	for _, t := range b.Recent {
		s, err := formatAnyTime(t)
		if err != nil {
			return nil, fmt.Errorf("breaker state: %w", err)
		}
		r.Recent = append(r.Recent, s)
	}
	s, err := formatTime(b.TrippedAt)
	if err != nil {
		return nil, fmt.Errorf("breaker state: %w", err)
	}
	r.TrippedAt = s
	v, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode breaker state: %w", err)
	}
	return v, nil
}

// DecodeBreaker reads back the breaker state from what EncodeBreaker made.
func DecodeBreaker(v []byte) (*BreakerState, error) {
	var r breakerRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode breaker state: %w", err)
	}
	b := &BreakerState{Suppressed: r.Suppressed}
	for _, s := range r.Recent {
		t, err := parseTime(s)
		if err != nil {
			return nil, fmt.Errorf("decode breaker state: %w", err)
		}
		b.Recent = append(b.Recent, t)
	}
	t, err := parseTime(r.TrippedAt)
	if err != nil {
		return nil, fmt.Errorf("decode breaker state: %w", err)
	}
	b.TrippedAt = t
	return b, nil
}

// EncodePool renders a pool as stored: the protobuf message without its
// status, which is never stored.
func EncodePool(p *fleetv1.Pool) ([]byte, error) {
	if p.GetName() == "" {
		return nil, errors.New("pool without name")
	}
	stored := proto.CloneOf(p)
	stored.Status = nil
	b, err := proto.Marshal(stored)
	if err != nil {
		return nil, fmt.Errorf("encode pool %s: %w", p.GetName(), err)
	}
	return b, nil
}

// formatTime renders t as RFC 3339 in UTC with nanoseconds; the zero time
// renders empty.
func formatTime(t time.Time) (string, error) {
	if t.IsZero() {
		return "", nil
	}
	return formatAnyTime(t)
}

// formatAnyTime renders t as RFC 3339 in UTC with nanoseconds, the zero
// time too.
func formatAnyTime(t time.Time) (string, error) {
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return "", fmt.Errorf("time %v outside the years 1 to 9999", t)
	}
	return t.UTC().Format(time.RFC3339Nano), nil
}

// parseTime reads back what formatTime rendered, in UTC.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}
