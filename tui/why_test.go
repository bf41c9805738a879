package tui

import (
	"testing"

	"github.com/charmbracelet/x/ansi"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func TestWhyOf(t *testing.T) {
	xid := &fleetv1.Gpu{Index: 2, Faults: []*fleetv1.Fault{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79}}}
	thermal := &fleetv1.Gpu{Index: 1, Faults: []*fleetv1.Fault{{Kind: fleetv1.EventKind_EVENT_KIND_THERMAL}}}
	tests := []struct {
		name string
		node *fleetv1.Node
		want string
	}{
		{"healthy", &fleetv1.Node{}, ""},
		{"xid-named", &fleetv1.Node{HealthCause: "gpu2: GPU has fallen off the bus", Gpus: []*fleetv1.Gpu{thermal, xid}},
			"gpu2 XID 79: GPU has fallen off the bus"},
		{"not-an-xid", &fleetv1.Node{HealthCause: "gpu1: too hot", Gpus: []*fleetv1.Gpu{thermal, xid}}, "gpu1: too hot"},
		{"first-line-only", &fleetv1.Node{HealthCause: "driver said\nmore lines"}, "driver said"},
		{"control-characters", &fleetv1.Node{HealthCause: "bad\x1b[31m text"}, "bad?[31m text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rowOf(t, tt.node).why.cause; got != tt.want {
				t.Errorf("cause %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWhyText: as the cell narrows the remedy in words gives way to its
// short name, then the cause is cut at a word, and the remedy goes last.
func TestWhyText(t *testing.T) {
	bus := why{cause: "gpu2 XID 79: GPU has fallen off the bus", remedy: fleetv1.Remedy_REMEDY_REBOOT_NODE}
	bus.width = ansi.StringWidth(bus.cause)
	watch := why{cause: "gpu0: row remap pending", remedy: fleetv1.Remedy_REMEDY_NONE}
	watch.width = ansi.StringWidth(watch.cause)
	tests := []struct {
		name  string
		why   why
		width int
		want  string
	}{
		{"healthy", why{}, 30, "-"},
		{"remedy-in-words", bus, 80, "gpu2 XID 79: GPU has fallen off the bus → drain, reboot node"},
		{"short-remedy", bus, 50, "gpu2 XID 79: GPU has fallen off the bus → reboot"},
		{"cause-cut-at-a-word", bus, 30, "gpu2 XID 79: GPU has… → reboot"},
		{"xid-kept", bus, 22, "gpu2 XID 79… → reboot"},
		{"gpu-kept", bus, 15, "gpu2… → reboot"},
		{"cut-in-a-long-word", why{cause: "gpu0: uncorrectable", width: 19}, 16, "gpu0: uncorrect…"},
		{"remedy-alone", bus, 12, "→ reboot"},
		{"remedy-cut-last", bus, 5, "→ re…"},
		{"no-remedy", watch, 80, "gpu0: row remap pending"},
		{"no-remedy-cut", watch, 16, "gpu0: row remap…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cause, remedy := tt.why.text(tt.width)
			got := cause + remedy
			if got != tt.want {
				t.Errorf("text(%d) = %q, want %q", tt.width, got, tt.want)
			}
			if w := ansi.StringWidth(got); w > tt.width {
				t.Errorf("text(%d) takes %d cells", tt.width, w)
			}
		})
	}
}
