package etcdstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// pageSize is how many keys one read asks for, so that no response of a
// large fleet's Load comes near etcd's message limits.
const pageSize = 1000

// scanRange is a range of keys read in pages.
type scanRange struct {
	from, end string
	keysOnly  bool
	// rev is the revision every page is read at; 0 means the first page's.
	rev int64
	// page is the keys a page asks for; 0 means pageSize.
	page int
}

// scan reads the keys of r in ascending order, a page at a time, handing
// each to fn until it says stop, and returns the revision they were read
// at: every page reads the same one, so the whole range is one snapshot.
func (s *Store) scan(ctx context.Context, r scanRange, fn func(k, v []byte) (bool, error)) (int64, error) {
	page := r.page
	if page <= 0 {
		page = pageSize
	}
	from, rev := r.from, r.rev
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(r.end), clientv3.WithLimit(int64(page))}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if r.keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		resp, err := s.client.Get(ctx, from, opts...)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			more, err := fn(kv.Key, kv.Value)
			if err != nil || !more {
				return rev, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// table is the range of every key in one table.
func (s *Store) table(t string) scanRange {
	p := s.keys.table(t)
	return scanRange{from: p, end: clientv3.GetPrefixRangeEnd(p)}
}

// loadTables are the tables Load reads, in the order it reads them; the
// breaker state is one key besides them.
var loadTables = []string{tableNode, tableLastSeen, tableCounter, tableToken, tableNodeKey, tablePool}

// stateBuilder builds Load's state from the keys of loadTables and the
// breaker's, handed to it in ascending order within each table.
type stateBuilder struct{ st *store.State }

func newStateBuilder() stateBuilder {
	return stateBuilder{st: &store.State{LastSeen: make(map[string]time.Time), Counters: make(map[string]uint64)}}
}

// add takes the value v of the entry name in table; the breaker state is
// table "" and name keyBreaker.
func (b stateBuilder) add(table, name string, v []byte) error {
	st := b.st
	switch table {
	case tableNode:
		n := &fleetv1.Node{}
		if err := proto.Unmarshal(v, n); err != nil {
			return fmt.Errorf("decode node: %w", err)
		}
		st.Nodes = append(st.Nodes, n)
	case tableLastSeen:
		if len(v) == 8 {
			st.LastSeen[name] = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
		}
	case tableCounter:
		if len(v) == 8 {
			st.Counters[name] = binary.BigEndian.Uint64(v)
		}
	case tableToken:
		t, err := store.DecodeToken(name, v)
		if err != nil {
			return err
		}
		st.Tokens = append(st.Tokens, t)
	case tableNodeKey:
		nk, err := store.DecodeNodeKey(name, v)
		if err != nil {
			return err
		}
		st.NodeKeys = append(st.NodeKeys, nk)
	case tablePool:
		p := &fleetv1.Pool{}
		if err := proto.Unmarshal(v, p); err != nil {
			return fmt.Errorf("decode pool %s: %w", name, err)
		}
		st.Pools = append(st.Pools, p)
	case "":
		bs, err := store.DecodeBreaker(v)
		if err != nil {
			return err
		}
		st.Breaker = bs
	}
	return nil
}

// Load reads the nodes, last-seen times, counters, tokens, node keys,
// pools and the breaker state, all at one revision: from the copy in
// memory while the store follows the cluster (Follow), caught up to the
// cluster's revision now, else from the cluster.
func (s *Store) Load(ctx context.Context) (*store.State, error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	defer end()
	if m := s.mirror.Load(); m != nil {
		st, err := s.loadMirror(ctx, m)
		if err == nil {
			s.log.Info("state loaded from the copy kept in memory", "nodes", len(st.Nodes))
			return st, nil
		}
		s.log.Warn("the copy of the state in memory could not be used; reading it from etcd", "err", err)
	}
	b := newStateBuilder()
	k := s.keys
	var rev int64
	for _, t := range loadTables {
		r := s.table(t)
		r.rev = rev
		p := k.table(t)
		rev, err = s.scan(ctx, r, func(key, v []byte) (bool, error) {
			return true, b.add(t, rest(key, p), v)
		})
		if err != nil {
			return nil, fmt.Errorf("load state: %w", err)
		}
	}
	resp, err := s.client.Get(ctx, k.named("", keyBreaker), clientv3.WithRev(rev))
	if err != nil {
		return nil, fmt.Errorf("load state: read breaker state: %w", err)
	}
	if len(resp.Kvs) > 0 {
		if err := b.add("", keyBreaker, resp.Kvs[0].Value); err != nil {
			return nil, fmt.Errorf("load state: %w", err)
		}
	}
	return b.st, nil
}

// Commands returns a node's commands, newest first; limit 0 means all.
func (s *Store) Commands(ctx context.Context, nodeID string, limit int) ([]*fleetv1.Command, error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read commands of %s: %w", nodeID, err)
	}
	defer end()
	p := s.keys.node(tableCommand, nodeID)
	r := scanRange{from: p, end: clientv3.GetPrefixRangeEnd(p)}
	if limit > 0 {
		r.page = min(limit, pageSize)
	}
	c := store.NewCommandCollector(limit)
	_, err = s.scan(ctx, r, func(_, v []byte) (bool, error) { return c.Add(v) })
	if err != nil {
		return nil, fmt.Errorf("read commands of %s: %w", nodeID, err)
	}
	return c.Commands, nil
}

// OpenCommands returns every command of every node that has not finished,
// grouped by node, oldest first within a node. It reads the copies kept
// under o/, so its cost does not grow with history.
func (s *Store) OpenCommands(ctx context.Context) ([]*fleetv1.Command, error) {
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("read open commands: %w", err)
	}
	defer end()
	var out []*fleetv1.Command
	_, err = s.scan(ctx, s.table(tableOpen), func(_, v []byte) (bool, error) {
		c := &fleetv1.Command{}
		if err := proto.Unmarshal(v, c); err != nil {
			return false, fmt.Errorf("decode command: %w", err)
		}
		out = append(out, c)
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read open commands: %w", err)
	}
	return out, nil
}
