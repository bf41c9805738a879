package autoscale

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// compiledSchedule is a Schedule's cron line parsed and its time zone
// loaded.
type compiledSchedule struct {
	cron cron.Schedule
	loc  *time.Location
}

// compiledCache keeps schedules compiled, so that a pass of the reconciler
// neither parses each cron line again nor reads the zone's file from
// disk. Both results are immutable, so they may be shared.
var compiledCache = struct {
	sync.Mutex
	byKey map[string]compiledSchedule
}{byKey: map[string]compiledSchedule{}}

// compiledCacheLimit bounds the cache; configurations reloaded many times
// over cannot grow it further.
const compiledCacheLimit = 256

// neverFiresFrom is where compile looks for a schedule's first firing: a
// line that names a date that does not exist ("0 0 30 2 *") never fires,
// and robfig/cron gives up after five years. A leap year, so that
// February 29th counts.
var neverFiresFrom = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// compile parses s's cron line in its time zone. Its error starts with the
// field's name.
func compile(s Schedule) (compiledSchedule, error) {
	key := s.TimeZone + "\x00" + s.Cron
	compiledCache.Lock()
	c, ok := compiledCache.byKey[key]
	compiledCache.Unlock()
	if ok {
		return c, nil
	}
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return compiledSchedule{}, fmt.Errorf("time_zone: %w", err)
	}
	line := strings.TrimSpace(s.Cron)
	if strings.HasPrefix(line, "TZ=") || strings.HasPrefix(line, "CRON_TZ=") {
		return compiledSchedule{}, fmt.Errorf("cron: %q names its time zone: give it in time_zone", s.Cron)
	}
	if strings.HasPrefix(line, "@every") {
		// A constant interval counts from whenever it is asked, so it
		// opens no window at a time of day.
		return compiledSchedule{}, fmt.Errorf("cron: %q fires at no fixed time: give five fields", s.Cron)
	}
	sched, err := cron.ParseStandard(line)
	if err != nil {
		return compiledSchedule{}, fmt.Errorf("cron: %q: %w", s.Cron, err)
	}
	if sched.Next(neverFiresFrom.In(loc)).IsZero() {
		return compiledSchedule{}, fmt.Errorf("cron: %q never fires", s.Cron)
	}
	c = compiledSchedule{cron: sched, loc: loc}
	compiledCache.Lock()
	if len(compiledCache.byKey) >= compiledCacheLimit {
		clear(compiledCache.byKey)
	}
	compiledCache.byKey[key] = c
	compiledCache.Unlock()
	return c, nil
}

// openAt reports whether one of s's windows is open at now: whether it
// fired in the Duration up to now.
func (s Schedule) openAt(now time.Time) bool {
	c, err := compile(s)
	if err != nil {
		return false
	}
	// Next is the first firing strictly after its argument, so a window
	// that fired exactly Duration ago has just closed.
	f := c.cron.Next(now.Add(-s.Duration).In(c.loc))
	return !f.IsZero() && !f.After(now)
}

// endedBetween returns the end of the first of s's windows that ended
// after from and no later than now, if one did, in the schedule's zone.
func (s Schedule) endedBetween(from, now time.Time) (time.Time, bool) {
	c, err := compile(s)
	if err != nil {
		return time.Time{}, false
	}
	f := c.cron.Next(from.Add(-s.Duration).In(c.loc))
	if f.IsZero() {
		return time.Time{}, false
	}
	end := f.Add(s.Duration)
	return end, !end.After(now)
}

// String names the schedule in a reason: its cron line, its zone where it
// is not UTC, and its duration.
func (s Schedule) String() string {
	if s.TimeZone == "" || s.TimeZone == "UTC" {
		return fmt.Sprintf("schedule %q (for %s)", s.Cron, s.Duration)
	}
	return fmt.Sprintf("schedule %q in %s (for %s)", s.Cron, s.TimeZone, s.Duration)
}
