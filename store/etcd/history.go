package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// Events returns events, newest first.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]*fleetv1.HealthEvent, error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer end()
	c := store.NewEventCollector(q)
	page := c.Limit()
	if q.Keep != nil {
		page = pageSize
	}
	if err := s.newestFirst(ctx, tableEvent, tableNodeEvent, q.NodeID, page, c.Add); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return c.Events, nil
}

// Audit returns audit entries, newest first.
func (s *Store) Audit(ctx context.Context, q store.AuditQuery) ([]*store.AuditEntry, error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer end()
	c := store.NewAuditCollector(q)
	if err := s.newestFirst(ctx, tableAudit, tableNodeAudit, q.NodeID, c.Limit(), c.Add); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return c.Entries, nil
}

// newestFirst walks a log newest first, handing each value to decode
// until it says stop: the whole log in table, or, for one node, the
// records its index in nodeIndex points at, fetched a page at a time in
// one transaction of reads. An index entry whose record is gone is passed
// over.
func (s *Store) newestFirst(ctx context.Context, table, nodeIndex, nodeID string, page int, decode func(v []byte) (bool, error)) error {
	page = min(page, pageSize)
	if nodeID == "" {
		r := s.table(table)
		r.page = page
		_, err := s.scan(ctx, r, func(_, v []byte) (bool, error) { return decode(v) })
		return err
	}
	p := s.keys.node(nodeIndex, nodeID)
	r := scanRange{from: p, end: clientv3.GetPrefixRangeEnd(p), keysOnly: true, page: min(page, s.maxOps)}
	var seqs []uint64
	var stopped bool
	flush := func() error {
		ops := make([]clientv3.Op, 0, len(seqs))
		for _, seq := range seqs {
			ops = append(ops, clientv3.OpGet(s.keys.newestFleet(table, seq)))
		}
		seqs = seqs[:0]
		resp, err := s.client.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return err
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().GetKvs() {
				more, err := decode(kv.Value)
				if err != nil {
					return err
				}
				if !more {
					stopped = true
					return nil
				}
			}
		}
		return nil
	}
	_, err := s.scan(ctx, r, func(k, _ []byte) (bool, error) {
		seq, err := newestSeq(k)
		if err != nil {
			return false, err
		}
		seqs = append(seqs, seq)
		if len(seqs) < r.page {
			return true, nil
		}
		if err := flush(); err != nil {
			return false, err
		}
		return !stopped, nil
	})
	if err != nil || stopped || len(seqs) == 0 {
		return err
	}
	return flush()
}
