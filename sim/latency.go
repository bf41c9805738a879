package sim

import (
	"slices"
	"sync"
	"time"
)

// Latencies records call latencies in a bounded reservoir, so a long run
// keeps its memory flat while its quantiles stay fair.
type Latencies struct {
	mu      sync.Mutex
	samples []time.Duration
	seen    int64
	state   uint64
}

// reservoirSize bounds the samples kept.
const reservoirSize = 200000

// Add records one latency.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen++
	if len(l.samples) < reservoirSize {
		l.samples = append(l.samples, d)
		return
	}
	// Reservoir sampling with a tiny xorshift: each sample seen so far has
	// the same chance to be kept.
	l.state ^= l.state<<13 | 1
	l.state ^= l.state >> 7
	l.state ^= l.state << 17
	if i := int64(l.state % uint64(l.seen)); i < reservoirSize {
		l.samples[i] = d
	}
}

// Reset forgets every sample.
func (l *Latencies) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.samples, l.seen = l.samples[:0], 0
}

// Count is how many latencies were recorded.
func (l *Latencies) Count() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen
}

// Quantiles returns the latencies at each quantile (0–1); zero when none
// were recorded.
func (l *Latencies) Quantiles(qs ...float64) []time.Duration {
	l.mu.Lock()
	s := slices.Clone(l.samples)
	l.mu.Unlock()
	out := make([]time.Duration, len(qs))
	if len(s) == 0 {
		return out
	}
	slices.Sort(s)
	for i, q := range qs {
		out[i] = s[min(len(s)-1, int(q*float64(len(s))))]
	}
	return out
}

// HeartbeatLatencies are the Heartbeat call latencies seen so far.
func (f *Fleet) HeartbeatLatencies() *Latencies { return &f.heartbeat }

// ReportLatencies are the ReportHealth call latencies seen so far.
func (f *Fleet) ReportLatencies() *Latencies { return &f.report }
