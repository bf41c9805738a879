package tui

import (
	"strings"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
)

// showHelpMsg asks the root to open the help of the active view.
type showHelpMsg struct{}

// helpOverlay is the help over the body, generated from a view's full
// help. It uses as many columns as the terminal's width allows.
type helpOverlay struct {
	d    *deps
	keys help.KeyMap
}

func newHelpOverlay(d *deps, keys help.KeyMap) *helpOverlay {
	return &helpOverlay{d: d, keys: keys}
}

func (h *helpOverlay) update(k tea.KeyPressMsg) (overlay, tea.Cmd) {
	if key.Matches(k, h.d.keys.Help, h.d.keys.Quit, h.d.modal.Dismiss) {
		return nil, nil
	}
	return h, nil
}

func (h *helpOverlay) view(width int) string {
	t := h.d.theme
	var entries []key.Binding
	for _, group := range h.keys.FullHelp() {
		for _, b := range group {
			if b.Enabled() {
				entries = append(entries, b)
			}
		}
	}
	title := t.Title.Render("Keys")
	if h.d.readOnly() {
		title += t.Muted.Render("  (read-only: actions hidden)")
	}
	_, remedies := h.keys.(remedier)
	notes := []string{gpuLegend}
	if n, ok := h.keys.(noter); ok {
		notes = n.notes()
	}
	// A command and the ids it takes stay on one line: "commands" and
	// each ":cordon ID…" are the words wrapped.
	commands := []string{"commands"}
	for _, c := range commandNames(h.d.readOnly(), remedies) {
		commands = append(commands, ":"+c)
	}
	var table string
	for ncol := min(3, len(entries)); ncol >= 1; ncol-- {
		table = helpColumns(t, entries, ncol)
		// The box adds a border and padding: 4 cells.
		if lipgloss.Width(table)+4 <= width {
			break
		}
	}
	body := title + "\n\n" + table + "\n"
	for _, n := range notes {
		body += "\n" + t.Muted.Render(wrap(n, max(10, width-4)))
	}
	body += "\n" + t.Muted.Render(strings.Join(wrapSegments(commands, " ", max(10, width-4)), "\n"))
	if h.d.note != "" {
		body += "\n" + t.Muted.Render(wrap(h.d.note, max(10, width-4)))
	}
	body += "\n" + t.Muted.Render("? or esc closes help")
	return t.Box.Render(body)
}

// gpuLegend says what the GPU glyphs mean, for help.
const gpuLegend = "GPU glyphs: H healthy · D degraded · U unhealthy · ? unknown · X lost"

// noter is a view whose help explains its own columns and glyphs, in place
// of the GPU glyphs' legend that the node views' help gives.
type noter interface {
	notes() []string
}

// helpColumns lays the bindings out in ncol columns, in order, top to
// bottom.
func helpColumns(t *Theme, entries []key.Binding, ncol int) string {
	perCol := (len(entries) + ncol - 1) / ncol
	var cols []string
	for start := 0; start < len(entries); start += perCol {
		var lines []string
		for _, b := range entries[start:min(start+perCol, len(entries))] {
			lines = append(lines, t.Key.Render(padRight(b.Help().Key, 7))+" "+t.Desc.Render(b.Help().Desc))
		}
		cols = append(cols, strings.Join(lines, "\n"))
	}
	return lipgloss.JoinHorizontal(lipgloss.Top, joinWithGap(cols, "   ")...)
}

func joinWithGap(cols []string, gap string) []string {
	out := make([]string, 0, 2*len(cols))
	for i, c := range cols {
		if i > 0 {
			out = append(out, gap)
		}
		out = append(out, c)
	}
	return out
}
