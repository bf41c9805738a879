// Package store owns the contract between the control plane and its durable
// state: what one atomic write holds (Write), what start-up reads back
// (State), how events are queried (EventQuery), the operator tokens (Token),
// the bindings of node ids to agents' keys (NodeKey), the audit log's
// entries (AuditEntry, AuditQuery), what the auto-cordon breaker remembers
// (BreakerState), and the Store interface every backend implements. It
// imports no backend; the embedded Badger one lives in store/badger and the
// suite every backend must pass in store/storetest.
package store

import (
	"context"
	"errors"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// ErrClosed is wrapped by the error of every operation, except Close, on a
// closed store.
var ErrClosed = errors.New("store is closed")

// ErrNotLeader is wrapped by the error of a write refused because this
// process no longer holds the leadership its store was fenced with: the
// write stored nothing, and another control plane may be writing.
var ErrNotLeader = errors.New("not the leader: the write was fenced off")

// Store is durable state: nodes, their commands and health events, the
// nodes' last-seen times, named counters, operator tokens, the bindings of
// node ids to agents' keys and the audit log.
//
// Every method is safe for concurrent use. A method given a context that is
// already done fails with an error wrapping the context's error, and a read
// stops early with such an error when its context is cancelled. After Close
// every method but Close fails with an error wrapping ErrClosed. An empty
// Write or last-seen batch is the exception to both: it returns nil.
//
// Commands, events and audit entries carry ids made by FormatSeq; their
// sequence numbers order them. The store does not hand out ids: the caller
// allocates them from counters it keeps here, so ids increase across
// restarts as long as the caller starts above the counters that Load
// returns.
type Store interface {
	// Apply writes w and returns nil only once all of it survives a crash
	// of the process or the machine (kill -9, a power loss); later reads,
	// including after a reopen, see it. Nodes, Commands, Events, Counters,
	// Tokens, NodeKeys, DeleteNodeKeys and Audit are written atomically:
	// when that step fails, none of them is stored. DeleteNodes follows as
	// a second step, so a node both written and deleted ends deleted; when
	// that step fails Apply returns the error, the rest of w is stored,
	// and deleting again completes the deletion.
	//
	// Nodes are replaced whole. A command is identified by its node and the
	// sequence number of its id, and writing it again replaces it; it is
	// finished (see Finished) or open, and the open ones are what
	// OpenCommands returns. Events are appended, each under its own id. Counters
	// are set to the values given, so a counter reads back exactly as last
	// acknowledged. DeleteTokens removes tokens after Tokens are written.
	// Tokens are replaced whole, by name, and read back with
	// every field as written: times equal to the nanosecond (in UTC), a
	// zero time still zero. Node keys are replaced whole, by node id, and
	// read back in the same way; DeleteNodeKeys removes bindings after
	// NodeKeys are written, so a node both bound and unbound in one write
	// ends unbound. A binding needs no stored node: an agent may join
	// before its node is written. Audit entries are appended, each under
	// its own id, and read back with every field as written, the time to
	// the nanosecond in UTC. Pools are replaced whole, by name, without
	// their status, which is never stored; DeletePools removes pools after
	// Pools are written. The breaker state is replaced whole and read back
	// with every time as written, to the nanosecond in UTC.
	// DeleteNodes removes each node with its commands, events, last-seen
	// time and key binding, so that a new machine may join under its id,
	// and never a token, whatever its name, nor an audit entry: the audit
	// log outlives the nodes it names.
	//
	// Apply fails, writing nothing, when a node has no id, a token has no
	// name, a node key has no node id or a key hash that is not 32 bytes
	// (a SHA-256), a token, node key, audit entry or the breaker state has
	// a time outside the years 1 to 9999 (what a google.protobuf.Timestamp
	// holds), or a command, event or audit entry id has no sequence number
	// (ParseSeq).
	// An empty Write writes nothing and returns nil.
	//
	// Apply also trims history, to limits that are the backend's options.
	// Events older than the retention are dropped, and audit entries older
	// than the audit retention, a limit of their own (both rounded to the
	// backend's clock, for Badger to the second). Beyond the per-node event
	// cap a node's oldest events go. Beyond the per-node command cap a
	// node's oldest finished commands go; open commands count towards that
	// cap but are never trimmed, so a node with more open commands than the
	// cap keeps them all.
	Apply(ctx context.Context, w Write) error

	// SaveLastSeen records when nodes were last heard from, replacing the
	// times stored for them. It is called with batches, so that a heartbeat
	// never costs a disk write of its own. It need not be as durable as
	// Apply: losing the last batch in a crash only makes those nodes look
	// silent since an earlier time.
	SaveLastSeen(ctx context.Context, seen map[string]time.Time) error

	// Load reads what start-up needs: every node ordered by id, every
	// last-seen time saved and not since deleted with its node, every
	// counter, every token ordered by name, every node key ordered by
	// node id, every pool ordered by name and the breaker state.
	Load(ctx context.Context) (*State, error)

	// Commands returns a node's kept commands, finished and open, newest
	// (highest sequence number) first. A limit above 0 returns at most that
	// many; 0 returns them all.
	Commands(ctx context.Context, nodeID string, limit int) ([]*fleetv1.Command, error)

	// OpenCommands returns every command, of every node, that is not
	// finished. They come grouped by node, oldest first within a node; the
	// order of the nodes is the backend's. Its cost grows with the number of
	// open commands, not with the history.
	OpenCommands(ctx context.Context) ([]*fleetv1.Command, error)

	// Events returns kept events, newest (highest sequence number) first,
	// of one node or of the whole fleet; see EventQuery.
	Events(ctx context.Context, q EventQuery) ([]*fleetv1.HealthEvent, error)

	// Audit returns kept audit entries, newest (highest sequence number)
	// first, of one node or of the whole log; see AuditQuery.
	Audit(ctx context.Context, q AuditQuery) ([]*AuditEntry, error)

	// Close releases the store once the operations under way have
	// returned. Closing a closed store does nothing and returns nil.
	Close() error
}

// Finished reports whether a command has reached an end: anything but
// pending, delivered or acknowledged. Only finished commands are trimmed
// from a node's history; the others are open and always kept.
func Finished(c *fleetv1.Command) bool {
	switch c.GetStatus() {
	case fleetv1.CommandStatus_COMMAND_STATUS_PENDING,
		fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED,
		fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED:
		return false
	}
	return true
}
