package yamlfile

import (
	"strings"
	"testing"
	"time"
)

type dur = Duration

type conf struct {
	Name  string `yaml:"name"`
	Count int    `yaml:"count"`
	Stale dur    `yaml:"stale_after"`
	Inner struct {
		Window dur `yaml:"window"`
		Max    int `yaml:"max"`
	} `yaml:"inner"`
	Rules []struct {
		Codes  []uint32 `yaml:"codes"`
		Health string   `yaml:"health"`
	} `yaml:"rules"`
}

func TestErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"name: a\ncount: abc\n", "line 2: count:"},
		{"stale_after: abc\n", `line 1: stale_after: "abc" is not a duration`},
		{"inner:\n  max: 3\n  window: soon\n", "line 3: inner.window:"},
		{"inner:\n  max: lots\n", "line 2: inner.max:"},
		{"rules:\n  - codes: [1]\n    health: x\n  - codes: [a]\n", "line 4: rules[1].codes"},
		{"bogus: 1\n", "field bogus not found"},
		{"inner: {max: lots, window: 5s}\n", "line 1: inner:"},
		{"rules:\n  - health: ok\n  - health: [x]\n", "line 3: rules[1].health:"},
		{"rules: [{health: [x]}, {codes: [2]}]\n", "line 1: rules:"},
		{"rules:\n  - codes:\n      [1, a]\n", "line 3: rules[0].codes:"},
		{"rules:\n  - codes: [1,\n      a]\n", "line 3: rules[0].codes[1]:"},
		{"rules:\n  - {codes: [1], health: [x]}\n", "line 2: rules[0]:"},
	} {
		var c conf
		err := Decode([]byte(tc.doc), &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to contain %q", tc.doc, err, tc.want)
		}
	}
}

// TestErrorsSayWhatTheKeyTakes: a value of the wrong kind is named by its
// key and what the key takes, in words; never by a Go type.
func TestErrorsSayWhatTheKeyTakes(t *testing.T) {
	type extra struct {
		Labels map[string]string `yaml:"labels"`
		List   []string          `yaml:"list"`
		Ratio  float64           `yaml:"ratio"`
		On     bool              `yaml:"on"`
		Limit  *uint32           `yaml:"limit"`
	}
	tests := []struct {
		name, doc, want string
	}{
		{"string-for-int", "count: abc\n", `line 1: count: "abc" is not a whole number`},
		{"list-for-int", "count: [1]\n", "line 1: count: a list is not a whole number"},
		{"fraction-for-int", "count: 1.5\n", "line 1: count: 1.5 is not a whole number"},
		{"fraction-for-unsigned", "rules:\n  - codes: [2, 0.5]\n", "line 2: rules[0].codes: 0.5 is not a whole number, 0 or more"},
		{"fraction-for-pointer", "limit: 3.25\n", "line 1: limit: 3.25 is not a whole number, 0 or more"},
		{"fraction-with-other-error", "count: 2.5\nname: [a]\n", "line 1: count: 2.5 is not a whole number"},
		{"other-error-with-fraction", "count: 2.5\nname: [a]\n", "line 2: name: a list is not a string"},
		{"bad-duration", "stale_after: soon\n", `line 1: stale_after: "soon" is not a duration (use e.g. 10s, 5m, 1h)`},
		{"number-for-duration", "stale_after: 5\n", "line 1: stale_after: 5 is not a duration (use e.g. 10s, 5m, 1h)"},
		{"list-for-duration", "stale_after: [1]\n", "line 1: stale_after: a list is not a duration (use e.g. 10s, 5m, 1h)"},
		{"mapping-for-duration", "stale_after: {a: 1}\n", "line 1: stale_after: a mapping is not a duration (use e.g. 10s, 5m, 1h)"},
		{"nested-duration", "inner:\n  window: soon\n", `line 2: inner.window: "soon" is not a duration`},
		{"list-for-section", "inner: [1, 2]\n", "line 1: inner: a list is not a mapping of its settings"},
		{"string-for-section", "inner: x\n", `line 1: inner: "x" is not a mapping of its settings`},
		{"mapping-for-list", "rules: {a: 1}\n", "line 1: rules: a mapping is not a list"},
		{"list-for-string", "name: [a]\n", "line 1: name: a list is not a string"},
		{"negative-for-unsigned", "rules:\n  - codes: [-1]\n", "line 2: rules[0].codes: -1 is not a whole number, 0 or more"},
		{"list-for-map", "labels: [a]\n", "line 1: labels: a list is not a mapping of keys to values"},
		{"string-for-map", "labels: x\n", `line 1: labels: "x" is not a mapping of keys to values`},
		{"list-in-map", "labels: {a: [1]}\n", "line 1: labels.a: a list is not a string"},
		{"string-for-float", "ratio: half\n", `line 1: ratio: "half" is not a number`},
		{"string-for-bool", "on: maybe\n", `line 1: on: "maybe" is not true or false`},
		{"string-for-pointer", "limit: lots\n", `line 1: limit: "lots" is not a whole number, 0 or more`},
		{"list-for-document", "- a\n", "line 1: a list is not a mapping of its settings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c struct {
				conf  `yaml:",inline"`
				extra `yaml:",inline"`
			}
			err := Decode([]byte(tt.doc), &c)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			for _, goType := range []string{"cannot unmarshal", "!!", "into ", " int", "map[", "[]", "struct {", "yamlfile.", "time.", "uint32", "float64"} {
				if strings.Contains(err.Error(), goType) {
					t.Errorf("error %q names a Go type (%s)", err, goType)
				}
			}
		})
	}
}

func TestDecodes(t *testing.T) {
	var c conf
	c.Count = 7
	if err := Decode([]byte(""), &c); err != nil || c.Count != 7 {
		t.Fatalf("empty input: %v, count %d", err, c.Count)
	}
	if err := Decode([]byte("count: 2.0\n"), &c); err != nil || c.Count != 2 {
		t.Fatalf("a whole number written with a fraction: %v, count %d", err, c.Count)
	}
	if err := Decode([]byte("count: 3\ninner: {window: 5s}\n"), &c); err != nil || c.Count != 3 || c.Inner.Window.Duration != 5*time.Second {
		t.Fatalf("decode: %v %+v", err, c)
	}
}
