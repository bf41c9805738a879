package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	if s := String(); !strings.HasPrefix(s, Version) {
		t.Fatalf("%q does not start with %q", s, Version)
	}
}

func TestLongNamesEverything(t *testing.T) {
	old, oldDate := Version, Date
	t.Cleanup(func() { Version, Date = old, oldDate })
	Version, Date = "v1.2.3", "2026-11-29T16:00:00Z"
	s := Long("navarch-agent")
	for _, want := range []string{"navarch-agent v1.2.3 (commit ", "built 2026-11-29T16:00:00Z", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(s, want) {
			t.Errorf("%q lacks %q", s, want)
		}
	}
}
