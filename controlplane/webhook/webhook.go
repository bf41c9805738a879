// Package webhook owns the control plane's webhooks: it turns the fleet's
// saved node changes and breaker trips into signed JSON events and delivers
// them to each configured HTTPS endpoint, from a bounded queue of its own,
// with retries and backoff.
package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/navarch/navarch/internal/display"

	"github.com/jonboulle/clockwork"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The event types an endpoint may ask for.
const (
	TypeLifecycle = "lifecycle"
	TypeHealth    = "health"
	TypeBreaker   = "breaker"
)

// Types are the event types, in the order the docs list them.
var Types = []string{TypeLifecycle, TypeHealth, TypeBreaker}

// Event is one webhook delivery's body. The breaker fields are set only
// on a breaker event; node_id, from and to only on the others.
type Event struct {
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	Time   time.Time `json:"time"`
	NodeID string    `json:"node_id,omitempty"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	Reason string    `json:"reason,omitempty"`
	By     string    `json:"by,omitempty"`
	// Tripped is whether the breaker is tripped (always true when sent).
	Tripped *bool `json:"tripped,omitempty"`
	// RecentAutoCordons is how many automatic cordons fall in the
	// breaker's window.
	RecentAutoCordons *uint32 `json:"recent_auto_cordons,omitempty"`
	// WindowSeconds is the breaker's window.
	WindowSeconds *uint32 `json:"window_seconds,omitempty"`
}

// Endpoint is one receiver of events.
type Endpoint struct {
	// URL is where events are POSTed.
	URL string
	// Secret signs each body (HMAC-SHA256).
	Secret []byte
	// Events are the types sent to it; empty means all.
	Events []string
	// CAFile is a PEM file of CAs to trust for URL besides the system's.
	CAFile string
}

// Options configures New.
type Options struct {
	Endpoints []Endpoint
	// Logger receives delivery failures; nil discards them.
	Logger *slog.Logger
	// Clock stamps events and paces retries; nil means the real clock.
	Clock clockwork.Clock
	// QueueSize is how many events wait per endpoint before the oldest
	// is dropped; 0 means 1024.
	QueueSize int
	// Attempts is how many times one event is tried; 0 means 6.
	Attempts int
	// Timeout bounds one attempt; 0 means 10s.
	Timeout time.Duration
	// Backoff is the wait before the first retry, doubled for each
	// after, with jitter, up to 32 times it; 0 means 1s.
	Backoff time.Duration
}

// Dispatcher delivers events to every endpoint that asked for their type.
// It is the webhook side of the fleet's observer.
type Dispatcher struct {
	clock   clockwork.Clock
	senders []*sender
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// New checks o, builds a client per endpoint and starts one goroutine per
// endpoint. Close stops them.
func New(o Options) (*Dispatcher, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	o.QueueSize = cmpOr(o.QueueSize, 1024)
	o.Attempts = cmpOr(o.Attempts, 6)
	o.Timeout = cmpOr(o.Timeout, 10*time.Second)
	o.Backoff = cmpOr(o.Backoff, time.Second)
	d := &Dispatcher{clock: o.Clock}
	for i, e := range o.Endpoints {
		if len(e.Secret) == 0 {
			return nil, fmt.Errorf("webhook %d (%s): no secret", i, e.URL)
		}
		for _, t := range e.Events {
			if !slices.Contains(Types, t) {
				return nil, fmt.Errorf("webhook %d (%s): event type %q is not one of %s", i, e.URL, t, strings.Join(Types, ", "))
			}
		}
		client, err := newClient(e.CAFile, o.Timeout)
		if err != nil {
			return nil, fmt.Errorf("webhook %d (%s): %w", i, e.URL, err)
		}
		d.senders = append(d.senders, &sender{
			endpoint: e, client: client, log: o.Logger.With("webhook", e.URL), clock: o.Clock,
			size: o.QueueSize, attempts: o.Attempts, backoff: o.Backoff,
			wake: make(chan struct{}, 1),
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	for _, s := range d.senders {
		d.wg.Go(func() { s.run(ctx) })
	}
	return d, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Close stops every endpoint's goroutine, abandoning what is queued and
// any attempt under way.
func (d *Dispatcher) Close() {
	d.cancel()
	d.wg.Wait()
}

// Dropped is how many events the endpoints dropped from full queues, in
// all: what the navarch_webhook_dropped_total counter reads.
func (d *Dispatcher) Dropped() uint64 {
	var n uint64
	for _, s := range d.senders {
		s.mu.Lock()
		n += s.dropped
		s.mu.Unlock()
	}
	return n
}

// NodeChanged sends a lifecycle event if the node's lifecycle changed and
// a health event if its health did. It never blocks.
func (d *Dispatcher) NodeChanged(prev, next *fleetv1.Node) {
	now := d.clock.Now()
	if prev.GetLifecycle() != next.GetLifecycle() {
		at := now
		if t := next.GetLifecycleChangedAt(); t != nil {
			at = t.AsTime()
		}
		d.send(Event{
			Type: TypeLifecycle, Time: at, NodeID: next.GetNodeId(),
			From: lifecycleWord(prev.GetLifecycle()), To: lifecycleWord(next.GetLifecycle()),
			Reason: next.GetLifecycleReason(), By: next.GetLifecycleBy(),
		})
	}
	if prev.GetHealth() != next.GetHealth() {
		d.send(Event{
			Type: TypeHealth, Time: now, NodeID: next.GetNodeId(),
			From: healthWord(prev.GetHealth()), To: healthWord(next.GetHealth()),
			Reason: next.GetHealthCause(),
		})
	}
}

// BreakerTripped sends a breaker event. It never blocks.
func (d *Dispatcher) BreakerTripped(s *fleetv1.BreakerStatus) {
	at := d.clock.Now()
	if t := s.GetTrippedAt(); t != nil {
		at = t.AsTime()
	}
	tripped, recent, window := s.GetTripped(), s.GetRecentAutoCordons(), s.GetWindowSeconds()
	d.send(Event{
		Type: TypeBreaker, Time: at, Reason: "automatic cordons suspended",
		Tripped: &tripped, RecentAutoCordons: &recent, WindowSeconds: &window,
	})
}

// send stamps e with an id and queues it for every endpoint that wants
// its type.
func (d *Dispatcher) send(e Event) {
	e.ID = newID()
	e.Time = e.Time.UTC()
	for _, s := range d.senders {
		if len(s.endpoint.Events) == 0 || slices.Contains(s.endpoint.Events, e.Type) {
			s.enqueue(e)
		}
	}
}

// newID is a random 128-bit id in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// lifecycleWord and healthWord are the states' names, empty (not the
// console's "-") for a state that is not set, as for a node just seen.
func lifecycleWord(s fleetv1.LifecycleState) string { return orEmpty(display.Lifecycle(s)) }

func healthWord(s fleetv1.HealthStatus) string { return orEmpty(display.Health(s)) }

func orEmpty(word string) string {
	if word == "-" {
		return ""
	}
	return word
}

// errPermanent marks an answer that retrying will not change.
var errPermanent = errors.New("not retried")
