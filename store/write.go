package store

import (
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Write is one atomic change. The zero value writes nothing.
type Write struct {
	// Nodes are written in full, replacing what was stored.
	Nodes []*fleetv1.Node
	// DeleteNodes are removed with their commands, events, last-seen
	// times and key bindings: a node that is gone frees its id for a new
	// machine.
	DeleteNodes []string
	// Commands are written in full, keyed by node and command id.
	Commands []*fleetv1.Command
	// Events are appended with the store's retention; their ids must be set
	// and increase over time.
	Events []*fleetv1.HealthEvent
	// Counters are set to the given values.
	Counters map[string]uint64
	// Tokens are written whole, each replacing the stored token of the
	// same name; each must have a name.
	Tokens []*Token
	// DeleteTokens are the names of tokens that go, after Tokens are
	// written.
	DeleteTokens []string
	// NodeKeys are written whole, each replacing the binding of its node;
	// each must have a node id and a 32-byte key hash.
	NodeKeys []*NodeKey
	// DeleteNodeKeys are the node ids whose binding goes, after NodeKeys
	// are written: a node both bound and unbound in one write ends
	// unbound.
	DeleteNodeKeys []string
	// Audit entries are appended with the store's audit retention; their
	// ids must be set and increase over time.
	Audit []*AuditEntry
	// Pools are written in full, each replacing the stored pool of the
	// same name; each must have a name. Their status is not stored.
	Pools []*fleetv1.Pool
	// DeletePools are the names of pools that go, after Pools are
	// written.
	DeletePools []string
	// Breaker, when set, replaces the stored auto-cordon breaker state;
	// its times must lie within the years 1 to 9999.
	Breaker *BreakerState
}

// Empty reports whether w writes nothing.
func (w *Write) Empty() bool {
	return len(w.Nodes) == 0 && len(w.DeleteNodes) == 0 && len(w.Commands) == 0 &&
		len(w.Events) == 0 && len(w.Counters) == 0 && len(w.Tokens) == 0 &&
		len(w.NodeKeys) == 0 && len(w.DeleteNodeKeys) == 0 && len(w.Audit) == 0 &&
		len(w.Pools) == 0 && len(w.DeletePools) == 0 && len(w.DeleteTokens) == 0 &&
		w.Breaker == nil
}

// State is everything Load reads at start-up.
type State struct {
	// Nodes are all stored nodes, ordered by id.
	Nodes []*fleetv1.Node
	// LastSeen holds the last-seen time of nodes that have one.
	LastSeen map[string]time.Time
	// Counters holds every counter set by Apply.
	Counters map[string]uint64
	// Tokens are every stored token, ordered by name, their times in UTC.
	Tokens []*Token
	// NodeKeys are every binding of a node id to an agent's key, ordered
	// by node id, their times in UTC.
	NodeKeys []*NodeKey
	// Pools are every stored pool, ordered by name.
	Pools []*fleetv1.Pool
	// Breaker is the auto-cordon breaker state last written, its times in
	// UTC; nil when none was.
	Breaker *BreakerState
}

// EventQuery selects events for Events.
type EventQuery struct {
	// NodeID keeps one node's events; empty means the whole fleet.
	NodeID string
	// Limit is the most events to return; 0 means 100.
	Limit int
	// Keep, when set, decides which events are returned and count towards
	// Limit. A backend may bound how many events one query examines, so a
	// filter that matches little answers in bounded time with fewer than
	// Limit.
	Keep func(*fleetv1.HealthEvent) bool
}
