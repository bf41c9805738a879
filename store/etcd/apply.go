package etcdstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/store"
)

// Apply writes w in one etcd transaction, then deletes its nodes, then
// trims the history of the nodes it touched.
func (s *Store) Apply(ctx context.Context, w store.Write) error {
	if w.Empty() {
		return nil
	}
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	defer end()
	b, err := s.encode(w)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if len(b.order) > 0 {
		if err := s.commitWrite(ctx, b); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	for _, id := range w.DeleteNodes {
		if err := s.deleteNode(ctx, id); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
	}
	// The write is committed: trimming that fails now only keeps a little
	// more history, and is tried again on the node's next write.
	for node := range b.eventsOf {
		if err := s.trimEvents(ctx, node); err != nil {
			s.log.Warn("trimming events failed", "node", node, "err", err)
		}
	}
	for node := range b.finishedOf {
		if err := s.trimCommands(ctx, node); err != nil {
			s.log.Warn("trimming command history failed", "node", node, "err", err)
		}
	}
	return nil
}

// lease says which lease a key is written under.
type lease int

const (
	noLease lease = iota
	eventLease
	auditLease
)

// change is the last change a write makes to one key.
type change struct {
	value []byte
	del   bool
	lease lease
}

// batch is a write's changes, one per key in the order first changed: etcd
// refuses a transaction that changes a key twice.
type batch struct {
	order      []string
	changes    map[string]change
	eventKeys  int // keys under the event lease
	auditKeys  int // keys under the audit lease
	eventsOf   map[string]bool
	finishedOf map[string]bool
}

func (b *batch) set(key string, c change) {
	if _, ok := b.changes[key]; !ok {
		b.order = append(b.order, key)
	}
	b.changes[key] = c
}

func (b *batch) put(key string, v []byte) { b.set(key, change{value: v}) }

func (b *batch) del(key string) { b.set(key, change{del: true}) }

// encode checks w and turns it into changes; an error means nothing of w
// may be written.
func (s *Store) encode(w store.Write) (*batch, error) {
	b := &batch{changes: make(map[string]change), eventsOf: make(map[string]bool), finishedOf: make(map[string]bool)}
	k := s.keys
	for _, n := range w.Nodes {
		if n.GetNodeId() == "" {
			return nil, errors.New("node without id")
		}
		v, err := proto.Marshal(n)
		if err != nil {
			return nil, fmt.Errorf("encode node %s: %w", n.GetNodeId(), err)
		}
		b.put(k.named(tableNode, n.GetNodeId()), v)
	}
	for _, c := range w.Commands {
		seq, err := store.ParseSeq(c.GetId())
		if err != nil {
			return nil, fmt.Errorf("command %q: %w", c.GetId(), err)
		}
		v, err := proto.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("encode command %s: %w", c.GetId(), err)
		}
		b.put(k.newest(tableCommand, c.GetNodeId(), seq), v)
		open := k.oldest(tableOpen, c.GetNodeId(), seq)
		if store.Finished(c) {
			b.del(open)
			b.finishedOf[c.GetNodeId()] = true
		} else {
			b.put(open, v)
		}
	}
	for _, e := range w.Events {
		seq, err := store.ParseSeq(e.GetId())
		if err != nil {
			return nil, fmt.Errorf("event %q: %w", e.GetId(), err)
		}
		v, err := proto.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode event %s: %w", e.GetId(), err)
		}
		b.set(k.newestFleet(tableEvent, seq), change{value: v, lease: eventLease})
		b.set(k.newest(tableNodeEvent, e.GetNodeId(), seq), change{value: []byte{}, lease: eventLease})
		b.eventKeys += 2
		b.eventsOf[e.GetNodeId()] = true
	}
	for _, name := range slices.Sorted(maps.Keys(w.Counters)) {
		b.put(k.named(tableCounter, name), binary.BigEndian.AppendUint64(nil, w.Counters[name]))
	}
	for _, t := range w.Tokens {
		v, err := store.EncodeToken(t)
		if err != nil {
			return nil, err
		}
		b.put(k.named(tableToken, t.Name), v)
	}
	for _, name := range w.DeleteTokens {
		b.del(k.named(tableToken, name))
	}
	for _, nk := range w.NodeKeys {
		v, err := store.EncodeNodeKey(nk)
		if err != nil {
			return nil, err
		}
		b.put(k.named(tableNodeKey, nk.NodeID), v)
	}
	for _, id := range w.DeleteNodeKeys {
		b.del(k.named(tableNodeKey, id))
	}
	for _, p := range w.Pools {
		v, err := store.EncodePool(p)
		if err != nil {
			return nil, err
		}
		b.put(k.named(tablePool, p.GetName()), v)
	}
	for _, name := range w.DeletePools {
		b.del(k.named(tablePool, name))
	}
	if w.Breaker != nil {
		v, err := store.EncodeBreaker(w.Breaker)
		if err != nil {
			return nil, err
		}
		b.put(k.named("", keyBreaker), v)
	}
	for _, a := range w.Audit {
		v, seq, err := store.EncodeAudit(a)
		if err != nil {
			return nil, err
		}
		b.set(k.newestFleet(tableAudit, seq), change{value: v, lease: auditLease})
		b.auditKeys++
		if a.NodeID != "" {
			b.set(k.newest(tableNodeAudit, a.NodeID, seq), change{value: []byte{}, lease: auditLease})
			b.auditKeys++
		}
	}
	return b, nil
}

// opOverhead is what one operation adds to a request beyond its key and
// value, rounded up: etcd's limit is on the whole request.
const opOverhead = 32

// commitWrite commits b in one transaction, under leases for its history.
// A lease that is gone (revoked, or lost by the cluster) is replaced and
// the write tried once more.
func (s *Store) commitWrite(ctx context.Context, b *batch) error {
	size := 0
	for _, key := range b.order {
		size += len(key) + len(b.changes[key].value) + opOverhead
	}
	if size > s.maxBytes {
		return fmt.Errorf("write of about %d bytes is above etcd's request limit of %d (--max-request-bytes); nothing was written", size, s.maxBytes)
	}
	for attempt := 0; ; attempt++ {
		ids, err := s.leasesFor(ctx, b)
		if err != nil {
			return err
		}
		ops := make([]clientv3.Op, 0, len(b.order))
		for _, key := range b.order {
			c := b.changes[key]
			switch {
			case c.del:
				ops = append(ops, clientv3.OpDelete(key))
			case c.lease != noLease:
				ops = append(ops, clientv3.OpPut(key, string(c.value), clientv3.WithLease(ids[c.lease])))
			default:
				ops = append(ops, clientv3.OpPut(key, string(c.value)))
			}
		}
		nested, err := s.nest(ops)
		if err != nil {
			return err
		}
		err = s.commit(ctx, nested)
		if attempt == 0 && errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.forgetLeases()
			continue
		}
		return err
	}
}

// nest fits ops into one transaction of at most maxOps operations a level:
// as they are when they fit, or else in groups, each a nested transaction
// that always applies. etcd counts a nested transaction's operations
// against what its parent leaves, so g groups hold g*(maxOps-g).
func (s *Store) nest(ops []clientv3.Op) ([]clientv3.Op, error) {
	n, m := len(ops), s.maxOps
	if n <= m {
		return ops, nil
	}
	for g := 2; g <= m/2; g++ {
		if g*(m-g) < n {
			continue
		}
		per := (n + g - 1) / g
		out := make([]clientv3.Op, 0, g)
		for chunk := range slices.Chunk(ops, per) {
			out = append(out, clientv3.OpTxn(nil, chunk, nil))
		}
		return out, nil
	}
	return nil, fmt.Errorf("write of %d operations is above what one etcd transaction holds, %d (--max-txn-ops %d, nested once); nothing was written",
		n, (m/2)*(m-m/2), m)
}

// commit runs ops in one transaction behind the fence.
func (s *Store) commit(ctx context.Context, ops []clientv3.Op) error {
	var cmps []clientv3.Cmp
	if s.fence != nil {
		cmps = append(cmps, s.fence())
	}
	resp, err := s.client.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return explain(err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("etcd transaction: the fence does not hold: %w", store.ErrNotLeader)
	}
	return nil
}

// explain wraps an error etcd returned for a transaction, naming the
// server's limit when it is one.
func explain(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("etcd transaction: above the cluster's --max-txn-ops; set Options.MaxTxnOps to it: %w", err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("etcd transaction: above the cluster's --max-request-bytes; set Options.MaxRequestBytes to it: %w", err)
	}
	return fmt.Errorf("etcd transaction: %w", err)
}

// SaveLastSeen records when nodes were last heard from, in transactions of
// at most the cluster's operations each. The batches together are not
// atomic: a failure part way leaves some nodes' times older, which is all
// losing a batch may cost.
func (s *Store) SaveLastSeen(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	ctx, end, err := s.begin(ctx)
	if err != nil {
		return fmt.Errorf("save last seen: %w", err)
	}
	defer end()
	ids := slices.Sorted(maps.Keys(seen))
	for chunk := range slices.Chunk(ids, s.maxOps) {
		ops := make([]clientv3.Op, 0, len(chunk))
		for _, id := range chunk {
			v := binary.BigEndian.AppendUint64(nil, uint64(seen[id].UnixNano()))
			ops = append(ops, clientv3.OpPut(s.keys.named(tableLastSeen, id), string(v)))
		}
		if err := s.commit(ctx, ops); err != nil {
			return fmt.Errorf("save last seen: %w", err)
		}
	}
	return nil
}
