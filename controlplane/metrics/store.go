package metrics

import (
	"context"
	"time"

	"github.com/navarch/navarch/store"
)

// Store returns st with each durable write timed and each failed one
// counted. The other methods are st's own: last-seen times are not
// durable writes, and reads are not writes.
func (m *Metrics) Store(st store.Store) store.Store { return &timedStore{Store: st, m: m} }

type timedStore struct {
	store.Store
	m *Metrics
}

// Apply writes w through the store it wraps; an empty write, which writes
// nothing, is not counted.
func (s *timedStore) Apply(ctx context.Context, w store.Write) error {
	if w.Empty() {
		return s.Store.Apply(ctx, w)
	}
	began := time.Now()
	if err := s.Store.Apply(ctx, w); err != nil {
		s.m.writeFailures.Inc()
		return err
	}
	s.m.writeDuration.Observe(time.Since(began).Seconds())
	return nil
}
