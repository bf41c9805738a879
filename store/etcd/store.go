// Package etcdstore keeps the control plane's durable state in an etcd
// cluster, so that several control planes share it: nodes, commands,
// health events, counters, operator tokens, the agents' key bindings,
// pools, the breaker state and the audit log. It implements store.Store
// and passes the same conformance suite as the embedded Badger backend.
//
// # Key layout
//
// Every key lives under the prefix (Options.Prefix, "/navarch/" by
// default), so several fleets share one cluster. Under it, a table letter
// and a slash:
//
//	n/<node>          fleetv1.Node (durable fields only), protobuf
//	s/<node>          last-seen time, unix nanoseconds, 8 bytes big-endian
//	m/<name>          counter, 8 bytes big-endian
//	t/<name>          operator token, store.EncodeToken: its hash, never
//	                  its secret
//	k/<node>          the agent key bound to the node, store.EncodeNodeKey
//	p/<name>          pool without its status, store.EncodePool
//	b/breaker         the auto-cordon breaker, store.EncodeBreaker
//	c/<node>/<~seq>   fleetv1.Command, protobuf
//	o/<node>/<seq>    a copy of each command not yet finished, so that the
//	                  open ones read in one range
//	e/<~seq>          fleetv1.HealthEvent, protobuf, under an event lease
//	x/<node>/<~seq>   empty; index of a node's events, same lease
//	a/<~seq>          audit entry, store.EncodeAudit, under an audit lease
//	y/<node>/<~seq>   empty; index of the entries about a node, same
//	                  lease; not one of the node's tables, so deleting the
//	                  node keeps its audit history
//
// <seq> is the sequence number of the record's id in 20 decimal digits;
// <~seq> is its complement (MaxUint64 - seq), so that an ascending range,
// the only one etcd reads without loading the whole range first, returns
// newest first. The encodings are Badger's, shared through package store.
//
// # Writes and etcd's limits
//
// Apply is one etcd transaction: the write's keys, each changed once
// (the last change of a key in the write wins), then the deletion of
// nodes as a second step, as the contract says. etcd refuses a
// transaction of more than --max-txn-ops operations (128 by default) at
// one level; a bigger write is split into nested transactions, still one
// atomic request, which holds up to (MaxTxnOps/2)² operations (4096 by
// default). The control plane's largest write is one node's report: at
// most 256 events (two keys each), the node, its commands and audit
// entries, about 520 operations. A write above the nested bound, or above
// --max-request-bytes (1.5 MiB by default), is refused whole with an
// error naming the limit, never split into several transactions.
//
// # History and retention
//
// The event history and the audit log are the bulky part. Each lives in
// etcd under leases: events written within a short window (a hundredth of
// the retention, from one second to an hour) share one lease, of at most
// 1000 keys, whose time to live is the retention plus the window, so etcd
// itself drops them once the retention has passed, between the retention
// and the retention plus the window after their write, whether or not
// the control plane writes again. Leases cost one grant per window rather
// than a key or a scan per event, and expired history leaves at once
// instead of waiting for a write to trim it, which keeps the database
// under etcd's quota. Beyond the per-node caps the oldest events and
// finished commands go in small transactions after the write, not atomic
// with it: a trim that fails keeps a little more history and is tried on
// the node's next write.
//
// # Fencing
//
// With Options.Fence set, every write transaction (Apply, its trims and
// deletions, SaveLastSeen) carries the comparison Fence returns, the
// leader's proof; when it does not hold, nothing is written and the error
// wraps store.ErrNotLeader.
//
// Heartbeats stay in the control plane's memory; only the periodic
// last-seen batch (SaveLastSeen) reaches etcd.
package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/navarch/navarch/store"
)

var _ store.Store = (*Store)(nil)

// TLSFiles names the files of a TLS connection to etcd, in PEM.
type TLSFiles struct {
	// CAFile holds the certificates that sign the servers'; empty means
	// the system's.
	CAFile string
	// CertFile and KeyFile hold the client's certificate and key, for
	// servers that authenticate clients; both or neither.
	CertFile string
	KeyFile  string
}

// Options configures Open.
type Options struct {
	// Endpoints are the cluster's client URLs. Required unless Client is
	// set.
	Endpoints []string
	// TLS, when any file is named, connects over TLS.
	TLS TLSFiles
	// Username and Password log in to a cluster with authentication on.
	Username string
	Password string
	// DialTimeout bounds connecting and the first read; 0 means 5 s.
	DialTimeout time.Duration
	// Client, when set, is used instead of connecting to Endpoints, and is
	// left open by Close: a caller shares one client with its leader
	// election.
	Client *clientv3.Client
	// Prefix is put before every key; several fleets share a cluster
	// under prefixes of their own. Empty means "/navarch/"; a slash is
	// added when it does not end with one.
	Prefix string
	// Fence, when set, returns the comparison that holds only while this
	// process leads, such as the leader key's create revision equal to the
	// one the election gave it. Every write carries it and is refused with
	// store.ErrNotLeader when it fails.
	Fence func() clientv3.Cmp

	// Limits are the retention and per-node caps; zero fields take the
	// store package's defaults.
	Limits store.Limits

	// RequestTimeout bounds an operation whose context has no deadline;
	// 0 means 30 s.
	RequestTimeout time.Duration

	// MaxTxnOps is the cluster's --max-txn-ops; 0 means etcd's default,
	// 128.
	MaxTxnOps int
	// MaxRequestBytes is the cluster's --max-request-bytes; 0 means
	// etcd's default, 1.5 MiB.
	MaxRequestBytes int
	// Logger receives warnings (a trim that failed); nil discards them.
	Logger *slog.Logger
}

// Defaults of etcd's own limits, as its server has them.
const (
	defaultMaxTxnOps       = 128
	defaultMaxRequestBytes = 3 << 19 // 1.5 MiB
	defaultDialTimeout     = 5 * time.Second
	defaultRequestTimeout  = 30 * time.Second
)

// Store is a store in an etcd cluster.
type Store struct {
	client    *clientv3.Client
	ownClient bool
	keys      keys
	fence     func() clientv3.Cmp

	limits         store.Limits // with its defaults
	maxOps         int
	maxBytes       int
	requestTimeout time.Duration
	log            *slog.Logger

	// life is held for reading by every operation and for writing by
	// Close, so the client is not closed under an operation.
	life   sync.RWMutex
	closed bool
	// mirror is the copy in memory of what Load reads while Follow runs;
	// nil otherwise.
	mirror atomic.Pointer[mirror]

	// leases are the leases the history is written under, one per kind.
	leases sync.Mutex
	events leaseSlot
	audit  leaseSlot
}

// Open connects to the cluster, or takes Options.Client, and checks that
// it answers a read.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Client == nil && len(opts.Endpoints) == 0 {
		return nil, errors.New("open etcd store: no endpoints")
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	if opts.Prefix == "" {
		opts.Prefix = "/navarch/"
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	opts.Limits = opts.Limits.WithDefaults()
	if opts.MaxTxnOps <= 0 {
		opts.MaxTxnOps = defaultMaxTxnOps
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = defaultRequestTimeout
	}
	if opts.MaxTxnOps < 4 {
		return nil, fmt.Errorf("open etcd store: MaxTxnOps %d is below 4", opts.MaxTxnOps)
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = defaultMaxRequestBytes
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		client:         opts.Client,
		keys:           keys{prefix: opts.Prefix},
		fence:          opts.Fence,
		limits:         opts.Limits,
		maxOps:         opts.MaxTxnOps,
		maxBytes:       opts.MaxRequestBytes,
		requestTimeout: opts.RequestTimeout,
		log:            logger,
	}
	if s.client == nil {
		c, err := Connect(opts)
		if err != nil {
			return nil, fmt.Errorf("open etcd store: %w", err)
		}
		s.client, s.ownClient = c, true
	}
	check, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	if _, err := s.client.Get(check, s.keys.named(tableCounter, ""), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		if s.ownClient {
			_ = s.client.Close()
		}
		return nil, fmt.Errorf("open etcd store: first read: %w", err)
	}
	return s, nil
}

// Connect makes a client of the cluster that opts name (endpoints, TLS
// files, user and password, dial timeout), for a caller that shares one
// client between the store (Options.Client) and the leader's election and
// closes it after both.
func Connect(opts Options) (*clientv3.Client, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("no endpoints")
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = defaultDialTimeout
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = defaultMaxRequestBytes
	}
	cfg := clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		Username:    opts.Username,
		Password:    opts.Password,
		Logger:      zap.NewNop(),
		// Room for a request of the cluster's size and gRPC's framing;
		// the server, not the client, says what is too large.
		MaxCallSendMsgSize: opts.MaxRequestBytes + 1<<20,
	}
	tc, err := tlsConfig(opts.TLS)
	if err != nil {
		return nil, err
	}
	cfg.TLS = tc
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	return c, nil
}

// tlsConfig builds the client's TLS configuration from files; nil when
// none is named. With a CA only, the client checks the servers and shows
// no certificate of its own.
func tlsConfig(f TLSFiles) (*tls.Config, error) {
	if f == (TLSFiles{}) {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read etcd CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read etcd CA: no PEM certificate in %s", f.CAFile)
		}
		tc.RootCAs = pool
	}
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, errors.New("etcd client certificate: a certificate file needs a key file, and a key file a certificate")
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("read etcd client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// begin starts an operation: it fails if ctx is done or the store is
// closed, and otherwise holds the store open until the returned func runs.
// A ctx without a deadline gets one of the request timeout: etcd's client
// retries a call until its context ends, so without one an unreachable
// cluster would hold the operation, and a shutdown waiting on it, for
// ever.
func (s *Store) begin(ctx context.Context) (context.Context, func(), error) {
	if err := ctx.Err(); err != nil {
		return ctx, nil, err
	}
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ctx, nil, store.ErrClosed
	}
	if _, ok := ctx.Deadline(); ok {
		return ctx, s.life.RUnlock, nil
	}
	bounded, cancel := context.WithTimeout(ctx, s.requestTimeout)
	return bounded, func() { cancel(); s.life.RUnlock() }, nil
}

// Close waits for the operations under way, then closes the client when
// Open made it.
func (s *Store) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.ownClient {
		return nil
	}
	if err := s.client.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("close etcd store: %w", err)
	}
	return nil
}
