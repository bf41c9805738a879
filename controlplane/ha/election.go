// Package ha owns what lets two or three control planes share one fleet
// through etcd with one of them active: the election of the leader (a
// lease and an election key, etcd's concurrency package), the fence every
// write of the leader carries, the record of the members and of the last
// failover that operators read, the standby's answer to every call (the
// leader's address, apierr.NotLeader), and the listener a standby hands
// over when it becomes the leader. It knows nothing of the fleet: package
// controlplane runs a standby until Campaign returns, then the control
// plane on the store the fence guards.
package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Keys under the configured prefix.
const (
	electionKeys = "ha/election/"
	memberKeys   = "ha/members/"
	failoverKey  = "ha/last-failover"
)

// ErrLeaseLost is returned by Campaign when this control plane's lease
// ended while it waited to lead (cut off from etcd for longer than the
// lease): it is no longer in the election, and must join it again.
var ErrLeaseLost = errors.New("ha: the lease with etcd ended while waiting to lead")

// Member is one control plane taking part in the election, as operators
// see it.
type Member struct {
	// Address is where clients reach it, HOST:PORT.
	Address string `json:"address"`
	// Version is its build.
	Version string `json:"version"`
	// Since is when it joined the election.
	Since time.Time `json:"since"`
}

// Failover is a change of leader.
type Failover struct {
	// From is the address of the previous leader, "" when none was known.
	From string `json:"from"`
	// To is the address of the new one.
	To string `json:"to"`
	// At is when the new leader took over.
	At time.Time `json:"at"`
}

// Options configure New.
type Options struct {
	// Client talks to etcd; the Election does not close it.
	Client *clientv3.Client
	// Prefix is the key prefix of this fleet's data, as the store's.
	Prefix string
	// Address is where clients reach this control plane, HOST:PORT:
	// what standbys answer with once it leads.
	Address string
	// Version is this control plane's build, shown to operators.
	Version string
	// TTL is the lease's time to live: how long after a leader stops
	// renewing it, being dead or cut off, a standby takes over.
	TTL time.Duration
	// Logger receives the election's logs; nil discards them.
	Logger *slog.Logger
}

// Election is this control plane's part in the election of the leader.
type Election struct {
	o       Options
	session *concurrency.Session
	elect   *concurrency.Election
	since   time.Time
	leader  atomic.Pointer[string] // the leader's address, as last observed
	// other is the last leader observed that was another control plane:
	// the one a won election took over from.
	other  atomic.Pointer[string]
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.Mutex
	leading    bool
	failedOver bool // this control plane took over from another
}

// New joins the election: it opens a session (a lease renewed while this
// process lives), records this control plane among the members under
// that lease, and follows who leads. Close leaves.
func New(ctx context.Context, o Options) (*Election, error) {
	if o.Client == nil || o.Address == "" {
		return nil, errors.New("ha: an etcd client and this control plane's address are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ttl := int(o.TTL.Round(time.Second) / time.Second)
	// The session lives until Close, not until ctx ends: a control plane
	// that is stopping still holds its lease while it shuts down, and
	// resigns and revokes it at Close.
	session, err := concurrency.NewSession(o.Client, concurrency.WithTTL(max(ttl, 1)), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("ha: open a session with etcd: %w", err)
	}
	e := &Election{
		o:       o,
		session: session,
		elect:   concurrency.NewElection(session, o.Prefix+electionKeys),
		since:   time.Now().UTC(),
		done:    make(chan struct{}),
	}
	empty := ""
	e.leader.Store(&empty)
	e.other.Store(&empty)
	m, err := json.Marshal(Member{Address: o.Address, Version: o.Version, Since: e.since})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("ha: %w", err), session.Close())
	}
	if _, err := o.Client.Put(ctx, o.Prefix+memberKeys+o.Address, string(m), clientv3.WithLease(session.Lease())); err != nil {
		return nil, errors.Join(fmt.Errorf("ha: record this control plane among the members: %w", err), session.Close())
	}
	// Who leads now, so that a standby names the leader from its first
	// answer rather than once the observer has caught up.
	if resp, err := e.elect.Leader(ctx); err == nil && len(resp.Kvs) > 0 {
		addr := string(resp.Kvs[0].Value)
		e.leader.Store(&addr)
		if addr != o.Address {
			e.other.Store(&addr)
		}
	}
	observeCtx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go e.observe(observeCtx)
	return e, nil
}

// observe keeps the leader's address current for the standby's answers.
// etcd's Observe ends when its watch does (a member lost, say), so it is
// started again until the election is closed.
func (e *Election) observe(ctx context.Context) {
	defer close(e.done)
	for ctx.Err() == nil {
		for resp := range e.elect.Observe(ctx) {
			if len(resp.Kvs) > 0 {
				addr := string(resp.Kvs[0].Value)
				if addr != e.o.Address {
					e.other.Store(&addr)
				}
				if prev := e.leader.Swap(&addr); *prev != addr {
					e.o.Logger.Info("leader observed", "leader", addr)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Leader is the leader's address as last observed, "" while none is
// known.
func (e *Election) Leader() string { return *e.leader.Load() }

// Fence is what a write of the leader carries so that etcd applies it
// only while this control plane still holds the election key it won:
// the key and the revision that created it.
type Fence struct {
	Key            string
	CreateRevision int64
}

// Cmp is the fence as a condition of an etcd transaction.
func (f Fence) Cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(f.Key), "=", f.CreateRevision)
}

// Campaign waits until this control plane leads, or ctx ends. It returns
// the fence of its writes and a channel closed when the lease is lost:
// from then on etcd refuses every fenced write, and the control plane
// must stop at once. When another control plane was seen leading while
// this one waited, its address is recorded as the last failover.
func (e *Election) Campaign(ctx context.Context) (Fence, <-chan struct{}, error) {
	// A standby cut off from etcd for longer than its lease has lost its
	// key with it; waiting on would only win an election it is no longer
	// in.
	waiting, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-e.session.Done():
			cancel()
		case <-waiting.Done():
		}
	}()
	if err := e.elect.Campaign(waiting, e.o.Address); err != nil {
		select {
		case <-e.session.Done():
			return Fence{}, nil, ErrLeaseLost
		default:
		}
		return Fence{}, nil, fmt.Errorf("ha: campaign: %w", err)
	}
	// Campaign does not look again at its own key once older ones are
	// gone: make sure the key it won with still stands.
	won := Fence{Key: e.elect.Key(), CreateRevision: e.elect.Rev()}
	check, err := e.o.Client.Txn(ctx).If(won.Cmp()).Commit()
	if err != nil {
		return Fence{}, nil, fmt.Errorf("ha: check the election key: %w", err)
	}
	if !check.Succeeded {
		return Fence{}, nil, ErrLeaseLost
	}
	previous := *e.other.Load()
	failedOver := previous != ""
	e.mu.Lock()
	e.leading, e.failedOver = true, failedOver
	e.mu.Unlock()
	addr := e.o.Address
	e.leader.Store(&addr)
	fence := won
	if failedOver {
		f, err := json.Marshal(Failover{From: previous, To: e.o.Address, At: time.Now().UTC()})
		if err == nil {
			_, err = e.o.Client.Txn(ctx).If(fence.Cmp()).Then(clientv3.OpPut(e.o.Prefix+failoverKey, string(f))).Commit()
		}
		if err != nil {
			e.o.Logger.Warn("recording the failover failed", "err", err)
		}
	}
	e.o.Logger.Info("this control plane leads", "address", e.o.Address, "previous", previous)
	return fence, e.session.Done(), nil
}

// Leading reports whether this control plane won the election.
func (e *Election) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// FailedOver reports whether this control plane, leading, took over
// from another one.
func (e *Election) FailedOver() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failedOver
}

// Status is what operators see of the election.
type Status struct {
	// Leader is the leader's address, "" while none is known.
	Leader string
	// Members are the control planes in the election, by address.
	Members []Member
	// LastFailover is the last change of leader, nil before the first.
	LastFailover *Failover
}

// Status reads the members and the last failover from etcd.
func (e *Election) Status(ctx context.Context) (Status, error) {
	st := Status{Leader: e.Leader()}
	resp, err := e.o.Client.Get(ctx, e.o.Prefix+memberKeys, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return st, fmt.Errorf("ha: read the members: %w", err)
	}
	for _, kv := range resp.Kvs {
		var m Member
		if err := json.Unmarshal(kv.Value, &m); err != nil {
			return st, fmt.Errorf("ha: member %s: %w", kv.Key, err)
		}
		st.Members = append(st.Members, m)
	}
	f, err := e.o.Client.Get(ctx, e.o.Prefix+failoverKey)
	if err != nil {
		return st, fmt.Errorf("ha: read the last failover: %w", err)
	}
	if len(f.Kvs) > 0 {
		var last Failover
		if err := json.Unmarshal(f.Kvs[0].Value, &last); err != nil {
			return st, fmt.Errorf("ha: last failover: %w", err)
		}
		st.LastFailover = &last
	}
	return st, nil
}

// Close leaves the election: a leader resigns, so a standby takes over at
// once rather than when the lease runs out, and the lease is revoked.
func (e *Election) Close() error {
	e.cancel()
	<-e.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if e.Leading() {
		err = e.elect.Resign(ctx)
	}
	return errors.Join(err, e.session.Close())
}
