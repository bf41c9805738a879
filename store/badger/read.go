package badgerstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// Load reads the nodes, last-seen times, counters, tokens, node keys,
// pools and the breaker state.
func (s *Store) Load(ctx context.Context) (*store.State, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	defer end()
	st := &store.State{LastSeen: make(map[string]time.Time), Counters: make(map[string]uint64)}
	err = s.db.View(func(txn *badger.Txn) error {
		if err := iterate(ctx, txn, prefixNode, func(_ []byte, v []byte) error {
			n := &fleetv1.Node{}
			if err := proto.Unmarshal(v, n); err != nil {
				return fmt.Errorf("decode node: %w", err)
			}
			st.Nodes = append(st.Nodes, n)
			return nil
		}); err != nil {
			return err
		}
		if err := iterate(ctx, txn, prefixLastSeen, func(k []byte, v []byte) error {
			if len(v) == 8 {
				st.LastSeen[string(k[len(prefixLastSeen):])] = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			}
			return nil
		}); err != nil {
			return err
		}
		if err := iterate(ctx, txn, prefixCounter, func(k []byte, v []byte) error {
			if len(v) == 8 {
				st.Counters[string(k[len(prefixCounter):])] = binary.BigEndian.Uint64(v)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := iterate(ctx, txn, prefixToken, func(k []byte, v []byte) error {
			t, err := store.DecodeToken(string(k[len(prefixToken):]), v)
			if err != nil {
				return err
			}
			st.Tokens = append(st.Tokens, t)
			return nil
		}); err != nil {
			return err
		}
		if err := iterate(ctx, txn, prefixNodeKey, func(k []byte, v []byte) error {
			nk, err := store.DecodeNodeKey(string(k[len(prefixNodeKey):]), v)
			if err != nil {
				return err
			}
			st.NodeKeys = append(st.NodeKeys, nk)
			return nil
		}); err != nil {
			return err
		}
		if err := iterate(ctx, txn, prefixPool, func(k []byte, v []byte) error {
			p := &fleetv1.Pool{}
			if err := proto.Unmarshal(v, p); err != nil {
				return fmt.Errorf("decode pool %s: %w", k[len(prefixPool):], err)
			}
			st.Pools = append(st.Pools, p)
			return nil
		}); err != nil {
			return err
		}
		item, err := txn.Get([]byte(keyBreaker))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read breaker state: %w", err)
		}
		return item.Value(func(v []byte) error {
			st.Breaker, err = store.DecodeBreaker(v)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	return st, nil
}

// iterate calls fn for every key under prefix in key order.
func iterate(ctx context.Context, txn *badger.Txn, prefix string, fn func(k, v []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: []byte(prefix)})
	defer it.Close()
	i := 0
	for it.Rewind(); it.Valid(); it.Next() {
		if i++; i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		item := it.Item()
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return err
		}
	}
	return nil
}

// Commands returns a node's commands, newest first; limit 0 means all.
func (s *Store) Commands(ctx context.Context, nodeID string, limit int) ([]*fleetv1.Command, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read commands of %s: %w", nodeID, err)
	}
	defer end()
	c := store.NewCommandCollector(limit)
	err = s.db.View(func(txn *badger.Txn) error {
		return reverse(ctx, txn, nodePrefix(prefixCommand, nodeID), func(_ []byte, v []byte) (bool, error) { return c.Add(v) })
	})
	if err != nil {
		return nil, fmt.Errorf("read commands of %s: %w", nodeID, err)
	}
	return c.Commands, nil
}

// OpenCommands returns every command of every node that has not finished
// (pending, delivered or acknowledged), oldest first per node. It reads
// the open-command index, so its cost does not grow with history.
func (s *Store) OpenCommands(ctx context.Context) ([]*fleetv1.Command, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read open commands: %w", err)
	}
	defer end()
	var out []*fleetv1.Command
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(prefixOpen)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			item, err := txn.Get(commandKey(openKeyNode(k), keySeq(k)))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			c := &fleetv1.Command{}
			if err := item.Value(func(v []byte) error { return proto.Unmarshal(v, c) }); err != nil {
				return fmt.Errorf("decode command: %w", err)
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read open commands: %w", err)
	}
	return out, nil
}

// Events returns events, newest first.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]*fleetv1.HealthEvent, error) {
	end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer end()
	c := store.NewEventCollector(q)
	err = s.db.View(func(txn *badger.Txn) error {
		return newestFirst(ctx, txn, prefixEvent, prefixNodeEvent, eventKey, q.NodeID, c.Add)
	})
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return c.Events, nil
}

// reverse walks the keys under prefix from the last, until fn says stop.
func reverse(ctx context.Context, txn *badger.Txn, prefix string, fn func(k, v []byte) (bool, error)) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Reverse: true, Prefix: []byte(prefix)})
	defer it.Close()
	for it.Seek(seekEnd(prefix)); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		item := it.Item()
		more := true
		err := item.Value(func(v []byte) error {
			var ferr error
			more, ferr = fn(item.Key(), v)
			return ferr
		})
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
	return nil
}

func reverseKeys(ctx context.Context, txn *badger.Txn, prefix string, fn func(k []byte) (bool, error)) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Reverse: true, Prefix: []byte(prefix)})
	defer it.Close()
	for it.Seek(seekEnd(prefix)); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		more, err := fn(it.Item().KeyCopy(nil))
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// newestFirst walks a log newest first, handing each value to decode until
// it says stop: the whole log under prefix, or, for one node, the entries
// its index under nodeIndex points at (keyOf gives an entry's key from its
// sequence number). An index entry whose entry expired is passed over.
func newestFirst(ctx context.Context, txn *badger.Txn, prefix, nodeIndex string, keyOf func(uint64) []byte, nodeID string, decode func(v []byte) (bool, error)) error {
	if nodeID == "" {
		return reverse(ctx, txn, prefix, func(_ []byte, v []byte) (bool, error) { return decode(v) })
	}
	return reverseKeys(ctx, txn, nodePrefix(nodeIndex, nodeID), func(k []byte) (bool, error) {
		item, err := txn.Get(keyOf(keySeq(k)))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		more := true
		err = item.Value(func(v []byte) error {
			var derr error
			more, derr = decode(v)
			return derr
		})
		return more, err
	})
}
