// Package policy judges GPU health: it turns the events and metrics an agent
// reports into per-GPU faults with a health, a cause and a suggested remedy.
//
// The rules are data (default.yaml, embedded in the binary) and a file can
// override them. The package keeps no state of its own; the fault state lives
// in each fleetv1.Gpu, and a Repeats value per GPU counts recent events.
package policy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/yamlfile"
	"google.golang.org/protobuf/types/known/timestamppb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default policy, for documentation and
// for operators who want a file to start from.
func DefaultYAML() []byte { return slices.Clone(defaultYAML) }

// Rule is how one signal is judged.
type Rule struct {
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
	escalateAfter  int
	escalateRemedy fleetv1.Remedy
}

// conditionKinds maps the file's condition names to event kinds.
var conditionKinds = map[string]fleetv1.EventKind{
	"ecc_uncorrected":       fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED,
	"row_remap_pending":     fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING,
	"row_remap_failure":     fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE,
	"thermal":               fleetv1.EventKind_EVENT_KIND_THERMAL,
	"clock_slowdown":        fleetv1.EventKind_EVENT_KIND_CLOCK_SLOWDOWN,
	"nvlink_down":           fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN,
	"gpu_lost":              fleetv1.EventKind_EVENT_KIND_GPU_LOST,
	"ecc_corrected_rate":    fleetv1.EventKind_EVENT_KIND_ECC_CORRECTED_RATE,
	"pcie_replay":           fleetv1.EventKind_EVENT_KIND_PCIE_REPLAY,
	"retired_pages_pending": fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_PENDING,
}

// levelKinds are conditions re-checked on every metrics snapshot: they clear
// on their own when the snapshot no longer shows them.
var levelKinds = map[fleetv1.EventKind]bool{
	fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED:       true,
	fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING:     true,
	fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE:     true,
	fleetv1.EventKind_EVENT_KIND_THERMAL:               true,
	fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN:           true,
	fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_PENDING: true,
}

// file is the YAML layout. Pointers tell a section that is absent from one
// that is empty.
type file struct {
	XIDs         []xidRule            `yaml:"xids"`
	UnknownXID   *ruleSpec            `yaml:"unknown_xid"`
	Conditions   map[string]*ruleSpec `yaml:"conditions"`
	DegradedHold *duration            `yaml:"degraded_hold"`
	Escalation   *escalation          `yaml:"escalation"`
}

type xidRule struct {
	Codes    []uint32 `yaml:"codes"`
	ruleSpec `yaml:",inline"`
}

type ruleSpec struct {
	Meaning string      `yaml:"meaning"`
	Health  string      `yaml:"health"`
	Remedy  string      `yaml:"remedy"`
	Repeat  *repeatSpec `yaml:"repeat"`
}

type repeatSpec struct {
	Count  int      `yaml:"count"`
	Window duration `yaml:"window"`
	Health string   `yaml:"health"`
	Remedy string   `yaml:"remedy"`
}

type escalation struct {
	AfterRemedies int    `yaml:"after_remedies"`
	Remedy        string `yaml:"remedy"`
}

type duration = yamlfile.Duration

// Default returns the embedded default policy.
func Default() *Policy {
	p, err := Parse(nil)
	if err != nil {
		panic(fmt.Sprintf("embedded default policy is invalid: %v", err))
	}
	return p
}

// LoadFile reads an override file and applies it on top of the defaults.
func LoadFile(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy file: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("policy file %s: %w", path, err)
	}
	return p, nil
}

// Parse applies an override document on top of the defaults; nil or empty
// means the defaults alone.
func Parse(override []byte) (*Policy, error) {
	base, err := decode(defaultYAML)
	if err != nil {
		return nil, fmt.Errorf("default policy: %w", err)
	}
	if len(bytes.TrimSpace(override)) > 0 {
		over, err := decode(override)
		if err != nil {
			return nil, err
		}
		merge(base, over)
	}
	return build(base)
}

func decode(b []byte) (*file, error) {
	f := &file{}
	if err := yamlfile.Decode(b, f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return f, nil
}

// merge lays over on top of base: sections replace, XIDs merge by code and
// conditions by name.
func merge(base, over *file) {
	if len(over.XIDs) > 0 {
		overridden := map[uint32]bool{}
		for _, r := range over.XIDs {
			for _, c := range r.Codes {
				overridden[c] = true
			}
		}
		var kept []xidRule
		for _, r := range base.XIDs {
			var codes []uint32
			for _, c := range r.Codes {
				if !overridden[c] {
					codes = append(codes, c)
				}
			}
			if len(codes) > 0 {
				r.Codes = codes
				kept = append(kept, r)
			}
		}
		base.XIDs = append(kept, over.XIDs...)
	}
	if over.UnknownXID != nil {
		base.UnknownXID = over.UnknownXID
	}
	for name, spec := range over.Conditions {
		base.Conditions[name] = spec
	}
	if over.DegradedHold != nil {
		base.DegradedHold = over.DegradedHold
	}
	if over.Escalation != nil {
		base.Escalation = over.Escalation
	}
}

func build(f *file) (*Policy, error) {
	p := &Policy{
		xids:       make(map[uint32]Rule),
		conditions: make(map[fleetv1.EventKind]Rule),
	}
	for i, r := range f.XIDs {
		if len(r.Codes) == 0 {
			return nil, fmt.Errorf("xids[%d]: codes is empty", i)
		}
		rule, err := r.rule()
		if err != nil {
			return nil, fmt.Errorf("xids[%d] (%v): %w", i, r.Codes, err)
		}
		for _, c := range r.Codes {
			if c == 0 {
				return nil, fmt.Errorf("xids[%d]: XID 0 is not a code", i)
			}
			if _, dup := p.xids[c]; dup {
				return nil, fmt.Errorf("xids[%d]: XID %d is listed twice", i, c)
			}
			p.xids[c] = rule
		}
	}
	if f.UnknownXID == nil {
		return nil, errors.New("unknown_xid is required")
	}
	var err error
	if p.unknownXID, err = f.UnknownXID.rule(); err != nil {
		return nil, fmt.Errorf("unknown_xid: %w", err)
	}
	for name, spec := range f.Conditions {
		kind, ok := conditionKinds[name]
		if !ok {
			return nil, fmt.Errorf("conditions: unknown condition %q (known: %s)", name, strings.Join(conditionNames(), ", "))
		}
		if spec == nil {
			return nil, fmt.Errorf("conditions.%s: empty rule", name)
		}
		rule, err := spec.rule()
		if err != nil {
			return nil, fmt.Errorf("conditions.%s: %w", name, err)
		}
		p.conditions[kind] = rule
	}
	for _, name := range conditionNames() {
		if _, ok := p.conditions[conditionKinds[name]]; !ok {
			return nil, fmt.Errorf("conditions.%s is missing", name)
		}
	}
	if f.DegradedHold == nil || f.DegradedHold.Duration <= 0 {
		return nil, errors.New("degraded_hold must be a positive duration")
	}
	p.degradedHold = f.DegradedHold.Duration
	if f.Escalation == nil || f.Escalation.AfterRemedies < 1 {
		return nil, errors.New("escalation.after_remedies must be at least 1")
	}
	p.escalateAfter = f.Escalation.AfterRemedies
	if p.escalateRemedy, err = parseRemedy(f.Escalation.Remedy); err != nil {
		return nil, fmt.Errorf("escalation.remedy: %w", err)
	}
	return p, nil
}

func conditionNames() []string {
	names := make([]string, 0, len(conditionKinds))
	for n := range conditionKinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (s *ruleSpec) rule() (Rule, error) {
	if strings.TrimSpace(s.Meaning) == "" {
		return Rule{}, errors.New("meaning is required")
	}
	h, err := parseHealth(s.Health)
	if err != nil {
		return Rule{}, fmt.Errorf("health: %w", err)
	}
	r, err := parseRemedy(s.Remedy)
	if err != nil {
		return Rule{}, fmt.Errorf("remedy: %w", err)
	}
	rule := Rule{Meaning: s.Meaning, Health: h, Remedy: r}
	if s.Repeat != nil {
		if s.Repeat.Count < 2 {
			return Rule{}, errors.New("repeat.count must be at least 2")
		}
		if s.Repeat.Window.Duration <= 0 {
			return Rule{}, errors.New("repeat.window must be a positive duration")
		}
		if s.Repeat.Health == "" && s.Repeat.Remedy == "" {
			return Rule{}, errors.New("repeat: needs a health, a remedy or both")
		}
		rule.Repeat = &Repeat{Count: s.Repeat.Count, Window: s.Repeat.Window.Duration}
		if s.Repeat.Health != "" {
			if rule.Repeat.Health, err = parseHealth(s.Repeat.Health); err != nil {
				return Rule{}, fmt.Errorf("repeat.health: %w", err)
			}
		}
		if s.Repeat.Remedy != "" {
			if rule.Repeat.Remedy, err = parseRemedy(s.Repeat.Remedy); err != nil {
				return Rule{}, fmt.Errorf("repeat.remedy: %w", err)
			}
		}
	}
	return rule, nil
}

func parseHealth(s string) (fleetv1.HealthStatus, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "HEALTHY":
		return fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, nil
	case "DEGRADED":
		return fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED, nil
	case "UNHEALTHY":
		return fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, nil
	}
	return 0, fmt.Errorf("%q is not HEALTHY, DEGRADED or UNHEALTHY", s)
}

func parseRemedy(s string) (fleetv1.Remedy, error) {
	name := "REMEDY_" + strings.ToUpper(strings.TrimSpace(s))
	v, ok := fleetv1.Remedy_value[name]
	if !ok || v == 0 {
		var known []string
		for n, v := range fleetv1.Remedy_value {
			if v != 0 {
				known = append(known, strings.TrimPrefix(n, "REMEDY_"))
			}
		}
		sort.Strings(known)
		return 0, fmt.Errorf("%q is not a remedy (known: %s)", s, strings.Join(known, ", "))
	}
	return fleetv1.Remedy(v), nil
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

func (p *Policy) ruleFor(ev *fleetv1.HealthEvent) (Rule, bool) {
	if ev.GetKind() == fleetv1.EventKind_EVENT_KIND_XID {
		return p.XIDRule(ev.GetXid()), true
	}
	return p.ConditionRule(ev.GetKind())
}

// Rank orders health from best to worst: HEALTHY, UNKNOWN, DEGRADED,
// UNHEALTHY.
func Rank(h fleetv1.HealthStatus) int {
	switch h {
	case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
		return 1
	case fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN:
		return 2
	case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		return 3
	case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
		return 4
	}
	return 0
}

// Worse returns the worse of two health states.
func Worse(a, b fleetv1.HealthStatus) fleetv1.HealthStatus {
	if Rank(b) > Rank(a) {
		return b
	}
	return a
}

// Repeats remembers when recent events of each signal hit one GPU. The zero
// value is ready to use; it is not safe for concurrent use.
type Repeats struct {
	times map[faultKey][]time.Time
}

func (r *Repeats) add(k faultKey, now time.Time, window time.Duration) int {
	if r.times == nil {
		r.times = make(map[faultKey][]time.Time)
	}
	ts := r.times[k]
	cut := 0
	for cut < len(ts) && now.Sub(ts[cut]) >= window {
		cut++
	}
	ts = append(ts[cut:], now)
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
	for k, ts := range r.times {
		if k == keep {
			continue
		}
		if last := ts[len(ts)-1]; !found || last.Before(at) {
			oldest, at, found = k, last, true
		}
	}
	delete(r.times, oldest)
}

type faultKey struct {
	kind fleetv1.EventKind
	xid  uint32
}

func keyOf(kind fleetv1.EventKind, xid uint32) faultKey { return faultKey{kind, xid} }

// Judge classifies ev, which happened on gpu, and updates gpu's faults and
// health. It fills the event's health, cause, remedy, repeat count and
// escalation. It reports whether the GPU's fault state changed.
func (p *Policy) Judge(gpu *fleetv1.Gpu, ev *fleetv1.HealthEvent, rep *Repeats, now time.Time) bool {
	if ev.GetKind() == fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED {
		ev.Health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
		ev.Remedy = fleetv1.Remedy_REMEDY_NONE
		if ev.GetCause() == "" {
			ev.Cause = "GPU recovered"
		}
		changed := p.clear(gpu, keyOf(fleetv1.EventKind_EVENT_KIND_GPU_LOST, 0))
		gpu.Lost = false
		return changed
	}
	rule, ok := p.ruleFor(ev)
	if !ok {
		ev.Health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
		ev.Remedy = fleetv1.Remedy_REMEDY_NONE
		return false
	}
	k := keyOf(ev.GetKind(), ev.GetXid())
	ev.Health = rule.Health
	ev.Remedy = rule.Remedy
	ev.Cause = rule.Meaning
	window := time.Hour
	if rule.Repeat != nil {
		window = rule.Repeat.Window
	}
	n := 1
	if rep != nil {
		n = rep.add(k, now, window)
	}
	ev.RepeatCount = uint32(n)
	if r := rule.Repeat; r != nil && n >= r.Count {
		if Rank(r.Health) > Rank(ev.Health) {
			ev.Health = r.Health
			ev.Escalated = true
		}
		if r.Remedy != fleetv1.Remedy_REMEDY_UNSPECIFIED && r.Remedy != ev.Remedy {
			ev.Remedy = r.Remedy
			ev.Escalated = true
		}
		if ev.Escalated {
			ev.Cause = fmt.Sprintf("%s, repeated %d times within %s", rule.Meaning, n, r.Window)
		}
	}
	if ev.GetKind() == fleetv1.EventKind_EVENT_KIND_GPU_LOST {
		gpu.Lost = true
	}
	if Rank(ev.Health) <= Rank(fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY) {
		return false
	}
	p.raise(gpu, k, ev, now)
	p.Rollup(gpu)
	return true
}

// raise records or refreshes the fault for k, counting a new reset or
// reboot episode and escalating the remedy past the policy's limit.
func (p *Policy) raise(gpu *fleetv1.Gpu, k faultKey, ev *fleetv1.HealthEvent, now time.Time) {
	ts := timestamppb.New(now)
	for _, f := range gpu.Faults {
		if keyOf(f.GetKind(), f.GetXid()) == k {
			f.LastSeen = ts
			f.Count++
			f.Health = Worse(f.GetHealth(), ev.GetHealth())
			switch {
			case ev.GetEscalated() && !f.GetEscalated() && ev.GetRemedy() != f.GetRemedy():
				// The signal repeated: its repeat remedy replaces the rule's.
				f.Remedy = ev.GetRemedy()
				f.Escalated = true
				if resetOrReboot(f.GetRemedy()) && !f.GetAwaitsRemedy() {
					p.joinEpisode(gpu, f, ev)
				}
			case f.GetEscalated() && ev.GetRemedy() != f.GetRemedy():
				ev.Remedy = f.GetRemedy()
				ev.Escalated = true
			}
			if Rank(ev.GetHealth()) >= Rank(f.GetHealth()) {
				f.Cause = ev.GetCause()
			}
			return
		}
	}
	f := &fleetv1.Fault{
		Kind:      ev.GetKind(),
		Xid:       ev.GetXid(),
		Health:    ev.GetHealth(),
		Cause:     ev.GetCause(),
		Remedy:    ev.GetRemedy(),
		Since:     ts,
		LastSeen:  ts,
		Count:     1,
		Escalated: ev.GetEscalated(),
	}
	if resetOrReboot(f.GetRemedy()) {
		p.joinEpisode(gpu, f, ev)
	}
	gpu.Faults = append(gpu.Faults, f)
}

// joinEpisode makes f, which asks for a GPU reset or a node reboot, part of
// the GPU's remedy episode, opening one if none is open: faults raised
// while the GPU already awaits a reset or reboot (XID 48 with its ECC count
// and pending remap, XID 79 with the lost GPU) are one episode, answered by
// one remedy. Past the policy's limit the remedy escalates.
func (p *Policy) joinEpisode(gpu *fleetv1.Gpu, f *fleetv1.Fault, ev *fleetv1.HealthEvent) {
	open := awaitingRemedy(gpu)
	f.AwaitsRemedy = true
	if !open {
		gpu.RemedyEpisodes++
	}
	if int(gpu.RemedyEpisodes) > p.escalateAfter {
		f.Remedy = p.escalateRemedy
		f.Escalated = true
		f.Cause = fmt.Sprintf("%s; needed a reset or reboot %d times", f.Cause, gpu.RemedyEpisodes)
		ev.Remedy = f.Remedy
		ev.Cause = f.Cause
		ev.Escalated = true
	}
}

// remedyWeight orders remedies by how much they ask: hardware first, then
// a reboot, a reset, cooling, the application, watching, nothing.
func remedyWeight(r fleetv1.Remedy) int {
	switch r {
	case fleetv1.Remedy_REMEDY_REPLACE_GPU:
		return 9
	case fleetv1.Remedy_REMEDY_INSPECT_HARDWARE:
		return 8
	case fleetv1.Remedy_REMEDY_CONTACT_SUPPORT:
		return 7
	case fleetv1.Remedy_REMEDY_REBOOT_NODE, fleetv1.Remedy_REMEDY_RESTART_VM:
		return 6
	case fleetv1.Remedy_REMEDY_RESET_GPU:
		return 5
	case fleetv1.Remedy_REMEDY_CHECK_COOLING:
		return 4
	case fleetv1.Remedy_REMEDY_RESTART_APPLICATION:
		return 3
	case fleetv1.Remedy_REMEDY_CHECK_APPLICATION:
		return 2
	case fleetv1.Remedy_REMEDY_WATCH:
		return 1
	}
	return 0
}

// awaitingRemedy reports whether the GPU's remedy episode is open: a fault
// that asked for a reset or reboot is active. When the last one clears, a
// remedy was applied, and the next such fault starts a new episode.
func awaitingRemedy(gpu *fleetv1.Gpu) bool {
	return slices.ContainsFunc(gpu.GetFaults(), (*fleetv1.Fault).GetAwaitsRemedy)
}

// endEpisode closes the GPU's remedy episode: the faults still active no
// longer hold it open.
func endEpisode(gpu *fleetv1.Gpu) {
	for _, f := range gpu.GetFaults() {
		f.AwaitsRemedy = false
	}
}

func resetOrReboot(r fleetv1.Remedy) bool {
	return r == fleetv1.Remedy_REMEDY_RESET_GPU || r == fleetv1.Remedy_REMEDY_REBOOT_NODE
}

func (p *Policy) clear(gpu *fleetv1.Gpu, k faultKey) bool {
	n := len(gpu.Faults)
	gpu.Faults = slices.DeleteFunc(gpu.Faults, func(f *fleetv1.Fault) bool {
		return keyOf(f.GetKind(), f.GetXid()) == k
	})
	if len(gpu.Faults) == n {
		return false
	}
	p.Rollup(gpu)
	return true
}

// levelCheck is one level condition as a snapshot shows it.
type levelCheck struct {
	kind    fleetv1.EventKind
	known   bool // the metric is supported and meaningful for this GPU
	present bool
	value   uint64
}

// levelChecks reads the level conditions from a snapshot, without changing
// anything.
func levelChecks(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics) [6]levelCheck {
	unsupported := func(group string) bool { return slices.Contains(m.GetUnsupported(), group) }
	temp := m.GetTemperatureCelsius()
	slow := gpu.GetSlowdownTemperatureCelsius()
	thermal := slow > 0 && temp >= slow
	if slow > 0 && hasFault(gpu, keyOf(fleetv1.EventKind_EVENT_KIND_THERMAL, 0)) {
		// Hysteresis: a GPU hovering at its threshold must not flap.
		thermal = temp+thermalHysteresis >= slow
	}
	activeLinks := uint32(0)
	for _, l := range m.GetNvlinks() {
		if l.GetActive() {
			activeLinks++
		}
	}
	links := gpu.GetNvlinkCount()
	return [6]levelCheck{
		{fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED, !unsupported("ecc"), m.GetEcc().GetVolatileUncorrected() > 0, m.GetEcc().GetVolatileUncorrected()},
		{fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING, !unsupported("row_remap"), m.GetRowRemap().GetPending(), 0},
		{fleetv1.EventKind_EVENT_KIND_ROW_REMAP_FAILURE, !unsupported("row_remap"), m.GetRowRemap().GetFailure(), 0},
		{fleetv1.EventKind_EVENT_KIND_THERMAL, !unsupported("temperature") && slow > 0, thermal, uint64(temp)},
		{fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN, !unsupported("nvlink") && links > 0, activeLinks < links, uint64(links - min(activeLinks, links))},
		{fleetv1.EventKind_EVENT_KIND_RETIRED_PAGES_PENDING, !unsupported("retired_pages"), m.GetRetiredPages().GetPending(), 0},
	}
}

// Changes reports whether Observe would change the GPU's faults for this
// snapshot. It changes nothing, so a report that changes nothing costs no
// copy of the node.
func (p *Policy) Changes(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool {
	for _, c := range levelChecks(gpu, m) {
		if c.known && c.present != hasFault(gpu, keyOf(c.kind, 0)) {
			return true
		}
	}
	return false
}

// Observe re-checks the level conditions against a metrics snapshot. It
// raises faults the snapshot shows and clears those it no longer shows, and
// returns one event for each change so the event log tells the story.
func (p *Policy) Observe(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics, now time.Time) []*fleetv1.HealthEvent {
	var out []*fleetv1.HealthEvent
	for _, c := range levelChecks(gpu, m) {
		if !c.known {
			continue
		}
		k := keyOf(c.kind, 0)
		active := hasFault(gpu, k)
		switch {
		case c.present && !active:
			ev := &fleetv1.HealthEvent{
				Kind:     c.kind,
				GpuIndex: int32(gpu.GetIndex()),
				GpuUuid:  gpu.GetUuid(),
				Time:     timestamppb.New(now),
				Message:  "seen in health snapshot",
				Value:    c.value,
			}
			p.Judge(gpu, ev, nil, now)
			out = append(out, ev)
		case !c.present && active:
			rule := p.conditions[c.kind]
			p.clear(gpu, k)
			out = append(out, recovered(gpu, now, "cleared: "+rule.Meaning, c.value))
		}
	}
	return out
}

// thermalHysteresis is how far below the slowdown threshold a GPU must cool,
// in degrees Celsius, before a thermal fault clears.
const thermalHysteresis = 3

func hasFault(gpu *fleetv1.Gpu, k faultKey) bool {
	for _, f := range gpu.GetFaults() {
		if keyOf(f.GetKind(), f.GetXid()) == k {
			return true
		}
	}
	return false
}

func recovered(gpu *fleetv1.Gpu, now time.Time, cause string, value uint64) *fleetv1.HealthEvent {
	return &fleetv1.HealthEvent{
		Kind:     fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED,
		GpuIndex: int32(gpu.GetIndex()),
		GpuUuid:  gpu.GetUuid(),
		Time:     timestamppb.New(now),
		Health:   fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY,
		Cause:    cause,
		Remedy:   fleetv1.Remedy_REMEDY_NONE,
		Value:    value,
	}
}

// Expire clears DEGRADED faults raised by events (not level conditions)
// whose signal has been quiet for the degraded hold. It returns an event per
// cleared fault.
func (p *Policy) Expire(gpu *fleetv1.Gpu, now time.Time) []*fleetv1.HealthEvent {
	var out []*fleetv1.HealthEvent
	kept := gpu.Faults[:0]
	for _, f := range gpu.Faults {
		if !levelKinds[f.GetKind()] && f.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED &&
			now.Sub(f.GetLastSeen().AsTime()) >= p.degradedHold {
			out = append(out, recovered(gpu, now, fmt.Sprintf("cleared after %s without recurrence: %s", p.degradedHold, f.GetCause()), 0))
			continue
		}
		kept = append(kept, f)
	}
	clear(gpu.Faults[len(kept):])
	gpu.Faults = kept
	if len(out) > 0 {
		p.Rollup(gpu)
	}
	return out
}

// ClearAfterReboot drops the faults a reboot or GPU reset remedies, keeping
// the level conditions (the next snapshot re-checks them) and the remedy
// episode count. It is called when a node registers with a new boot id, and
// returns a GPU_RECOVERED event naming what it cleared, or nil.
func (p *Policy) ClearAfterReboot(gpu *fleetv1.Gpu, now time.Time) *fleetv1.HealthEvent {
	var cleared []string
	gpu.Faults = slices.DeleteFunc(gpu.Faults, func(f *fleetv1.Fault) bool {
		if levelKinds[f.GetKind()] {
			return false
		}
		cleared = append(cleared, f.GetCause())
		return true
	})
	gpu.Lost = false
	// The reboot was the remedy: a fault raised from now on starts a new
	// episode, even beside a level condition the reboot did not mend,
	// which no longer holds an episode open.
	endEpisode(gpu)
	if len(cleared) == 0 {
		return nil
	}
	p.Rollup(gpu)
	return recovered(gpu, now, "cleared by reboot: "+strings.Join(cleared, "; "), 0)
}

// LostAgain records that a lost GPU is still lost after a reboot: the
// reboot was a remedy that failed. Its earlier faults stay, as the story of
// how it was lost; the loss is raised anew, as a new remedy episode, so a
// GPU that reboots do not bring back escalates.
func (p *Policy) LostAgain(gpu *fleetv1.Gpu, ev *fleetv1.HealthEvent, now time.Time) {
	endEpisode(gpu)
	p.clear(gpu, keyOf(fleetv1.EventKind_EVENT_KIND_GPU_LOST, 0))
	p.Judge(gpu, ev, nil, now)
}

// Found clears a lost GPU that is back without a reboot: only the GPU_LOST
// fault goes, the GPU's other faults stay. It returns a GPU_RECOVERED event,
// or nil when the GPU was not lost.
func (p *Policy) Found(gpu *fleetv1.Gpu, now time.Time) *fleetv1.HealthEvent {
	if !gpu.GetLost() && !hasFault(gpu, keyOf(fleetv1.EventKind_EVENT_KIND_GPU_LOST, 0)) {
		return nil
	}
	ev := recovered(gpu, now, "GPU is back in the inventory", 0)
	p.Judge(gpu, ev, nil, now)
	return ev
}

// Rollup orders a GPU's faults worst first and sets its health, cause and
// remedy from the worst.
func (p *Policy) Rollup(gpu *fleetv1.Gpu) {
	// Worst first; among equally bad faults the one with the weightiest
	// remedy, which is the one to follow (an inspection over a reboot, a
	// reset over checking the application).
	sort.SliceStable(gpu.Faults, func(i, j int) bool {
		a, b := gpu.Faults[i], gpu.Faults[j]
		if Rank(a.GetHealth()) != Rank(b.GetHealth()) {
			return Rank(a.GetHealth()) > Rank(b.GetHealth())
		}
		return remedyWeight(a.GetRemedy()) > remedyWeight(b.GetRemedy())
	})
	if len(gpu.Faults) == 0 {
		gpu.Health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
		gpu.HealthCause = ""
		gpu.Remedy = fleetv1.Remedy_REMEDY_UNSPECIFIED
		return
	}
	worst := gpu.Faults[0]
	gpu.Health = worst.GetHealth()
	gpu.Remedy = worst.GetRemedy()
	gpu.HealthCause = worst.GetCause()
	if len(gpu.Faults) > 1 {
		gpu.HealthCause = fmt.Sprintf("%s (+%d more)", worst.GetCause(), len(gpu.Faults)-1)
	}
}
