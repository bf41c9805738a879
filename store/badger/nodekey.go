package badgerstore

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/navarch/navarch/store"
)

// nodeKeyRecord is a node's key binding as stored under k/<node>. It is
// JSON with named fields, as tokens are, so that the stored format changes
// only when this type does: the time as RFC 3339 in UTC with nanoseconds,
// left out when zero.
type nodeKeyRecord struct {
	KeyHash []byte `json:"key_hash"`
	BoundAt string `json:"bound_at,omitempty"`
}

func putNodeKey(txn *badger.Txn, k *store.NodeKey) error {
	if k == nil || k.NodeID == "" {
		return errors.New("node key without node id")
	}
	// A binding that holds no whole SHA-256 could match no key, or the
	// wrong one: refusing it keeps a node from being bound to nothing.
	if len(k.KeyHash) != sha256.Size {
		return fmt.Errorf("node key of %s: key hash of %d bytes, want %d", k.NodeID, len(k.KeyHash), sha256.Size)
	}
	r := nodeKeyRecord{KeyHash: k.KeyHash}
	if !k.BoundAt.IsZero() {
		// RFC 3339 has four-digit years; refusing the rest here keeps a
		// binding that could not be read back out of the store.
		if y := k.BoundAt.UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("node key of %s: time %v outside the years 1 to 9999", k.NodeID, k.BoundAt)
		}
		r.BoundAt = k.BoundAt.UTC().Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode node key of %s: %w", k.NodeID, err)
	}
	return txn.Set([]byte(prefixNodeKey+k.NodeID), b)
}

func decodeNodeKey(node string, v []byte) (*store.NodeKey, error) {
	var r nodeKeyRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode node key of %s: %w", node, err)
	}
	k := &store.NodeKey{NodeID: node, KeyHash: r.KeyHash}
	if r.BoundAt != "" {
		at, err := time.Parse(time.RFC3339Nano, r.BoundAt)
		if err != nil {
			return nil, fmt.Errorf("decode node key of %s: %w", node, err)
		}
		k.BoundAt = at.UTC()
	}
	return k, nil
}
