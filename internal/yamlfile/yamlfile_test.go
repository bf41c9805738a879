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

func TestDecodes(t *testing.T) {
	var c conf
	c.Count = 7
	if err := Decode([]byte(""), &c); err != nil || c.Count != 7 {
		t.Fatalf("empty input: %v, count %d", err, c.Count)
	}
	if err := Decode([]byte("count: 3\ninner: {window: 5s}\n"), &c); err != nil || c.Count != 3 || c.Inner.Window.Duration != 5*time.Second {
		t.Fatalf("decode: %v %+v", err, c)
	}
}
