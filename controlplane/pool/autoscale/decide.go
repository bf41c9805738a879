package autoscale

import (
	"fmt"
	"strconv"
	"time"
)

// The sources of a Decision.
const (
	SourceUtilization = "utilization"
	SourceSchedule    = "schedule"
	SourceQueue       = "queue"
)

// Sample is the pool's mean GPU utilisation at one moment.
type Sample struct {
	At      time.Time
	Percent float64
}

// Inputs are what the reconciler knows of one pool at one pass.
type Inputs struct {
	// Now is the time of the pass.
	Now time.Time
	// Min and Max bound the pool's size.
	Min, Max int
	// Wanted is the size the pool is kept at now.
	Wanted int
	// Live is how many of the pool's nodes count towards its size.
	Live int
	// Utilization is the pool's mean utilisation, oldest first, as a
	// Window gives it.
	Utilization []Sample
	// LastChange is when Wanted last changed, for whatever reason; zero
	// if it never did.
	LastChange time.Time
	// PendingNodes and PendingJobs are what SlurmQueue.Pending counted
	// for the pool's partition, when QueueKnown.
	PendingNodes int
	PendingJobs  int
	// QueueKnown is whether the queue was read at this pass.
	QueueKnown bool
}

// Decision is the size the pool should be kept at.
type Decision struct {
	// Wanted is the size; Inputs.Wanted when nothing changes.
	Wanted int
	// Reason says why Wanted changed, for the audit log and the console;
	// "" when it did not.
	Reason string
	// Source is the rule that changed it: SourceUtilization,
	// SourceSchedule, SourceQueue, or "" when it was the pool's min or max.
	Source string
}

// Decide decides the pool's size; the package's documentation gives the
// rules. It expects a Config that passed Validate: a schedule that does
// not compile opens no window.
func Decide(cfg Config, in Inputs) Decision {
	d := decider{cfg: cfg, in: in, lo: in.Min, hi: max(in.Min, in.Max)}
	d.base = d.clamp(in.Wanted)
	if up, ok := d.largestRaise(); ok {
		return up
	}
	if d.base != in.Wanted {
		bound := "max"
		if in.Wanted < d.lo {
			bound = "min"
		}
		return Decision{Wanted: d.base, Reason: fmt.Sprintf("the pool's %s is %d: %s", bound, d.base, d.change(d.base, ""))}
	}
	if down, ok := d.lower(); ok {
		return down
	}
	return Decision{Wanted: in.Wanted}
}

// decider holds one Decide call's inputs and the size each rule starts
// from.
type decider struct {
	cfg    Config
	in     Inputs
	lo, hi int
	// base is Wanted brought within the pool's min and max.
	base int
}

// clamp brings n within the pool's min and max; the min wins over a max
// below it.
func (d decider) clamp(n int) int { return min(max(n, d.lo), d.hi) }

// change is the reason's end: "3 → 4", with what stopped it where a
// bound did.
func (d decider) change(to int, limit string) string {
	s := fmt.Sprintf("%d → %d", d.in.Wanted, to)
	if limit != "" {
		s += ", " + limit
	}
	return s
}

// raise is the decision for a rule that asks for ask nodes: the ask
// brought within min and max, and whether it is more than base.
func (d decider) raise(ask int, source, why string) (Decision, bool) {
	to := d.clamp(ask)
	if to <= d.base {
		return Decision{}, false
	}
	limit := ""
	if ask > to {
		limit = "the pool's max"
	}
	return Decision{Wanted: to, Reason: why + ": " + d.change(to, limit), Source: source}, true
}

// largestRaise is the largest of the rules' raises: schedule, then queue,
// then utilisation, the first of them winning a tie.
func (d decider) largestRaise() (Decision, bool) {
	var best Decision
	found := false
	consider := func(dec Decision, ok bool) {
		if ok && (!found || dec.Wanted > best.Wanted) {
			best, found = dec, true
		}
	}
	if s, ok := d.largestOpenSchedule(); ok {
		consider(d.raise(s.Size, SourceSchedule, fmt.Sprintf("%s wants %d", s, s.Size)))
	}
	if q := d.cfg.Queue; q != nil && d.in.QueueKnown && d.in.PendingNodes > 0 {
		why := fmt.Sprintf("%s in partition %s %s for %s beyond the %d live",
			count(d.in.PendingJobs, "pending job"), q.Partition, verb(d.in.PendingJobs),
			count(d.in.PendingNodes, "node"), d.in.Live)
		consider(d.raise(d.in.Live+d.in.PendingNodes, SourceQueue, why))
	}
	// A Wanted outside min and max is brought back first; the rule's
	// step counts from a size within them.
	if u := d.cfg.Utilization; u != nil && d.base == d.in.Wanted {
		if mean, ok := d.utilization(); ok && mean > u.ScaleUpAbove {
			why := fmt.Sprintf("mean GPU utilisation %s over %s is above %s", meanPercent(mean, u.ScaleUpAbove), u.Window, percent(u.ScaleUpAbove))
			consider(d.raise(d.base+step(u), SourceUtilization, why))
		}
	}
	return best, found
}

// largestOpenSchedule is the open window with the largest size.
func (d decider) largestOpenSchedule() (Schedule, bool) {
	var best Schedule
	found := false
	for _, s := range d.cfg.Schedules {
		if s.openAt(d.in.Now) && (!found || s.Size > best.Size) {
			best, found = s, true
		}
	}
	return best, found
}

// lower is the decision that shrinks the pool, if one does: the
// utilisation rule's, or without one, a window's end.
func (d decider) lower() (Decision, bool) {
	if q := d.cfg.Queue; q != nil && (!d.in.QueueKnown || d.in.PendingNodes > 0) {
		// Jobs wait, or may: the nodes a shrink would remove could
		// serve them.
		return Decision{}, false
	}
	floor, floorName := d.lo, "the pool's min"
	if s, ok := d.largestOpenSchedule(); ok && d.clamp(s.Size) > floor {
		floor, floorName = d.clamp(s.Size), "the floor of "+s.String()
	}
	shrink := func(to int, limit, source, why string) (Decision, bool) {
		if to >= d.base {
			return Decision{}, false
		}
		return Decision{Wanted: to, Reason: why + ": " + d.change(to, limit), Source: source}, true
	}
	if u := d.cfg.Utilization; u != nil {
		mean, ok := d.utilization()
		if !ok || mean >= u.ScaleDownBelow {
			return Decision{}, false
		}
		why := fmt.Sprintf("mean GPU utilisation %s over %s is below %s", meanPercent(mean, u.ScaleDownBelow), u.Window, percent(u.ScaleDownBelow))
		if ask := d.base - step(u); ask >= floor {
			return shrink(ask, "", SourceUtilization, why)
		}
		return shrink(floor, floorName, SourceUtilization, why)
	}
	if d.in.LastChange.IsZero() {
		return Decision{}, false
	}
	for _, s := range d.cfg.Schedules {
		if end, ok := s.endedBetween(d.in.LastChange, d.in.Now); ok {
			why := fmt.Sprintf("%s ended at %s", s, end.Format("2006-01-02 15:04 MST"))
			return shrink(floor, floorName, SourceSchedule, why)
		}
	}
	return Decision{}, false
}

// utilization is the mean the utilisation rule acts on, and whether it
// may act: after its cooldown, on samples that cover its window.
func (d decider) utilization() (float64, bool) {
	u := d.cfg.Utilization
	if !d.in.LastChange.IsZero() && d.in.Now.Sub(d.in.LastChange) < u.Cooldown {
		return 0, false
	}
	return meanOver(d.in.Utilization, d.in.Now, u.Window)
}

// meanOver is the time-weighted mean of samples over the window up to
// now, each sample holding until the next, and whether they cover it: one
// sample at or before its start, and one within it. Samples after now,
// or older than the one before them, are left out.
func meanOver(samples []Sample, now time.Time, window time.Duration) (float64, bool) {
	start := now.Add(-window)
	var sum float64
	var cur *Sample
	covered := false
	for i := range samples {
		s := &samples[i]
		if s.At.After(now) || (cur != nil && s.At.Before(cur.At)) {
			continue
		}
		if !s.At.After(start) {
			cur, covered = s, true
			continue
		}
		if cur != nil {
			sum += cur.Percent * s.At.Sub(later(cur.At, start)).Seconds()
		}
		cur = s
	}
	if !covered || !cur.At.After(start) {
		return 0, false
	}
	sum += cur.Percent * now.Sub(cur.At).Seconds()
	return sum / window.Seconds(), true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// step is the utilisation rule's step, 1 where it is not set.
func step(u *Utilization) int { return max(u.Step, 1) }

// percent writes a threshold as short as it goes: "80%", "92.5%".
func percent(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) + "%" }

// meanPercent writes v, a mean compared with threshold, with the fewest
// decimals (up to two) that keep it from reading as the threshold: a mean
// of 80.4 above 80 is "80.4%", not "80%".
func meanPercent(v, threshold float64) string {
	for decimals := range 2 {
		if s := strconv.FormatFloat(v, 'f', decimals, 64); s != strconv.FormatFloat(threshold, 'f', decimals, 64) {
			return s + "%"
		}
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "%"
}

// count is "1 node", "3 nodes"; a count of 0, which a caller that does
// not know how many jobs leaves, is the plural alone: "pending jobs".
func count(n int, noun string) string {
	switch n {
	case 0:
		return noun + "s"
	case 1:
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// verb is "asks" for one job and "ask" for several.
func verb(n int) string {
	if n == 1 {
		return "asks"
	}
	return "ask"
}
