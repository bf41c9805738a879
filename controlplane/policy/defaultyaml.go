package policy

import (
	"bytes"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// conditionsHeader opens the conditions section of the printed default
// policy.
// conditionsNote starts default.yaml's closing note.
const conditionsNote = "# Signals other than XIDs: their default rules"

const conditionsHeader = `
# Signals other than XIDs. The agent pushes an event when a condition starts;
# level conditions (marked *) are also re-checked on every health snapshot and
# clear on their own when the snapshot no longer shows them.
conditions:
`

// DefaultYAML returns the default policy as one file, default.yaml followed
// by the conditions' default rules, for documentation and for operators who
// want a file to start from.
func DefaultYAML() []byte {
	var b bytes.Buffer
	// The file's closing note tells its readers where the conditions are;
	// the printed policy has them, under their own header.
	body, _, _ := bytes.Cut(defaultYAML, []byte(conditionsNote))
	b.Write(bytes.TrimRight(body, "\n"))
	b.WriteString("\n")
	b.WriteString(conditionsHeader)
	for _, c := range conditions {
		mark := ""
		if c.level != nil {
			mark = "* "
		}
		fmt.Fprintf(&b, "  %-25s # %s%s\n", c.name+":", mark, c.about)
		fmt.Fprintf(&b, "    meaning: %s\n", yamlScalar(c.rule.Meaning))
		fmt.Fprintf(&b, "    health: %s\n", healthName(c.rule.Health))
		fmt.Fprintf(&b, "    remedy: %s\n", remedyName(c.rule.Remedy))
		if r := c.rule.Repeat; r != nil {
			fields := []string{fmt.Sprintf("count: %d", r.Count), "window: " + display.Duration(r.Window)}
			if r.Health != fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED {
				fields = append(fields, "health: "+healthName(r.Health))
			}
			if r.Remedy != fleetv1.Remedy_REMEDY_UNSPECIFIED {
				fields = append(fields, "remedy: "+remedyName(r.Remedy))
			}
			fmt.Fprintf(&b, "    repeat: {%s}\n", strings.Join(fields, ", "))
		}
	}
	return b.Bytes()
}

// yamlScalar writes s as a YAML value, quoted only where YAML needs it.
func yamlScalar(s string) string {
	// A string always marshals.
	out, _ := yaml.Marshal(s)
	return strings.TrimSuffix(string(out), "\n")
}

func healthName(h fleetv1.HealthStatus) string {
	return strings.TrimPrefix(h.String(), "HEALTH_STATUS_")
}

func remedyName(r fleetv1.Remedy) string { return strings.TrimPrefix(r.String(), "REMEDY_") }
