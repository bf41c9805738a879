package badgerstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/store"
)

// tokenRecord is a token as stored under t/<name>. It is JSON with named
// fields rather than the Go struct or a proto, so that the stored format
// changes only when this type does: the role is kept as its number, the
// times as RFC 3339 in UTC with nanoseconds, a zero time left out, and the
// use counts left out at zero, so records written before they existed read
// as no limit and no uses.
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

func putToken(txn *badger.Txn, t *store.Token) error {
	if t == nil || t.Name == "" {
		return errors.New("token without name")
	}
	r := tokenRecord{Role: int32(t.Role), Hash: t.Hash, MaxUses: t.MaxUses, Used: t.Used, NodeID: t.NodeID}
	for _, f := range []struct {
		to   *string
		from time.Time
	}{{&r.CreatedAt, t.CreatedAt}, {&r.ExpiresAt, t.ExpiresAt}, {&r.RevokedAt, t.RevokedAt}} {
		if f.from.IsZero() {
			continue
		}
		// RFC 3339 has four-digit years; refusing the rest here keeps a
		// token that could not be read back out of the store.
		if y := f.from.UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("token %s: time %v outside the years 1 to 9999", t.Name, f.from)
		}
		*f.to = f.from.UTC().Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode token %s: %w", t.Name, err)
	}
	return txn.Set([]byte(prefixToken+t.Name), b)
}

func decodeToken(name string, v []byte) (*store.Token, error) {
	var r tokenRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode token %s: %w", name, err)
	}
	t := &store.Token{Name: name, Role: controlplanev1.Role(r.Role), Hash: r.Hash, MaxUses: r.MaxUses, Used: r.Used, NodeID: r.NodeID}
	for _, f := range []struct {
		to   *time.Time
		from string
	}{{&t.CreatedAt, r.CreatedAt}, {&t.ExpiresAt, r.ExpiresAt}, {&t.RevokedAt, r.RevokedAt}} {
		if f.from == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, f.from)
		if err != nil {
			return nil, fmt.Errorf("decode token %s: %w", name, err)
		}
		*f.to = at.UTC()
	}
	return t, nil
}
