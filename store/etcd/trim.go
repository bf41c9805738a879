package etcdstore

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseSlot is the lease the history of one kind is being written under.
type leaseSlot struct {
	id    clientv3.LeaseID
	until time.Time // when writes stop joining it
	keys  int       // keys written under it
}

// keysPerLease bounds the keys one lease takes, so that its expiry, one
// deletion of all of them in etcd, stays small.
const keysPerLease = 1000

// leasesFor returns the leases b's history is written under.
func (s *Store) leasesFor(ctx context.Context, b *batch) (map[lease]clientv3.LeaseID, error) {
	ids := make(map[lease]clientv3.LeaseID, 2)
	if b.eventKeys > 0 {
		id, err := s.lease(ctx, &s.events, s.limits.EventRetention, b.eventKeys)
		if err != nil {
			return nil, fmt.Errorf("lease for events: %w", err)
		}
		ids[eventLease] = id
	}
	if b.auditKeys > 0 {
		id, err := s.lease(ctx, &s.audit, s.limits.AuditRetention, b.auditKeys)
		if err != nil {
			return nil, fmt.Errorf("lease for audit entries: %w", err)
		}
		ids[auditLease] = id
	}
	return ids, nil
}

// lease returns the slot's lease for n more keys, granting a new one when
// its window has passed or it is full. A lease lives for the retention
// plus its window, so every key written under it within the window lives
// at least the retention.
func (s *Store) lease(ctx context.Context, slot *leaseSlot, retention time.Duration, n int) (clientv3.LeaseID, error) {
	s.leases.Lock()
	defer s.leases.Unlock()
	now := time.Now()
	if slot.id != 0 && now.Before(slot.until) && slot.keys+n <= keysPerLease {
		slot.keys += n
		return slot.id, nil
	}
	window := min(max(retention/100, time.Second), time.Hour)
	ttl := int64((retention + window + time.Second - 1) / time.Second)
	resp, err := s.client.Grant(ctx, ttl)
	if err != nil {
		return 0, err
	}
	*slot = leaseSlot{id: resp.ID, until: now.Add(window), keys: n}
	return resp.ID, nil
}

// forgetLeases drops the leases in use, so the next write grants new ones.
func (s *Store) forgetLeases() {
	s.leases.Lock()
	s.events, s.audit = leaseSlot{}, leaseSlot{}
	s.leases.Unlock()
}

// trimEvents drops a node's oldest events beyond the per-node cap, each
// with its index entry.
func (s *Store) trimEvents(ctx context.Context, node string) error {
	p := s.keys.node(tableNodeEvent, node)
	resp, err := s.client.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("count events of %s: %w", node, err)
	}
	excess := resp.Count - int64(s.limits.EventsPerNode)
	if excess <= 0 {
		return nil
	}
	// The oldest are the last keys; the range is the node's few hundred.
	resp, err = s.client.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(excess))
	if err != nil {
		return fmt.Errorf("list events of %s: %w", node, err)
	}
	var del []string
	for _, kv := range resp.Kvs {
		seq, err := newestSeq(kv.Key)
		if err != nil {
			return fmt.Errorf("trim events of %s: %w", node, err)
		}
		del = append(del, string(kv.Key), s.keys.newestFleet(tableEvent, seq))
	}
	if err := s.deleteKeys(ctx, del); err != nil {
		return fmt.Errorf("trim events of %s: %w", node, err)
	}
	return nil
}

// trimCommands drops a node's oldest finished commands beyond the cap.
func (s *Store) trimCommands(ctx context.Context, node string) error {
	p := s.keys.node(tableCommand, node)
	resp, err := s.client.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("count commands of %s: %w", node, err)
	}
	excess := int(resp.Count) - s.limits.CommandsPerNode
	if excess <= 0 {
		return nil
	}
	var all []string
	open := make(map[uint64]bool)
	rev, err := s.scan(ctx, scanRange{from: p, end: clientv3.GetPrefixRangeEnd(p), keysOnly: true}, func(k, _ []byte) (bool, error) {
		all = append(all, string(k))
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("list commands of %s: %w", node, err)
	}
	op := s.keys.node(tableOpen, node)
	if _, err := s.scan(ctx, scanRange{from: op, end: clientv3.GetPrefixRangeEnd(op), keysOnly: true, rev: rev}, func(k, _ []byte) (bool, error) {
		seq, err := oldestSeq(k)
		open[seq] = true
		return true, err
	}); err != nil {
		return fmt.Errorf("list open commands of %s: %w", node, err)
	}
	var del []string
	// Oldest first: the last keys.
	for i := len(all) - 1; i >= 0 && len(del) < excess; i-- {
		seq, err := newestSeq([]byte(all[i]))
		if err != nil {
			return fmt.Errorf("trim commands of %s: %w", node, err)
		}
		if !open[seq] {
			del = append(del, all[i])
		}
	}
	if err := s.deleteKeys(ctx, del); err != nil {
		return fmt.Errorf("trim commands of %s: %w", node, err)
	}
	return nil
}

// deleteNode removes a node and everything stored under it, its key
// binding included: its events first, a batch of them with their index
// entries at a time, then the node's own keys in one transaction, so a
// deletion cut short is completed by deleting again.
func (s *Store) deleteNode(ctx context.Context, id string) error {
	x := s.keys.node(tableNodeEvent, id)
	for {
		resp, err := s.client.Get(ctx, x, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(int64(s.maxOps/2)))
		if err != nil {
			return fmt.Errorf("delete node %s: list its events: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			break
		}
		var del []string
		for _, kv := range resp.Kvs {
			seq, err := newestSeq(kv.Key)
			if err != nil {
				return fmt.Errorf("delete node %s: %w", id, err)
			}
			del = append(del, string(kv.Key), s.keys.newestFleet(tableEvent, seq))
		}
		if err := s.deleteKeys(ctx, del); err != nil {
			return fmt.Errorf("delete node %s: its events: %w", id, err)
		}
	}
	k := s.keys
	err := s.commit(ctx, []clientv3.Op{
		clientv3.OpDelete(k.node(tableCommand, id), clientv3.WithPrefix()),
		clientv3.OpDelete(k.node(tableOpen, id), clientv3.WithPrefix()),
		clientv3.OpDelete(x, clientv3.WithPrefix()),
		clientv3.OpDelete(k.named(tableLastSeen, id)),
		clientv3.OpDelete(k.named(tableNodeKey, id)),
		clientv3.OpDelete(k.named(tableNode, id)),
	})
	if err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	return nil
}

// deleteKeys deletes keys in transactions of at most the cluster's
// operations each, an even number, so that an index entry and the record
// it points at, listed side by side, go together.
func (s *Store) deleteKeys(ctx context.Context, keys []string) error {
	per := s.maxOps &^ 1
	for i := 0; i < len(keys); i += per {
		chunk := keys[i:min(i+per, len(keys))]
		ops := make([]clientv3.Op, 0, len(chunk))
		for _, k := range chunk {
			ops = append(ops, clientv3.OpDelete(k))
		}
		if err := s.commit(ctx, ops); err != nil {
			return err
		}
	}
	return nil
}
