package badgerstore

import (
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/navarch/navarch/store"
)

// putAudit writes an audit entry in the shared encoding
// (store.EncodeAudit) and, when it names a node, its entry in that node's
// index, both expiring at expires (unix seconds). The index is not under
// the node's keys, so deleting the node leaves its audit history.
func putAudit(txn *badger.Txn, a *store.AuditEntry, expires uint64) error {
	b, seq, err := store.EncodeAudit(a)
	if err != nil {
		return err
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

// Audit returns audit entries, newest first.
func (s *Store) Audit(ctx context.Context, q store.AuditQuery) ([]*store.AuditEntry, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer end()
	c := store.NewAuditCollector(q)
	err = s.db.View(func(txn *badger.Txn) error {
		return newestFirst(ctx, txn, prefixAudit, prefixNodeAudit, auditKey, q.NodeID, c.Add)
	})
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return c.Entries, nil
}
