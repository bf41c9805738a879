package store

import "time"

// BreakerState is what the auto-cordon breaker remembers across restarts:
// the times of its recent automatic cordons and its trip, so a restart
// does not open a new window. It is written whole, replacing what was
// stored, in the write of the cordon or suppressed cordon that changed
// it.
type BreakerState struct {
	// Recent are the times of the automatic cordons still counted in the
	// breaker's window, oldest first.
	Recent []time.Time
	// TrippedAt is when the breaker tripped; zero while it is closed.
	TrippedAt time.Time
	// Suppressed counts the automatic cordons held back since it tripped.
	Suppressed uint32
}
