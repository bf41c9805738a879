package policy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/navarch/navarch/internal/yamlfile"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

//go:embed default.yaml
var defaultYAML []byte

// file is the YAML layout. Pointers tell a section that is absent from one
// that is empty.
type file struct {
	XIDs         []xidRule            `yaml:"xids"`
	UnknownXID   *ruleSpec            `yaml:"unknown_xid"`
	Conditions   map[string]*ruleSpec `yaml:"conditions"`
	DegradedHold *duration            `yaml:"degraded_hold"`
	Burst        *duration            `yaml:"burst"`
	Escalation   *escalation          `yaml:"escalation"`
}

type xidRule struct {
	Codes    []uint32 `yaml:"codes"`
	ruleSpec `yaml:",inline"`
}

type ruleSpec struct {
	Bucket  string      `yaml:"bucket"`
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
	AfterRemedies int       `yaml:"after_remedies"`
	Lookback      *duration `yaml:"lookback"`
	Remedy        string    `yaml:"remedy"`
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
	if len(over.Conditions) > 0 && base.Conditions == nil {
		base.Conditions = make(map[string]*ruleSpec)
	}
	for name, spec := range over.Conditions {
		base.Conditions[name] = spec
	}
	if over.DegradedHold != nil {
		base.DegradedHold = over.DegradedHold
	}
	if over.Burst != nil {
		base.Burst = over.Burst
	}
	if e := over.Escalation; e != nil {
		// Field by field: a file written before lookback existed keeps
		// the default's.
		if e.AfterRemedies != 0 {
			base.Escalation.AfterRemedies = e.AfterRemedies
		}
		if e.Lookback != nil {
			base.Escalation.Lookback = e.Lookback
		}
		if e.Remedy != "" {
			base.Escalation.Remedy = e.Remedy
		}
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
	for name := range f.Conditions {
		if conditionNamed(name) == nil {
			return nil, fmt.Errorf("conditions: unknown condition %q (known: %s)", name, strings.Join(conditionNames(), ", "))
		}
	}
	for _, c := range conditions {
		rule := c.rule
		if spec, ok := f.Conditions[c.name]; ok {
			if spec == nil {
				return nil, fmt.Errorf("conditions.%s: empty rule", c.name)
			}
			if rule, err = spec.rule(); err != nil {
				return nil, fmt.Errorf("conditions.%s: %w", c.name, err)
			}
		}
		p.conditions[c.kind] = rule
	}
	if f.DegradedHold == nil || f.DegradedHold.Duration <= 0 {
		return nil, errors.New("degraded_hold must be a positive duration")
	}
	p.degradedHold = f.DegradedHold.Duration
	if f.Escalation == nil || f.Escalation.AfterRemedies < 1 {
		return nil, errors.New("escalation.after_remedies must be at least 1")
	}
	p.escalateAfter = f.Escalation.AfterRemedies
	if f.Escalation.Lookback == nil || f.Escalation.Lookback.Duration <= 0 {
		return nil, errors.New("escalation.lookback must be a positive duration")
	}
	p.lookback = f.Escalation.Lookback.Duration
	if f.Burst == nil || f.Burst.Duration < 0 {
		return nil, errors.New("burst must be a duration of 0 or more")
	}
	p.burst = f.Burst.Duration
	if p.escalateRemedy, err = parseRemedy(f.Escalation.Remedy); err != nil {
		return nil, fmt.Errorf("escalation.remedy: %w", err)
	}
	return p, nil
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
	if s.Bucket != "" && bucketNamed(s.Bucket) == nil {
		return Rule{}, fmt.Errorf("bucket: %q is not a bucket of NVIDIA's XID catalog (known: %s)", s.Bucket, strings.Join(bucketNames(), ", "))
	}
	rule := Rule{Bucket: s.Bucket, Meaning: s.Meaning, Health: h, Remedy: r}
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
