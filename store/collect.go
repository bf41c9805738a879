package store

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// MaxEventScan bounds how many events one query examines, so that a
// filter that matches little answers in bounded time.
const MaxEventScan = 100000

// defaultQueryLimit is a query's limit when it gives none.
const defaultQueryLimit = 100

// EventCollector gathers the answer to an event query from the encoded
// events a backend hands it, newest first.
type EventCollector struct {
	q       EventQuery
	scanned int
	// Events are the events kept so far, newest first.
	Events []*fleetv1.HealthEvent
}

// NewEventCollector collects the answer to q; a limit of 0 is 100.
func NewEventCollector(q EventQuery) *EventCollector {
	if q.Limit <= 0 {
		q.Limit = defaultQueryLimit
	}
	return &EventCollector{q: q}
}

// Limit is the most events the answer holds.
func (c *EventCollector) Limit() int { return c.q.Limit }

// Add decodes one event, keeps it when the query does, and reports
// whether to go on: until the limit is reached or MaxEventScan events
// were examined.
func (c *EventCollector) Add(v []byte) (bool, error) {
	c.scanned++
	e := &fleetv1.HealthEvent{}
	if err := proto.Unmarshal(v, e); err != nil {
		return false, fmt.Errorf("decode event: %w", err)
	}
	if c.q.Keep == nil || c.q.Keep(e) {
		c.Events = append(c.Events, e)
	}
	return len(c.Events) < c.q.Limit && c.scanned < MaxEventScan, nil
}

// AuditCollector gathers the answer to an audit query from the encoded
// entries a backend hands it, newest first.
type AuditCollector struct {
	limit int
	// Entries are the entries kept so far, newest first.
	Entries []*AuditEntry
}

// NewAuditCollector collects the answer to q; a limit of 0 is 100.
func NewAuditCollector(q AuditQuery) *AuditCollector {
	if q.Limit <= 0 {
		q.Limit = defaultQueryLimit
	}
	return &AuditCollector{limit: q.Limit}
}

// Limit is the most entries the answer holds.
func (c *AuditCollector) Limit() int { return c.limit }

// Add decodes one entry and reports whether to go on.
func (c *AuditCollector) Add(v []byte) (bool, error) {
	a, err := DecodeAudit(v)
	if err != nil {
		return false, err
	}
	c.Entries = append(c.Entries, a)
	return len(c.Entries) < c.limit, nil
}

// CommandCollector gathers a node's commands from the encoded commands a
// backend hands it, newest first.
type CommandCollector struct {
	limit int
	// Commands are the commands kept so far, newest first.
	Commands []*fleetv1.Command
}

// NewCommandCollector collects at most limit commands; 0 collects them
// all.
func NewCommandCollector(limit int) *CommandCollector {
	return &CommandCollector{limit: limit}
}

// Add decodes one command and reports whether to go on.
func (c *CommandCollector) Add(v []byte) (bool, error) {
	cmd := &fleetv1.Command{}
	if err := proto.Unmarshal(v, cmd); err != nil {
		return false, fmt.Errorf("decode command: %w", err)
	}
	c.Commands = append(c.Commands, cmd)
	return c.limit == 0 || len(c.Commands) < c.limit, nil
}
