package autoscale

import "time"

// windowSlots is how many samples a Window keeps within its span, besides
// the one at its start: samples closer together than span/windowSlots are
// merged into one, so that a Window's memory is bounded however often
// samples come.
const windowSlots = 256

// Window keeps one pool's utilisation samples for the utilisation rule:
// as many as the longest window asked of Samples needs, and the one
// before, which shows that the samples cover it. Its zero value is ready
// to use. It is not safe for concurrent use.
type Window struct {
	// buf is a ring of n samples from start, oldest first.
	buf      [windowSlots + 2]windowSlot
	start, n int
	// span is the longest window asked of Samples.
	span time.Duration
}

// windowSlot is a sample and how many samples were merged into it.
type windowSlot struct {
	Sample
	merged int
}

// Add adds the pool's mean utilisation at a moment. A sample older than
// the newest one is left out.
func (w *Window) Add(at time.Time, percent float64) {
	if w.n > 0 {
		last := w.at(w.n - 1)
		if at.Before(last.At) {
			return
		}
		if at.Sub(last.At) < w.span/windowSlots {
			last.merged++
			last.Percent += (percent - last.Percent) / float64(last.merged)
			return
		}
	}
	if w.n == len(w.buf) {
		w.dropOldest()
	}
	*w.at(w.n) = windowSlot{Sample: Sample{At: at, Percent: percent}, merged: 1}
	w.n++
	// Of the samples at or before the span's start, the newest alone
	// still counts: it holds until the next.
	cutoff := at.Add(-w.span)
	for w.n > 1 && !w.at(1).At.After(cutoff) {
		w.dropOldest()
	}
}

// Samples returns, oldest first, the samples over window up to now and
// the one before them, as Inputs.Utilization takes them. It keeps samples
// for window from now on, if no window asked before was longer.
func (w *Window) Samples(now time.Time, window time.Duration) []Sample {
	w.span = max(w.span, window)
	start := now.Add(-window)
	var out []Sample
	for i := range w.n {
		s := w.at(i).Sample
		if s.At.After(now) {
			break
		}
		if !s.At.After(start) {
			out = out[:0]
		}
		out = append(out, s)
	}
	return out
}

func (w *Window) at(i int) *windowSlot { return &w.buf[(w.start+i)%len(w.buf)] }

func (w *Window) dropOldest() {
	w.start = (w.start + 1) % len(w.buf)
	w.n--
}
