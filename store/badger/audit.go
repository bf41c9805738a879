package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/store"
)

// auditRecord is an audit entry as stored under a/<seq>. It is JSON with
// named fields, as tokens are, so that the stored format changes only when
// this type does: the role as its number, the time as RFC 3339 in UTC with
// nanoseconds, left out when zero.
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

// putAudit writes an audit entry and, when it names a node, its entry in
// that node's index, both expiring at expires (unix seconds). The index is
// not under the node's keys, so deleting the node leaves its audit
// history.
func putAudit(txn *badger.Txn, a *store.AuditEntry, expires uint64) error {
	if a == nil {
		return errors.New("audit entry is nil")
	}
	seq, err := store.ParseSeq(a.ID)
	if err != nil {
		return fmt.Errorf("audit entry %q: %w", a.ID, err)
	}
	r := auditRecord{ID: a.ID, Who: a.Who, Role: int32(a.Role), RPC: a.RPC, NodeID: a.NodeID,
		Reason: a.Reason, Params: a.Params, Code: a.Code, Message: a.Message}
	if !a.Time.IsZero() {
		// RFC 3339 has four-digit years; refusing the rest here keeps an
		// entry that could not be read back out of the store.
		if y := a.Time.UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("audit entry %s: time %v outside the years 1 to 9999", a.ID, a.Time)
		}
		r.Time = a.Time.UTC().Format(time.RFC3339Nano)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode audit entry %s: %w", a.ID, err)
	}
	e := badger.NewEntry(auditKey(seq), b)
	e.ExpiresAt = expires
	if err := txn.SetEntry(e); err != nil {
		return err
	}
	if a.NodeID == "" {
		return nil
	}
	ix := badger.NewEntry(nodeAuditKey(a.NodeID, seq), nil)
	ix.ExpiresAt = expires
	return txn.SetEntry(ix)
}

func decodeAudit(v []byte) (*store.AuditEntry, error) {
	var r auditRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode audit entry: %w", err)
	}
	a := &store.AuditEntry{ID: r.ID, Who: r.Who, Role: controlplanev1.Role(r.Role), RPC: r.RPC, NodeID: r.NodeID,
		Reason: r.Reason, Params: r.Params, Code: r.Code, Message: r.Message}
	if r.Time != "" {
		at, err := time.Parse(time.RFC3339Nano, r.Time)
		if err != nil {
			return nil, fmt.Errorf("decode audit entry %s: %w", r.ID, err)
		}
		a.Time = at.UTC()
	}
	return a, nil
}

// Audit returns audit entries, newest first.
func (s *Store) Audit(ctx context.Context, q store.AuditQuery) ([]*store.AuditEntry, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer end()
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var out []*store.AuditEntry
	decode := func(v []byte) (bool, error) {
		a, err := decodeAudit(v)
		if err != nil {
			return false, err
		}
		out = append(out, a)
		return len(out) < q.Limit, nil
	}
	err = s.db.View(func(txn *badger.Txn) error {
		return newestFirst(ctx, txn, prefixAudit, prefixNodeAudit, auditKey, q.NodeID, decode)
	})
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}
