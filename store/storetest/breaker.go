package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/navarch/navarch/store"
)

// testBreakerSurvivesReopen: a fresh store has no breaker state; the state
// written reads back whole, every time to the nanosecond in UTC, also
// after a reopen; a later write replaces it whole, a write without one
// leaves it, and one with a time outside the years 1 to 9999 is refused.
func testBreakerSurvivesReopen(t *testing.T, open Opener) {
	b := newBackend(t, open, store.Limits{})
	s := b.start()
	if got := load(t, s).Breaker; got != nil {
		t.Fatalf("a fresh store has breaker state %+v", got)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	tripped := &store.BreakerState{Recent: []time.Time{at, at.Add(time.Second)}, TrippedAt: at.Add(2 * time.Second), Suppressed: 3}
	apply(t, s, store.Write{Breaker: tripped})
	checkBreaker(t, "before reopen", load(t, s).Breaker, tripped)
	s = b.restart(s)
	checkBreaker(t, "after reopen", load(t, s).Breaker, tripped)

	closed := &store.BreakerState{Recent: []time.Time{at.Add(time.Minute)}}
	apply(t, s, store.Write{Breaker: closed})
	checkBreaker(t, "after replacing", load(t, s).Breaker, closed)
	apply(t, s, store.Write{Counters: map[string]uint64{"ids": 1}})
	checkBreaker(t, "after a write without it", load(t, s).Breaker, closed)

	bad := &store.BreakerState{Recent: []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}
	if err := s.Apply(t.Context(), store.Write{Breaker: bad}); err == nil {
		t.Fatal("a breaker state dated in the year 10000 was stored")
	}
	checkBreaker(t, "after a refused write", load(t, s).Breaker, closed)
}

func checkBreaker(t *testing.T, when string, got, want *store.BreakerState) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: no breaker state, want %+v", when, want)
	}
	utc := func(ts []time.Time) []time.Time {
		out := make([]time.Time, len(ts))
		for i, x := range ts {
			out[i] = x.UTC()
		}
		return out
	}
	if !slices.Equal(got.Recent, utc(want.Recent)) || got.TrippedAt != want.TrippedAt.UTC() || got.Suppressed != want.Suppressed {
		t.Fatalf("%s: breaker state %+v, want %+v in UTC", when, got, want)
	}
}
