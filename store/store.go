// Package store keeps the control plane's durable state in an embedded Badger
// database: nodes, commands, health events and a few counters.
//
// Every Apply is one atomic transaction written with SyncWrites, so when
// Apply returns the write is on disk and survives a kill -9 or a power loss.
// The control plane calls Apply before it answers any request that changed
// state; heartbeats never reach the store except as a periodic last-seen batch.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Key layout. Every key starts with a one-letter table and a slash.
//
//	n/<node>             fleetv1.Node (durable fields only)
//	c/<node>/<seq>       fleetv1.Command, seq big-endian so keys sort by age
//	o/<node>/<seq>       empty; index of the commands not yet finished
//	e/<seq>              fleetv1.HealthEvent, fleet-wide, with a TTL
//	x/<node>/<seq>       empty; index of a node's events, same TTL
//	s/<node>             last-seen time (unix nanoseconds), written lazily
//	m/<name>             counters (uint64, big-endian)
const (
	prefixNode      = "n/"
	prefixCommand   = "c/"
	prefixOpen      = "o/"
	prefixEvent     = "e/"
	prefixNodeEvent = "x/"
	prefixLastSeen  = "s/"
	prefixCounter   = "m/"
)

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store is closed")

// Options configures Open.
type Options struct {
	// Dir is the data directory; created if missing. Required unless
	// InMemory.
	Dir string
	// InMemory keeps everything in memory (for benchmarks of other parts).
	InMemory bool
	// EventRetention is how long health events are kept; 0 means 7 days.
	EventRetention time.Duration
	// EventsPerNode caps the events kept per node, the oldest going first;
	// 0 means 500.
	EventsPerNode int
	// CommandsPerNode caps the finished commands kept per node, the oldest
	// going first; unfinished ones are always kept. 0 means 200.
	CommandsPerNode int
	// MemTableBytes sizes Badger's memtables; 0 means 16 MiB.
	MemTableBytes int64
	// Logger receives Badger's warnings and errors; nil discards them.
	Logger *slog.Logger
}

// Store is an open Badger database.
type Store struct {
	db        *badger.DB
	retention time.Duration
	cap       int
	cmdCap    int
	log       *slog.Logger

	mu         sync.Mutex
	eventCount map[string]int // events per node, counted lazily on first write
	closed     bool
	stopGC     chan struct{}
	gcDone     chan struct{}
}

// Open opens or creates the store.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" && !opts.InMemory {
		return nil, errors.New("open store: data directory is required")
	}
	if opts.EventRetention <= 0 {
		opts.EventRetention = 7 * 24 * time.Hour
	}
	if opts.EventsPerNode <= 0 {
		opts.EventsPerNode = 500
	}
	if opts.CommandsPerNode <= 0 {
		opts.CommandsPerNode = 200
	}
	if opts.MemTableBytes <= 0 {
		opts.MemTableBytes = 16 << 20
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bo := badger.DefaultOptions(opts.Dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(true).
		WithMemTableSize(opts.MemTableBytes).
		WithNumMemtables(3).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(10).
		WithBlockCacheSize(32 << 20).
		WithIndexCacheSize(16 << 20).
		WithValueLogFileSize(128 << 20).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		WithLogger(badgerLogger{logger})
	if opts.InMemory {
		bo = bo.WithDir("").WithValueDir("")
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open store in %q: %w", opts.Dir, err)
	}
	s := &Store{
		db:         db,
		retention:  opts.EventRetention,
		cap:        opts.EventsPerNode,
		cmdCap:     opts.CommandsPerNode,
		log:        logger,
		eventCount: make(map[string]int),
		stopGC:     make(chan struct{}),
		gcDone:     make(chan struct{}),
	}
	go s.gcLoop()
	return s, nil
}

// Close flushes and closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stopGC)
	<-s.gcDone
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// gcLoop reclaims value-log space now and then; expired events leave garbage.
func (s *Store) gcLoop() {
	defer close(s.gcDone)
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
			for s.db.RunValueLogGC(0.5) == nil {
			}
		}
	}
}

// Write is one atomic change. The zero value writes nothing.
type Write struct {
	// Nodes are written in full, replacing what was stored.
	Nodes []*fleetv1.Node
	// DeleteNodes are removed with their commands, events and last-seen
	// times.
	DeleteNodes []string
	// Commands are written in full, keyed by node and command id.
	Commands []*fleetv1.Command
	// Events are appended with the store's retention; their ids must be set
	// and increase over time.
	Events []*fleetv1.HealthEvent
	// Counters are set to the given values.
	Counters map[string]uint64
}

func (w *Write) empty() bool {
	return len(w.Nodes) == 0 && len(w.DeleteNodes) == 0 && len(w.Commands) == 0 &&
		len(w.Events) == 0 && len(w.Counters) == 0
}

// Apply writes w atomically and returns once it is synced to disk.
func (s *Store) Apply(ctx context.Context, w Write) error {
	if w.empty() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	// Per-node event caps are enforced after the write, in their own
	// transaction, so a large write never exceeds Badger's transaction size.
	newEvents := make(map[string]int)
	finishedFor := make(map[string]bool)
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, n := range w.Nodes {
			if n.GetNodeId() == "" {
				return errors.New("node without id")
			}
			b, err := proto.Marshal(n)
			if err != nil {
				return fmt.Errorf("encode node %s: %w", n.GetNodeId(), err)
			}
			if err := txn.Set([]byte(prefixNode+n.GetNodeId()), b); err != nil {
				return err
			}
		}
		for _, c := range w.Commands {
			seq, err := ParseSeq(c.GetId())
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
			if finished(c) {
				finishedFor[c.GetNodeId()] = true
				if err := txn.Delete(open); err != nil {
					return err
				}
			} else if err := txn.Set(open, nil); err != nil {
				return err
			}
		}
		expires := uint64(time.Now().Add(s.retention).Unix())
		for _, e := range w.Events {
			seq, err := ParseSeq(e.GetId())
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
			if err := txn.SetEntry(ix); err != nil {
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

func finished(c *fleetv1.Command) bool {
	switch c.GetStatus() {
	case fleetv1.CommandStatus_COMMAND_STATUS_PENDING,
		fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED,
		fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED:
		return false
	}
	return true
}

// trimCommands drops a node's oldest finished commands beyond the cap.
func (s *Store) trimCommands(node string) error {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := prefixCommand + node + "/"
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(prefix)})
		defer it.Close()
		var all [][]byte
		for it.Rewind(); it.Valid(); it.Next() {
			all = append(all, it.Item().KeyCopy(nil))
		}
		excess := len(all) - s.cmdCap
		for _, k := range all {
			if excess <= 0 {
				break
			}
			seq := binary.BigEndian.Uint64(k[len(k)-8:])
			if _, err := txn.Get(openKey(node, seq)); err == nil {
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

// deleteNode removes a node and everything stored under it.
func (s *Store) deleteNode(id string) error {
	keys := [][]byte{[]byte(prefixNode + id), []byte(prefixLastSeen + id)}
	err := s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range []string{prefixCommand + id + "/", prefixOpen + id + "/", prefixNodeEvent + id + "/"} {
			it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(prefix)})
			for it.Rewind(); it.Valid(); it.Next() {
				k := it.Item().KeyCopy(nil)
				keys = append(keys, k)
				if prefix[0] == prefixNodeEvent[0] {
					keys = append(keys, eventKey(binary.BigEndian.Uint64(k[len(k)-8:])))
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
	if !known || count > s.cap {
		// The cached count cannot see events that expired by their TTL:
		// count again before deleting anything.
		var err error
		if count, err = s.countNodeEvents(node); err != nil {
			return err
		}
	}
	if count <= s.cap {
		s.mu.Lock()
		s.eventCount[node] = count
		s.mu.Unlock()
		return nil
	}
	excess := count - s.cap
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(prefixNodeEvent + node + "/")})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(keys) < 2*excess; it.Next() {
			k := it.Item().KeyCopy(nil)
			keys = append(keys, k, eventKey(binary.BigEndian.Uint64(k[len(k)-8:])))
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
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(prefixNodeEvent + node + "/")})
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

// SaveLastSeen records when nodes were last heard from. It is called in
// batches, so a heartbeat never costs a disk write of its own.
func (s *Store) SaveLastSeen(ctx context.Context, seen map[string]time.Time) error {
	if len(seen) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for id, t := range seen {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(t.UnixNano()))
		if err := wb.Set([]byte(prefixLastSeen+id), b[:]); err != nil {
			return fmt.Errorf("save last seen: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("save last seen: %w", err)
	}
	return nil
}

// State is everything Load reads at start-up.
type State struct {
	// Nodes are all stored nodes, ordered by id.
	Nodes []*fleetv1.Node
	// LastSeen holds the last-seen time of nodes that have one.
	LastSeen map[string]time.Time
	// Counters holds every counter set by Apply.
	Counters map[string]uint64
}

// Load reads the nodes, last-seen times and revision ceiling.
func (s *Store) Load(ctx context.Context) (*State, error) {
	st := &State{LastSeen: make(map[string]time.Time), Counters: make(map[string]uint64)}
	err := s.db.View(func(txn *badger.Txn) error {
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
		return iterate(ctx, txn, prefixCounter, func(k []byte, v []byte) error {
			if len(v) == 8 {
				st.Counters[string(k[len(prefixCounter):])] = binary.BigEndian.Uint64(v)
			}
			return nil
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
	var out []*fleetv1.Command
	err := s.db.View(func(txn *badger.Txn) error {
		return reverse(ctx, txn, prefixCommand+nodeID+"/", func(_ []byte, v []byte) (bool, error) {
			c := &fleetv1.Command{}
			if err := proto.Unmarshal(v, c); err != nil {
				return false, fmt.Errorf("decode command: %w", err)
			}
			out = append(out, c)
			return limit == 0 || len(out) < limit, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read commands of %s: %w", nodeID, err)
	}
	return out, nil
}

// OpenCommands returns every command of every node that has not finished
// (pending, delivered or acknowledged), oldest first per node. It reads
// the open-command index, so its cost does not grow with history.
func (s *Store) OpenCommands(ctx context.Context) ([]*fleetv1.Command, error) {
	var out []*fleetv1.Command
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: []byte(prefixOpen)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			rest := k[len(prefixOpen):]
			node := string(rest[:len(rest)-9])
			item, err := txn.Get(commandKey(node, binary.BigEndian.Uint64(k[len(k)-8:])))
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

// EventQuery selects events for Events.
type EventQuery struct {
	// NodeID keeps one node's events; empty means the whole fleet.
	NodeID string
	// Limit is the most events to return; 0 means 100.
	Limit int
	// Keep, when set, decides which events count towards Limit.
	Keep func(*fleetv1.HealthEvent) bool
}

// maxEventScan bounds how many events one query examines, so a filter
// that matches little answers in bounded time.
const maxEventScan = 100000

// Events returns events, newest first.
func (s *Store) Events(ctx context.Context, q EventQuery) ([]*fleetv1.HealthEvent, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	var out []*fleetv1.HealthEvent
	scanned := 0
	decode := func(v []byte) (bool, error) {
		scanned++
		e := &fleetv1.HealthEvent{}
		if err := proto.Unmarshal(v, e); err != nil {
			return false, fmt.Errorf("decode event: %w", err)
		}
		if q.Keep == nil || q.Keep(e) {
			out = append(out, e)
		}
		return len(out) < q.Limit && scanned < maxEventScan, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		if q.NodeID == "" {
			return reverse(ctx, txn, prefixEvent, func(_ []byte, v []byte) (bool, error) { return decode(v) })
		}
		return reverseKeys(ctx, txn, prefixNodeEvent+q.NodeID+"/", func(k []byte) (bool, error) {
			item, err := txn.Get(eventKey(binary.BigEndian.Uint64(k[len(k)-8:])))
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
	})
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, nil
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

// seekEnd is a key just past every key under prefix, where a reverse
// iteration starts.
func seekEnd(prefix string) []byte {
	return append([]byte(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
}

func commandKey(node string, seq uint64) []byte { return nodeSeqKey(prefixCommand, node, seq) }

func openKey(node string, seq uint64) []byte { return nodeSeqKey(prefixOpen, node, seq) }

// nodeSeqKey is prefix, node, '/', then seq big-endian, so a node's keys
// sort by sequence.
func nodeSeqKey(prefix, node string, seq uint64) []byte {
	k := make([]byte, 0, len(prefix)+len(node)+1+8)
	k = append(k, prefix...)
	k = append(k, node...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint64(k, seq)
}

func eventKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefixEvent), seq)
}

func nodeEventKey(node string, seq uint64) []byte {
	k := make([]byte, 0, len(prefixNodeEvent)+len(node)+1+8)
	k = append(k, prefixNodeEvent...)
	k = append(k, node...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint64(k, seq)
}

// FormatSeq renders a sequence number as a command or event id.
func FormatSeq(prefix string, seq uint64) string {
	return fmt.Sprintf("%s-%d", prefix, seq)
}

// ParseSeq reads the sequence number back from an id made by FormatSeq.
func ParseSeq(id string) (uint64, error) {
	i := strings.LastIndexByte(id, '-')
	if i < 0 {
		return 0, fmt.Errorf("id %q has no sequence number", id)
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("id %q has no sequence number", id)
	}
	return seq, nil
}

// badgerLogger routes Badger's log lines to slog; Badger is chatty at info.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Infof(string, ...any)  {}
func (b badgerLogger) Debugf(string, ...any) {}
