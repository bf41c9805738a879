package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// Apply writes w atomically and returns once it is synced to disk.
func (s *Store) Apply(ctx context.Context, w store.Write) error {
	if w.Empty() {
		return nil
	}
	end, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	defer end()
	// Per-node event caps are enforced after the write, in their own
	// transaction, so a large write never exceeds Badger's transaction size.
	newEvents := make(map[string]int)
	finishedFor := make(map[string]bool)
	err = s.db.Update(func(txn *badger.Txn) error {
		for _, n := range w.Nodes {
			if err := putNode(txn, n); err != nil {
				return err
			}
		}
		for _, c := range w.Commands {
			if err := putCommand(txn, c); err != nil {
				return err
			}
			if store.Finished(c) {
				finishedFor[c.GetNodeId()] = true
			}
		}
		expires := uint64(time.Now().Add(s.limits.EventRetention).Unix())
		for _, e := range w.Events {
			if err := putEvent(txn, e, expires); err != nil {
				return err
			}
			newEvents[e.GetNodeId()]++
		}
		for name, v := range w.Counters {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], v)
			if err := txn.Set([]byte(prefixCounter+name), b[:]); err != nil {
				return err
			}
		}
		for _, t := range w.Tokens {
			if err := putToken(txn, t); err != nil {
				return err
			}
		}
		for _, name := range w.DeleteTokens {
			if err := txn.Delete([]byte(prefixToken + name)); err != nil {
				return err
			}
		}
		for _, k := range w.NodeKeys {
			if err := putNodeKey(txn, k); err != nil {
				return err
			}
		}
		for _, id := range w.DeleteNodeKeys {
			if err := txn.Delete([]byte(prefixNodeKey + id)); err != nil {
				return err
			}
		}
		for _, p := range w.Pools {
			b, err := store.EncodePool(p)
			if err != nil {
				return err
			}
			if err := txn.Set([]byte(prefixPool+p.GetName()), b); err != nil {
				return err
			}
		}
		for _, name := range w.DeletePools {
			if err := txn.Delete([]byte(prefixPool + name)); err != nil {
				return err
			}
		}
		if w.Breaker != nil {
			if err := putBreaker(txn, w.Breaker); err != nil {
				return err
			}
		}
		auditExpires := uint64(time.Now().Add(s.limits.AuditRetention).Unix())
		for _, a := range w.Audit {
			if err := putAudit(txn, a, auditExpires); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store write: %w", err)
	}
	for _, id := range w.DeleteNodes {
		if err := s.deleteNode(id); err != nil {
			return err
		}
	}
	// The write is committed: trimming that fails now only keeps a little
	// more history, and is tried again on the node's next write.
	for node, n := range newEvents {
		if err := s.enforceCap(node, n); err != nil {
			s.log.Warn("trimming events failed", "node", node, "err", err)
		}
	}
	for node := range finishedFor {
		if err := s.trimCommands(node); err != nil {
			s.log.Warn("trimming command history failed", "node", node, "err", err)
		}
	}
	return nil
}

func putNode(txn *badger.Txn, n *fleetv1.Node) error {
	if n.GetNodeId() == "" {
		return errors.New("node without id")
	}
	b, err := proto.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node %s: %w", n.GetNodeId(), err)
	}
	return txn.Set([]byte(prefixNode+n.GetNodeId()), b)
}

// putCommand writes a command and keeps the open index in step with it.
func putCommand(txn *badger.Txn, c *fleetv1.Command) error {
	seq, err := store.ParseSeq(c.GetId())
	if err != nil {
		return fmt.Errorf("command %q: %w", c.GetId(), err)
	}
	b, err := proto.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode command %s: %w", c.GetId(), err)
	}
	if err := txn.Set(commandKey(c.GetNodeId(), seq), b); err != nil {
		return err
	}
	open := openKey(c.GetNodeId(), seq)
	if store.Finished(c) {
		return txn.Delete(open)
	}
	return txn.Set(open, nil)
}

// putEvent writes an event and its entry in the node's index, both expiring
// at expires (unix seconds).
func putEvent(txn *badger.Txn, e *fleetv1.HealthEvent, expires uint64) error {
	seq, err := store.ParseSeq(e.GetId())
	if err != nil {
		return fmt.Errorf("event %q: %w", e.GetId(), err)
	}
	b, err := proto.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", e.GetId(), err)
	}
	ev := badger.NewEntry(eventKey(seq), b)
	ev.ExpiresAt = expires
	ix := badger.NewEntry(nodeEventKey(e.GetNodeId(), seq), nil)
	ix.ExpiresAt = expires
	if err := txn.SetEntry(ev); err != nil {
		return err
	}
	return txn.SetEntry(ix)
}

// trimCommands drops a node's oldest finished commands beyond the cap.
func (s *Store) trimCommands(node string) error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(nodePrefix(prefixCommand, node))})
		defer it.Close()
		var all [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			all = append(all, it.Item().KeyCopy(nil))
		}
		excess := len(all) - s.limits.CommandsPerNode
		for _, k := range all {
			if excess <= 0 {
				break
			}
			if _, err := txn.Get(openKey(node, keySeq(k))); err == nil {
				continue // unfinished: kept whatever its age
			}
			keys = append(keys, k)
			excess--
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("trim commands of %s: %w", node, err)
	}
	if err := s.deleteKeys(keys); err != nil {
		return fmt.Errorf("trim commands of %s: %w", node, err)
	}
	return nil
}

// deleteNode removes a node and everything stored under it, its key
// binding included.
func (s *Store) deleteNode(id string) error {
	keys := [][]byte{[]byte(prefixNode + id), []byte(prefixLastSeen + id), []byte(prefixNodeKey + id)}
	err := s.db.View(func(txn *badger.Txn) error {
		for _, table := range []string{prefixCommand, prefixOpen, prefixNodeEvent} {
			it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(nodePrefix(table, id))})
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().KeyCopy(nil)
				keys = append(keys, k)
				if table == prefixNodeEvent {
					keys = append(keys, eventKey(keySeq(k)))
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	if err := s.deleteKeys(keys); err != nil {
		return fmt.Errorf("delete node %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.eventCount, id)
	s.mu.Unlock()
	return nil
}

func (s *Store) deleteKeys(keys [][]byte) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range keys {
		if err := wb.Delete(k); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// enforceCap drops a node's oldest events beyond the per-node cap.
func (s *Store) enforceCap(node string, added int) error {
	s.mu.Lock()
	count, known := s.eventCount[node]
	s.mu.Unlock()
	if known {
		count += added
	}
	if !known || count > s.limits.EventsPerNode {
		// The cached count cannot see events that expired by their TTL:
		// count again before deleting anything.
		var err error
		if count, err = s.countNodeEvents(node); err != nil {
			return err
		}
	}
	if count <= s.limits.EventsPerNode {
		s.mu.Lock()
		s.eventCount[node] = count
		s.mu.Unlock()
		return nil
	}
	excess := count - s.limits.EventsPerNode
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(nodePrefix(prefixNodeEvent, node))})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(keys) < 2*excess; it.Next() {
			k := it.Item().KeyCopy(nil)
			keys = append(keys, k, eventKey(keySeq(k)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("trim events of %s: %w", node, err)
	}
	if err := s.deleteKeys(keys); err != nil {
		return fmt.Errorf("trim events of %s: %w", node, err)
	}
	s.mu.Lock()
	s.eventCount[node] = count - len(keys)/2
	s.mu.Unlock()
	return nil
}

func (s *Store) countNodeEvents(node string) (int, error) {
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(nodePrefix(prefixNodeEvent, node))})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count events of %s: %w", node, err)
	}
	return n, nil
}

// lastSeenChunk is how many last-seen times one write of SaveLastSeen
// carries.
const lastSeenChunk = 1000

// SaveLastSeen records when nodes were last heard from. It is called in
// batches, so a heartbeat never costs a disk write of its own; Badger's
// SyncWrites makes the batch as durable as an Apply all the same. The
// batch is written lastSeenChunk entries at a time, each chunk flushed
// before the next is queued: Badger commits writes in the order they
// come, so a fleet's whole batch (100 000 entries, about half a second)
// would hold every Apply queued behind it, an XID's event included, for
// as long; between chunks they go first.
func (s *Store) SaveLastSeen(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	end, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("save last seen: %w", err)
	}
	defer end()
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	for chunk := range slices.Chunk(ids, lastSeenChunk) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("save last seen: %w", err)
		}
		if err := s.saveLastSeen(chunk, seen); err != nil {
			return fmt.Errorf("save last seen: %w", err)
		}
	}
	return nil
}

// saveLastSeen writes the times in seen of the nodes ids in one batch.
func (s *Store) saveLastSeen(ids []string, seen map[string]time.Time) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, id := range ids {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(seen[id].UnixNano()))
		if err := wb.Set([]byte(prefixLastSeen+id), b[:]); err != nil {
			return err
		}
	}
	return wb.Flush()
}
