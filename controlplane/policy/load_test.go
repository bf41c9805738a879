package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func TestOverride(t *testing.T) {
	p, err := Parse([]byte("xids:\n  - codes: [13]\n    meaning: treated as fatal here\n    health: UNHEALTHY\n    remedy: RESET_GPU\ndegraded_hold: 5m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := p.XIDRule(13); r.Health != unhealthy || r.Meaning != "treated as fatal here" {
		t.Fatalf("override of 13 not applied: %+v", r)
	}
	if r := p.XIDRule(79); r.Health != unhealthy || r.Remedy != fleetv1.Remedy_REMEDY_REBOOT_NODE {
		t.Fatalf("79 lost its default: %+v", r)
	}
	if r := p.XIDRule(31); r.Health != healthy {
		t.Fatalf("31 lost its default: %+v", r)
	}
	if p.DegradedHold() != 5*time.Minute {
		t.Fatalf("hold %s", p.DegradedHold())
	}
}

func TestOverrideErrors(t *testing.T) {
	rows := []struct{ name, doc, want string }{
		{"unknown-key", "xidz: []", "xidz"},
		{"bad-health", "unknown_xid: {meaning: x, health: SICK, remedy: NONE}", "SICK"},
		{"bad-remedy", "unknown_xid: {meaning: x, health: DEGRADED, remedy: PRAY}", "PRAY"},
		{"bad-duration", "degraded_hold: soon", `degraded_hold: "soon"`},
		{"bad-count", "xids:\n  - codes: [5]\n    meaning: a\n    health: DEGRADED\n    remedy: WATCH\n    repeat:\n      count: many\n", "xids[0].repeat.count"},
		{"unknown-condition", "conditions: {cosmic_rays: {meaning: x, health: DEGRADED, remedy: WATCH}}", "cosmic_rays"},
		{"duplicate-code", "xids: [{codes: [5], meaning: a, health: DEGRADED, remedy: WATCH}, {codes: [5], meaning: b, health: DEGRADED, remedy: WATCH}]", "twice"},
		{"bad-repeat", "xids: [{codes: [5], meaning: a, health: DEGRADED, remedy: WATCH, repeat: {count: 1, window: 1m, health: UNHEALTHY}}]", "repeat.count"},
		{"no-meaning", "unknown_xid: {health: DEGRADED, remedy: WATCH}", "meaning"},
		{"empty-condition", "conditions: {thermal: }", "conditions.thermal: empty rule"},
		{"bad-condition", "conditions: {thermal: {meaning: hot, health: WARM, remedy: WATCH}}", "conditions.thermal: health"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			_, err := Parse([]byte(row.doc))
			if err == nil || !strings.Contains(err.Error(), row.want) {
				t.Fatalf("err = %v, want one naming %q", err, row.want)
			}
		})
	}
}

// TestOverrideOneCondition: a file's conditions merge by name; the others
// keep their defaults.
func TestOverrideOneCondition(t *testing.T) {
	p, err := Parse([]byte("conditions:\n  nvlink_down: {meaning: unbridged links read as down, health: HEALTHY, remedy: NONE}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := p.ConditionRule(fleetv1.EventKind_EVENT_KIND_NVLINK_DOWN); r.Health != healthy || r.Meaning != "unbridged links read as down" {
		t.Fatalf("override of nvlink_down not applied: %+v", r)
	}
	if r, _ := p.ConditionRule(fleetv1.EventKind_EVENT_KIND_THERMAL); r.Health != degraded || r.Remedy != fleetv1.Remedy_REMEDY_CHECK_COOLING {
		t.Fatalf("thermal lost its default: %+v", r)
	}
	g := newGPU()
	m := metrics()
	m.Nvlinks[0].Active = false
	if evs := p.Observe(g, m, t0); len(evs) != 1 || g.GetHealth() != healthy || len(g.GetFaults()) != 0 {
		t.Fatalf("a link down judged HEALTHY: events %v, GPU %s, faults %v", evs, g.GetHealth(), g.GetFaults())
	}
}

// TestPrintedDefaultIsTheDefault: the printed default policy, conditions
// and all, read back as a policy file, is the built-in policy; so each
// condition's default rule is one a file could hold.
func TestPrintedDefaultIsTheDefault(t *testing.T) {
	p, err := Parse(DefaultYAML())
	if err != nil {
		t.Fatalf("the printed default policy does not load: %v", err)
	}
	if want := Default(); !reflect.DeepEqual(p, want) {
		t.Fatalf("the printed default policy differs from the built-in one:\n%+v\n%+v", p, want)
	}
}

// TestEscalationMergesFieldByField: a file written before lookback existed
// still loads, keeping the default lookback.
func TestEscalationMergesFieldByField(t *testing.T) {
	p, err := Parse([]byte("escalation:\n  after_remedies: 3\n  remedy: REPLACE_GPU\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.escalateAfter != 3 || p.escalateRemedy != fleetv1.Remedy_REMEDY_REPLACE_GPU || p.lookback != Default().lookback {
		t.Fatalf("after %d, remedy %s, lookback %s", p.escalateAfter, p.escalateRemedy, p.lookback)
	}
}
