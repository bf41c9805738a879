// Package policy judges GPU health: it turns the events and metrics an agent
// reports into per-GPU faults with a health, a cause and a suggested remedy.
//
// Each fault signal other than an XID is one row of the conditions table
// (conditions.go): its name, its event kind, whether snapshots re-check it,
// and its default rule. The XID rules are data (default.yaml, embedded in
// the binary), and a file can override any rule. The package keeps no
// state of its own; the fault state lives in each fleetv1.Gpu, and a
// Repeats value per GPU counts recent events.
package policy

import (
	"maps"
	"slices"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Rule is how one signal is judged.
type Rule struct {
	// Bucket is the XID catalog's immediate-action bucket the rule follows;
	// empty for rules of other signals.
	Bucket string
	// Meaning is the signal's meaning in words.
	Meaning string
	// Health is the health one event of the signal imposes.
	Health fleetv1.HealthStatus
	// Remedy is the suggested action.
	Remedy fleetv1.Remedy
	// Repeat, when set, raises the health or changes the remedy once the
	// signal repeats.
	Repeat *Repeat
}

// Repeat raises a rule's health, changes its remedy, or both, when count
// events fall on one GPU within window.
type Repeat struct {
	Count  int
	Window time.Duration
	// Health is the health from the count-th event on; UNSPECIFIED keeps
	// the rule's.
	Health fleetv1.HealthStatus
	// Remedy is the remedy from the count-th event on; UNSPECIFIED keeps
	// the rule's.
	Remedy fleetv1.Remedy
}

// Policy is a loaded, validated fault policy.
type Policy struct {
	xids           map[uint32]Rule
	unknownXID     Rule
	conditions     map[fleetv1.EventKind]Rule
	degradedHold   time.Duration
	burst          time.Duration
	lookback       time.Duration
	escalateAfter  int
	escalateRemedy fleetv1.Remedy
}

// XIDRule returns the rule for an XID code, falling back to the unknown-XID
// rule.
func (p *Policy) XIDRule(code uint32) Rule {
	if r, ok := p.xids[code]; ok {
		return r
	}
	return p.unknownXID
}

// KnownXIDs returns the codes the policy names, in order.
func (p *Policy) KnownXIDs() []uint32 {
	codes := make([]uint32, 0, len(p.xids))
	for c := range p.xids {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	return codes
}

// ConditionRule returns the rule for a non-XID event kind.
func (p *Policy) ConditionRule(kind fleetv1.EventKind) (Rule, bool) {
	r, ok := p.conditions[kind]
	return r, ok
}

// DegradedHold is how long an event-raised DEGRADED fault stays without a
// new event.
func (p *Policy) DegradedHold() time.Duration { return p.degradedHold }

// ruleFor returns the rule that judges ev. An XID whose kernel-log text
// says more than its code (144-150, 154) is judged by what the text says;
// clears reports that the text ends an earlier fault of the code.
func (p *Policy) ruleFor(ev *fleetv1.HealthEvent) (rule Rule, clears, ok bool) {
	if ev.GetKind() != fleetv1.EventKind_EVENT_KIND_XID {
		rule, ok = p.ConditionRule(ev.GetKind())
		return rule, false, ok
	}
	rule = p.XIDRule(ev.GetXid())
	// A policy file's own rule for these codes, naming no decoding bucket,
	// is taken as it stands.
	if rule.Bucket != "WORKFLOW_NVLINK5_ERR" && rule.Bucket != "XID_154" {
		return rule, false, true
	}
	if d, ok := decodeXID(ev.GetXid(), rule.Meaning, ev.GetMessage()); ok {
		rule.Health, rule.Remedy, rule.Meaning = d.health, d.remedy, d.cause
		clears = d.clears
	}
	return rule, clears, true
}

// Repeats remembers when recent incidents of each signal began on one GPU,
// and when each signal was last heard. The zero value is ready to use; it
// is not safe for concurrent use.
type Repeats struct {
	times map[faultKey][]time.Time
	last  map[faultKey]time.Time
	// open marks the signals whose latest incident may still take in an
	// event that comes within the burst of its start; a remedy closes them.
	open map[faultKey]bool
}

// Clone returns a copy of r that shares nothing with it, so a change that
// cannot be saved can put the counts back as they were. A nil r clones to
// an empty one.
func (r *Repeats) Clone() *Repeats {
	c := &Repeats{}
	if r == nil || r.times == nil {
		return c
	}
	c.times = maps.Clone(r.times)
	for k, ts := range c.times {
		c.times[k] = slices.Clone(ts)
	}
	c.last = maps.Clone(r.last)
	c.open = maps.Clone(r.open)
	return c
}

// Remedied records that the GPU's reset or reboot was done: whatever comes
// next begins a new incident, however soon, since an error that returns
// after its remedy is the news a repeat rule looks for.
func (r *Repeats) Remedied() {
	clear(r.open)
}

// add records an event of k and returns how many incidents of it began
// within window. The event begins a new incident unless it comes less than
// burst after the start of the latest one (a steady stream is a storm, one
// incident per burst), or ongoing says the signal's fault still awaits its
// remedy: an error that comes back before its remedy is the same incident.
func (r *Repeats) add(k faultKey, now time.Time, window, burst time.Duration, ongoing bool) int {
	if r.times == nil {
		r.times = make(map[faultKey][]time.Time)
		r.last = make(map[faultKey]time.Time)
		r.open = make(map[faultKey]bool)
	}
	r.last[k] = now
	inBurst := r.open[k] && len(r.times[k]) > 0 && now.Sub(r.times[k][len(r.times[k])-1]) < burst
	r.open[k] = true
	ts := r.times[k]
	cut := 0
	for cut < len(ts) && now.Sub(ts[cut]) >= window {
		cut++
	}
	ts = ts[cut:]
	if len(ts) == 0 || !(ongoing || inBurst) {
		ts = append(ts, now)
	}
	// A storm of events must not grow the memory: only the window's worth is
	// needed, and never more than a few hundred.
	if len(ts) > 512 {
		ts = ts[len(ts)-512:]
	}
	r.times[k] = ts
	if len(r.times) > maxRepeatKeys {
		r.forgetOldest(k)
	}
	return len(ts)
}

// maxRepeatKeys bounds the signals remembered per GPU: an agent reporting
// a stream of distinct XID codes must not grow the memory.
const maxRepeatKeys = 64

// forgetOldest drops the signal, other than keep, heard from least recently.
func (r *Repeats) forgetOldest(keep faultKey) {
	var oldest faultKey
	var at time.Time
	found := false
	for k := range r.times {
		if k == keep {
			continue
		}
		if last := r.last[k]; !found || last.Before(at) {
			oldest, at, found = k, last, true
		}
	}
	delete(r.times, oldest)
	delete(r.last, oldest)
	delete(r.open, oldest)
}

type faultKey struct {
	kind fleetv1.EventKind
	xid  uint32
}

func keyOf(kind fleetv1.EventKind, xid uint32) faultKey { return faultKey{kind, xid} }
