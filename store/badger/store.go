// Package badgerstore keeps the control plane's durable state in an embedded
// Badger database: nodes, commands, health events, a few counters, the
// operator tokens, the agents' key bindings and the audit log. It
// implements store.Store; the package is named badgerstore so that it does
// not shadow dgraph's badger package, which it imports.
//
// Every Apply is one atomic transaction written with SyncWrites, so when
// Apply returns the write is on disk and survives a kill -9 or a power loss.
package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/navarch/navarch/store"
)

var _ store.Store = (*Store)(nil)

// Options configures Open.
type Options struct {
	// Dir is the data directory; created if missing. Required unless
	// InMemory.
	Dir string
	// InMemory keeps everything in memory (for benchmarks of other parts).
	InMemory bool
	// Limits are the retention and per-node caps; zero fields take the
	// store package's defaults. Badger expires events and audit entries on
	// whole seconds, so one goes between its retention less one second and
	// its retention after its write.
	Limits store.Limits
	// MemTableBytes sizes Badger's memtables; 0 means 16 MiB.
	MemTableBytes int64
	// Logger receives Badger's warnings and errors; nil discards them.
	Logger *slog.Logger
}

// Store is an open Badger database.
type Store struct {
	db     *badger.DB
	dir    string       // empty in memory
	limits store.Limits // with its defaults
	log    *slog.Logger

	// life is held for reading by every operation while it uses db, and
	// for writing by Close, so db is never closed under an operation (a
	// Badger iterator panics on a closed database).
	life   sync.RWMutex
	closed bool

	mu         sync.Mutex
	eventCount map[string]int // events per node, counted lazily on first write

	stopGC chan struct{}
	gcDone chan struct{}
}

// Open opens or creates the store.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" && !opts.InMemory {
		return nil, errors.New("open store: data directory is required")
	}
	opts.Limits = opts.Limits.WithDefaults()
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
		dir:        bo.Dir,
		limits:     opts.Limits,
		log:        logger,
		eventCount: make(map[string]int),
		stopGC:     make(chan struct{}),
		gcDone:     make(chan struct{}),
	}
	go s.gcLoop()
	return s, nil
}

// begin starts an operation: it fails if ctx is done or the store is
// closed, and otherwise holds the store open until the returned func runs.
func (s *Store) begin(ctx context.Context) (end func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return nil, store.ErrClosed
	}
	return s.life.RUnlock, nil
}

// Close waits for the operations under way, then flushes and closes the
// database.
func (s *Store) Close() error {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return nil
	}
	s.closed = true
	s.life.Unlock()
	close(s.stopGC)
	<-s.gcDone
	done := make(chan error, 1)
	go func() { done <- s.db.Close() }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("close store: %w", err)
			}
			return nil
		case <-tick.C:
			// Badger retries a flush that cannot be written for ever; with
			// its directory deleted it never can, and a daemon told to stop
			// must stop.
			if _, err := os.Stat(s.dir); s.dir != "" && errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("close store: its directory %s is gone; what was not yet on disk is lost", s.dir)
			}
		}
	}
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
