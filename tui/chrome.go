package tui

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/navarch/navarch/internal/display"
)

// The chrome is what the root draws around the active view: the header
// (connection, revision, totals and banners), the status line and the
// footer of key help.

// overlay is drawn over the body, a dialog or the help, centred on the
// view, which stays drawn around it; it takes every key until it closes
// by returning nil from update.
type overlay interface {
	update(k tea.KeyPressMsg) (overlay, tea.Cmd)
	view(width int) string
}

// openOverlayMsg asks the root to show a dialog over the body.
type openOverlayMsg struct{ overlay overlay }

// prompt takes the status line, and every key, until it closes by
// returning nil from update.
type prompt interface {
	update(k tea.KeyPressMsg) (prompt, tea.Cmd)
	view(width int) string
}

// openPromptMsg asks the root to open a prompt in the status line.
type openPromptMsg struct{ prompt prompt }

// statusLineMsg puts a result in the status line; anything may send it.
type statusLineMsg struct {
	text string
	err  bool
}

// statusLine is the last result.
type statusLine struct {
	text string
	err  bool
	at   time.Time
}

// How long the status line shows a result before the view's hint returns;
// errors stay longer.
const (
	statusShown    = 10 * time.Second
	statusErrShown = 30 * time.Second
)

func (m *Model) setStatus(text string, err bool) {
	m.status = statusLine{text: text, err: err, at: m.d.now()}
}

// currentStatus is the status line's text while it is fresh.
func (m *Model) currentStatus() (statusLine, bool) {
	keep := statusShown
	if m.status.err {
		keep = statusErrShown
	}
	if m.status.text == "" || m.d.now().Sub(m.status.at) >= keep {
		return statusLine{}, false
	}
	return m.status, true
}

// render draws the whole screen: header, body and footer, fitted to the
// terminal, and an open overlay over them.
func (m *Model) render() {
	header := m.header()
	footer := m.footer()
	headerH := lipgloss.Height(header)
	bodyH := max(1, m.height-headerH-lipgloss.Height(footer))
	m.frame = header + "\n" + fit(m.body(bodyH), m.width, bodyH) + "\n" + footer
	if m.overlay != nil {
		m.frame = overlayOn(m.d.theme, m.frame, headerH, bodyH, m.overlay.view(m.width), m.width)
	}
}

func (m *Model) body(height int) string {
	t := m.d.theme
	if !m.d.fleet.loaded {
		msg := "connecting to " + m.d.server + " …"
		if m.conn.err != "" {
			msg = "waiting for " + m.d.server + ": " + m.conn.err
			if m.conn.detail != "" {
				msg += "\n\n" + m.conn.detail
			}
		}
		// Wrapped to the screen, so the whole error can be read.
		return place(m.width, height, t.Muted.Width(max(1, min(m.width-4, 100))).Render(msg))
	}
	v := m.views[m.active]
	v.SetSize(m.width, height)
	return v.View()
}

// overlayOn draws box over frame, lines of width cells, centred on the
// body (height lines from line top), or on the whole frame where the body
// is too short for it. The rows it covers keep the frame's cells on
// either side, so that a dialog or the help reads as over the view, not
// in its place; the body is dimmed under it to set the box apart. Lines
// are only cut and joined, never parsed into cells, so that a frame with
// a dialog open costs little more than one without.
func overlayOn(t *Theme, frame string, top, height int, box string, width int) string {
	lines := strings.Split(frame, "\n")
	for i := top; i < min(top+height, len(lines)); i++ {
		lines[i] = t.Muted.Render(ansi.Strip(lines[i]))
	}
	rows := strings.Split(box, "\n")
	boxW := min(width, lipgloss.Width(box))
	x := (width - boxW) / 2
	y := max(0, min(top+(height-len(rows))/2, len(lines)-len(rows)))
	for i, r := range rows[:min(len(rows), len(lines)-y)] {
		under := lines[y+i]
		left := ansi.Truncate(under, x, "")
		if w := lipgloss.Width(left); w < x {
			left += strings.Repeat(" ", x-w)
		}
		// A style left open at the cut would colour the box; the right
		// part keeps the escapes of the cells cut from it, so it starts
		// in the style it had.
		right := ansi.TruncateLeft(under, x+boxW, "")
		if w := ansi.StringWidth(under) - x - boxW; w > 0 && ansi.StringWidth(right) > w {
			// A wide character across the box's right edge comes whole;
			// a space stands for the half the box leaves.
			right = " " + ansi.TruncateLeft(under, x+boxW+1, "")
		}
		lines[y+i] = left + ansi.ResetStyle + ansi.Truncate(r, boxW, "") + ansi.ResetStyle + right
	}
	return strings.Join(lines, "\n")
}

func (m *Model) header() string {
	t := m.d.theme
	f := m.d.fleet
	left := t.Title.Render("NAVARCH") + " " + m.d.server + " "
	switch {
	case m.conn.connected && m.conn.resyncing:
		left += t.Warn.Render("◐ resyncing")
	case m.conn.connected:
		left += t.OK.Render("● connected")
	case m.conn.everUp:
		left += t.Bad.Render("○ disconnected")
	default:
		left += t.Muted.Render("○ connecting")
	}
	left += t.Muted.Render(fmt.Sprintf("  rev %d", f.revision))
	lines := []string{joinEnds(left, m.whoAndMode(lipgloss.Width(left)), m.width)}
	segs := strings.Split(f.totals(), " │ ")
	if cp := m.controlPlanes(); cp != "" {
		segs = append(segs, cp)
	}
	lines = append(lines, wrapSegments(segs, " │ ", m.width)...)
	if b := m.banner(); b != "" {
		lines = append(lines, b)
	}
	return strings.Join(lines, "\n")
}

// controlPlanes is the header's word on the control planes sharing the
// fleet through etcd: the leader, which the console reaches, how many
// standbys would take over, and the last failover: "leader cp-1:50051 · 2
// standbys · failover 5m ago". Empty for a lone control plane.
func (m *Model) controlPlanes() string {
	cps := m.d.controlPlanes
	if cps == nil {
		return ""
	}
	standbys := 0
	for _, c := range cps.GetMembers() {
		if !c.GetLeader() && c.GetAddress() != cps.GetLeader() {
			standbys++
		}
	}
	parts := []string{"leader " + cps.GetLeader(), "no standby"}
	if standbys > 0 {
		parts[1] = plural(standbys, "standby")
	}
	if f := cps.GetLastFailover(); f != nil {
		parts = append(parts, "failover "+ageSince(f.GetAt().AsTime(), m.d.now())+" ago")
	}
	return strings.Join(parts, " · ")
}

// whoAndMode is the header's right end: the client context the console
// was opened with, if any, who it calls as, once GetFleetStatus has said,
// and whether it is read-only: "prod · admin (admin)  [READ-ONLY]". What
// does not fit the room that the left part, of width used, leaves is cut
// from the end of the names; the role and the mode always show.
func (m *Model) whoAndMode(used int) string {
	var parts []string
	mode := ""
	if m.d.readOnly() {
		mode = m.d.theme.Bold.Render("[READ-ONLY]")
	}
	room := m.width - used - 1
	if mode != "" {
		room -= lipgloss.Width(mode) + 2
	}
	names, role := m.d.context, ""
	if c := m.d.caller; c != nil {
		role = " (" + display.Role(c.GetRole()) + ")"
		if names != "" {
			names += " · "
		}
		names += c.GetName()
	}
	room -= lipgloss.Width(role)
	if (names != "" || role != "") && room >= 4 {
		parts = append(parts, truncate(names, room)+role)
	}
	if mode != "" {
		parts = append(parts, mode)
	}
	return strings.Join(parts, "  ")
}

// banner warns about a lost connection or a tripped breaker.
func (m *Model) banner() string {
	t := m.d.theme
	var parts []string
	if !m.conn.connected && m.conn.everUp {
		// What the operator needs first comes first; the error, which may be
		// long, last.
		retry := "retrying now"
		if left := m.conn.retryAt.Sub(m.d.now()); left > 0 {
			retry = fmt.Sprintf("retry %d in %s", m.conn.attempt, left.Round(time.Second))
		}
		parts = append(parts, fmt.Sprintf("CONNECTION LOST %s ago · %s · showing revision %d · %s",
			ageSince(m.conn.downSince, m.d.now()), retry, m.d.fleet.revision, m.conn.err))
	}
	// Held-back nodes wait for an operator after the breaker closes too.
	held := m.d.fleet.summary.GetHeldBack()
	// H lists them where it is bound, in the fleet view; :held anywhere.
	list := "(press H)"
	if m.active != fleetViewName {
		list = "(:held lists them)"
	}
	if b := m.d.fleet.breaker; b.GetTripped() {
		p := "AUTO-CORDON SUSPENDED: breaker tripped " + ageSince(b.GetTrippedAt().AsTime(), m.d.now()) + " ago"
		if held > 0 {
			p += ", " + plural(held, "cordon") + " held back " + list
		}
		parts = append(parts, p)
	} else if held > 0 {
		parts = append(parts, plural(held, "cordon")+" held back by the auto-cordon breaker, waiting for you "+list)
	}
	if len(parts) == 0 {
		return ""
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = t.Banner.Render(truncate("⚠ "+p, m.width))
	}
	return strings.Join(out, "\n")
}

// footer is the status line (an open prompt, a fresh result, or the
// view's hint), then the active view's short help.
func (m *Model) footer() string {
	t := m.d.theme
	var line string
	st, fresh := m.currentStatus()
	switch {
	case m.prompt != nil:
		line = m.prompt.view(m.width)
	case fresh && st.err:
		line = t.StatusErr.Render(truncate(st.text, m.width))
	case fresh:
		line = t.Status.Render(truncate(st.text, m.width))
	default:
		line = t.Muted.Render(truncate(m.views[m.active].Hint(), m.width))
	}
	return line + "\n" + m.shortHelp()
}

// shortHelp is the one-line key help of the active view. It keeps as many
// of the view's keys as fit and always ends with help and quit.
func (m *Model) shortHelp() string {
	t := m.d.theme
	g := &m.d.keys
	render := func(b key.Binding) string {
		// The footer has room for the first words only: "filter", not
		// "filter (text or label=value)"; the help overlay says the rest.
		desc, _, _ := strings.Cut(b.Help().Desc, " (")
		return t.Key.Render(b.Help().Key) + " " + t.Muted.Render(desc)
	}
	tail := render(g.Help) + "  " + render(g.Quit)
	room := m.width - lipgloss.Width(tail)
	var parts []string
	width := 0
	for _, b := range m.views[m.active].ShortHelp() {
		if !b.Enabled() || b.Help() == g.Help.Help() || b.Help() == g.Quit.Help() {
			continue
		}
		p := render(b)
		w := lipgloss.Width(p) + 2
		if width+w > room {
			break
		}
		width += w
		parts = append(parts, p)
	}
	return truncate(strings.Join(append(parts, tail), "  "), m.width)
}

func filterNote(f string) string {
	if f == "" {
		return ""
	}
	return " · filter " + f
}
