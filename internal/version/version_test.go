package version

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	if s := String(); !strings.HasPrefix(s, Version) {
		t.Fatalf("%q does not start with %q", s, Version)
	}
}
