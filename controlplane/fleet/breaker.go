package fleet

import (
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// breaker limits automatic cordons: within any window, at most
// max(1, floor(fraction × fleet size)) nodes are cordoned by policy. Past
// that it trips and suppresses further automatic cordons until the window
// has room again. A fleet that cordons itself to death is worse than a few
// unhealthy nodes left for an operator to judge.
//
// Its window and trip outlive a restart: each automatic cordon, and each
// one held back, stores the breaker's state in the node's own write
// (saved), and New restores it.
type breaker struct {
	enabled  bool
	fraction float64
	window   time.Duration

	// saving orders the writes that carry the breaker's state, so the one
	// stored last is the newest.
	saving sync.Mutex

	mu         sync.Mutex
	recent     []time.Time
	limit      int
	trippedAt  time.Time
	suppressed uint32
}

func newBreaker(enabled bool, fraction float64, window time.Duration) *breaker {
	return &breaker{enabled: enabled, fraction: fraction, window: window, limit: 1}
}

// restore takes back the state a previous run stored, for a fleet of
// fleetSize active nodes; nil is a breaker that never cordoned.
func (b *breaker) restore(st *store.BreakerState, fleetSize int) {
	if st == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.recent = slices.Clone(st.Recent)
	slices.SortFunc(b.recent, time.Time.Compare)
	b.trippedAt = st.TrippedAt
	b.suppressed = st.Suppressed
	b.limit = max(1, int(b.fraction*float64(fleetSize)))
}

// saved is the breaker's state as it is stored.
func (b *breaker) saved() *store.BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return &store.BreakerState{Recent: slices.Clone(b.recent), TrippedAt: b.trippedAt, Suppressed: b.suppressed}
}

func (b *breaker) prune(now time.Time) {
	i := 0
	for i < len(b.recent) && now.Sub(b.recent[i]) >= b.window {
		i++
	}
	b.recent = b.recent[i:]
	if !b.trippedAt.IsZero() && len(b.recent) < b.limit {
		b.trippedAt = time.Time{}
		b.suppressed = 0
	}
}

// allow records an automatic cordon if the breaker lets it through. It
// reports whether the cordon may go ahead and whether this call tripped it.
func (b *breaker) allow(now time.Time, fleetSize int) (ok, tripped bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.enabled {
		return false, false
	}
	b.limit = max(1, int(b.fraction*float64(fleetSize)))
	b.prune(now)
	if len(b.recent) >= b.limit {
		tripped = b.trippedAt.IsZero()
		if tripped {
			b.trippedAt = now
		}
		b.suppressed++
		return false, tripped
	}
	b.recent = append(b.recent, now)
	return true, false
}

func (b *breaker) status(now time.Time) *fleetv1.BreakerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.prune(now)
	s := &fleetv1.BreakerStatus{
		AutoCordonEnabled: b.enabled,
		Tripped:           !b.trippedAt.IsZero(),
		RecentAutoCordons: uint32(len(b.recent)),
		MaxFraction:       b.fraction,
		WindowSeconds:     uint32(b.window / time.Second),
		SuppressedCordons: b.suppressed,
	}
	if s.Tripped {
		s.TrippedAt = timestamppb.New(b.trippedAt)
	}
	return s
}

// forget takes back an automatic cordon allowed at t whose change could not
// be saved, so it does not count against the window.
func (b *breaker) forget(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.Index(b.recent, t); i >= 0 {
		b.recent = slices.Delete(b.recent, i, i+1)
	}
}
