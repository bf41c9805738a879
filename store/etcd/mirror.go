package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/navarch/navarch/store"
)

// mirror is a copy in memory of what Load reads (the keys of loadTables
// and the breaker's), kept current by following the cluster's watch, so
// that a standby taking the lead over loads the fleet without reading it
// from the cluster.
type mirror struct {
	mu sync.Mutex
	kv map[string][]byte
	// at is, for each watched range, the revision up to which the copy
	// holds every change: the last event's, or a progress notification's,
	// which says no change up to it is still to come.
	at []int64
	// moved is closed, and replaced, each time at moves.
	moved chan struct{}
	// ended is closed when the copy stops following the cluster.
	ended chan struct{}
}

// catchUpWait bounds how long Load waits for the copy to catch up with
// the cluster before it reads the cluster instead.
const catchUpWait = 5 * time.Second

// watched is one range the mirror follows: a table, or the breaker's key.
type watched struct {
	table      string
	from, end  string
	singleName string
}

func (s *Store) watchedRanges() []watched {
	var out []watched
	for _, t := range loadTables {
		r := s.table(t)
		out = append(out, watched{table: t, from: r.from, end: r.end})
	}
	k := s.keys.named("", keyBreaker)
	return append(out, watched{from: k, end: k + "\x00", singleName: keyBreaker})
}

// Follow keeps a copy in memory of what Load reads, following the
// cluster's watch, until ctx ends: a standby calls it so that, once it
// leads, Load costs no read of the whole fleet from the cluster. It reads
// the copy anew, after a second, whenever a watch ends (a member lost,
// the revision compacted away); meanwhile Load reads the cluster.
func (s *Store) Follow(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("following etcd for a copy of the state in memory stopped; reading it again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Store) follow(ctx context.Context) error {
	ranges := s.watchedRanges()
	m := &mirror{kv: make(map[string][]byte), at: make([]int64, len(ranges)), moved: make(chan struct{}), ended: make(chan struct{})}
	defer close(m.ended)
	var rev int64
	for _, w := range ranges {
		var err error
		rev, err = s.scan(ctx, scanRange{from: w.from, end: w.end, rev: rev}, func(k, v []byte) (bool, error) {
			m.kv[string(k)] = v
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("read the state: %w", err)
		}
	}
	for i := range m.at {
		m.at[i] = rev
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	errc := make(chan error, len(ranges))
	for i, w := range ranges {
		ch := s.client.Watch(wctx, w.from, clientv3.WithRange(w.end), clientv3.WithRev(rev+1))
		go func() {
			for resp := range ch {
				if err := resp.Err(); err != nil {
					errc <- err
					return
				}
				m.apply(i, resp)
			}
			errc <- errors.New("watch ended")
		}()
	}
	s.mirror.Store(m)
	defer s.mirror.CompareAndSwap(m, nil)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-errc:
		return err
	}
}

// apply takes one watch response of range i.
func (m *mirror) apply(i int, resp clientv3.WatchResponse) {
	m.mu.Lock()
	defer m.mu.Unlock()
	at := m.at[i]
	for _, ev := range resp.Events {
		k := string(ev.Kv.Key)
		if ev.Type == mvccpb.DELETE {
			delete(m.kv, k)
		} else {
			m.kv[k] = ev.Kv.Value
		}
		at = max(at, ev.Kv.ModRevision)
	}
	if resp.IsProgressNotify() {
		at = max(at, resp.Header.Revision)
	}
	if at != m.at[i] {
		m.at[i] = at
		close(m.moved)
		m.moved = make(chan struct{})
	}
}

// caughtUp reports whether every range is known current at rev, and the
// channel closed when that may have changed.
func (m *mirror) caughtUp(rev int64) (bool, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Min(m.at) >= rev, m.moved
}

// loadMirror is Load from the copy in memory: it learns the cluster's
// revision now, asks the watches to report their progress, waits until
// the copy has every change up to that revision, and builds the state
// from it, each table in key order as a read of the cluster returns it.
func (s *Store) loadMirror(ctx context.Context, m *mirror) (*store.State, error) {
	resp, err := s.client.Get(ctx, s.keys.named("", keyBreaker))
	if err != nil {
		return nil, fmt.Errorf("read the cluster's revision: %w", err)
	}
	rev := resp.Header.Revision
	limit := time.NewTimer(catchUpWait)
	defer limit.Stop()
	for {
		ok, moved := m.caughtUp(rev)
		if ok {
			break
		}
		// A watch reports its progress only when asked and in step; ask
		// again until each has. The request goes on the watches' own
		// stream, which the client picks by the context's metadata.
		if err := s.client.RequestProgress(clientv3.WithRequireLeader(ctx)); err != nil {
			return nil, fmt.Errorf("ask the watches' progress: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.ended:
			return nil, errors.New("the copy stopped following the cluster")
		case <-limit.C:
			return nil, fmt.Errorf("the copy did not catch up with revision %d within %s", rev, catchUpWait)
		case <-moved:
		case <-time.After(100 * time.Millisecond):
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([]string, 0, len(m.kv))
	for k := range m.kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := newStateBuilder()
	for _, w := range s.watchedRanges() {
		lo, _ := slices.BinarySearch(keys, w.from)
		for _, k := range keys[lo:] {
			if k >= w.end {
				break
			}
			name := w.singleName
			if name == "" {
				name = strings.TrimPrefix(k, w.from)
			}
			if err := b.add(w.table, name, m.kv[k]); err != nil {
				return nil, fmt.Errorf("load state from memory: %w", err)
			}
		}
	}
	return b.st, nil
}
