package controlplane_test

import (
	"strings"
	"testing"

	"github.com/navarch/navarch/controlplane"
)

// TestConfigValueErrorsSayWhatTheKeyTakes: a value of the wrong kind is
// named by its key path and what the key takes, never by a Go type.
func TestConfigValueErrorsSayWhatTheKeyTakes(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"bad-provider-duration", "aws_provider:\n  poll_interval: soon", `line 2: aws_provider.poll_interval: "soon" is not a duration (use e.g. 10s, 5m, 1h)`},
		{"list-for-duration", "stale_after: [1m]", "line 1: stale_after: a list is not a duration"},
		{"string-for-number", "events_per_node: many", `line 1: events_per_node: "many" is not a whole number`},
		{"negative-for-count", "pools:\n  - name: a\n    max: -2", "line 3: pools[0].max: -2 is not a whole number, 0 or more"},
		{"list-for-map", "pools:\n  - name: a\n    labels: [team]", "line 3: pools[0].labels: a list is not a mapping of keys to values"},
		{"map-for-list", "webhooks: {url: x}", "line 1: webhooks: a mapping is not a list"},
		{"list-for-section", "auto_cordon: [true]", "line 1: auto_cordon: a list is not a mapping of its settings"},
		{"string-for-bool", "insecure: sometimes", `line 1: insecure: "sometimes" is not true or false`},
		{"string-for-fraction", "auto_cordon:\n  max_fraction: half", `line 2: auto_cordon.max_fraction: "half" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := controlplane.LoadConfigFile(writeConfig(t, tt.body))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to say %q", err, tt.want)
			}
			_, said, _ := strings.Cut(err.Error(), "navarch.yaml: ")
			for _, goType := range []string{"cannot unmarshal", "!!", "into ", "map[", "[]", "struct {", "Duration", "controlplane.", "yamlfile."} {
				if strings.Contains(said, goType) {
					t.Errorf("error %q names a Go type (%s)", err, goType)
				}
			}
		})
	}
}
