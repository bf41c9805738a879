package auth

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestSecurityDocListsEveryRPC keeps docs/security.md's table of what each
// RPC needs the same as Required.
func TestSecurityDocListsEveryRPC(t *testing.T) {
	b, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(/[^`]+)` \\| (\\w+) \\|$")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = m[2]
	}
	var want []string
	for method, need := range Required {
		want = append(want, "| `"+method+"` | "+need.String()+" |")
		if documented[method] != need.String() {
			t.Errorf("docs/security.md says %s needs %q; the server asks %q", method, documented[method], need)
		}
	}
	if len(documented) != len(Required) {
		sort.Strings(want)
		t.Errorf("docs/security.md lists %d RPCs, the server %d; the table should read:\n%s", len(documented), len(Required), strings.Join(want, "\n"))
	}
}
