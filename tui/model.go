// Package tui is navarch's full-screen fleet console: one root model,
// composed of the fleet, node and events views and the dialogs, streaming
// WatchFleet from the control plane and acting through
// ControlPlaneService. It never polls.
package tui

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Options configures New.
type Options struct {
	// Client reaches the control plane. Required.
	Client controlplanev1.ControlPlaneServiceClient
	// Server is the control plane's address, shown in the header.
	Server string
	// ReadOnly hides and refuses every action.
	ReadOnly bool
	// Theme fixes the styles; nil follows the terminal (light or dark
	// background, NO_COLOR).
	Theme *Theme
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// NoStream leaves the stream closed; tests feed stream messages
	// themselves.
	NoStream bool
}

// deps is what every component shares, passed down rather than global.
type deps struct {
	client   controlplanev1.ControlPlaneServiceClient
	server   string
	keys     KeyMap
	theme    *Theme
	fixed    bool // the theme was given, not detected
	readOnly bool
	now      func() time.Time
}

type viewID int

const (
	viewFleet viewID = iota
	viewNode
	viewEvents
)

// conn is the stream's state, shown in the header and the banner.
type conn struct {
	connected bool
	everUp    bool
	err       string
	retryAt   time.Time // when the next attempt starts
	attempt   int
	downSince time.Time
	resyncing bool
}

// statusLine is the last action's result.
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

// Model is the console's root model.
type Model struct {
	d      *deps
	width  int
	height int
	fleet  *fleet
	view   viewID
	back   viewID // where esc leaves the node view for
	conn   conn
	status statusLine

	table   *fleetTable
	node    *nodeView
	events  *eventsView
	dialog  dialog
	help    bool
	filter  *filterInput
	palette *palette

	providers []string
	watcher   *watcher
	cancel    context.CancelFunc
	frame     string
	quitting  bool
}

// New builds the console.
func New(o Options) *Model {
	d := &deps{client: o.Client, server: o.Server, keys: DefaultKeyMap(), theme: o.Theme, readOnly: o.ReadOnly, now: o.Now}
	if d.now == nil {
		d.now = time.Now
	}
	if d.theme == nil {
		// NO_COLOR, when set to anything, turns colour off (no-color.org).
		d.theme = NewTheme(true, os.Getenv("NO_COLOR") == "")
	} else {
		d.fixed = true
	}
	d.keys.SetReadOnly(o.ReadOnly)
	m := &Model{d: d, fleet: newFleet(), width: 80, height: 24}
	m.table = newFleetTable(d, m.fleet)
	m.node = newNodeView(d)
	m.events = newEventsView(d, m.fleet)
	m.filter = newFilterInput(d)
	m.palette = newPalette(d)
	if !o.NoStream {
		m.watcher = newWatcher(o.Client)
	}
	m.render()
	return m
}

// tickMsg refreshes ages and applies deferred sorting once a second.
type tickMsg time.Time

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Init starts the stream, the clock and the background-colour query.
func (m *Model) Init() tea.Cmd {
	cmds := []tea.Cmd{tick(), m.loadProviders()}
	if !m.d.fixed {
		cmds = append(cmds, tea.RequestBackgroundColor)
	}
	if m.watcher != nil {
		ctx, cancel := context.WithCancel(context.Background())
		m.cancel = cancel
		go m.watcher.run(ctx)
		cmds = append(cmds, m.watcher.listen())
	}
	return tea.Batch(cmds...)
}

// Close stops the stream.
func (m *Model) Close() {
	if m.cancel != nil {
		m.cancel()
	}
}

// Update handles one message and renders the frame once, here, so that
// View only hands it out.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	cmd := m.handle(msg)
	m.render()
	if m.quitting {
		m.Close()
		return m, tea.Quit
	}
	return m, cmd
}

func (m *Model) handle(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		return nil
	case tea.BackgroundColorMsg:
		if !m.d.fixed {
			m.d.theme = NewTheme(msg.IsDark(), m.d.theme.Color)
		}
		return nil
	case tickMsg:
		m.fleet.resort()
		return tick()
	case streamMsg:
		return tea.Batch(m.onStream(msg), m.listen())
	case connectedMsg:
		m.onConnected(msg)
		return m.listen()
	case disconnectedMsg:
		m.onDisconnected(msg)
		return m.listen()
	case providersMsg:
		m.providers = msg.names
		return nil
	case actionDoneMsg:
		m.setStatus(msg.text, msg.err)
		return nil
	case nodeDetailMsg, nodeRefreshMsg:
		return m.node.update(msg)
	case tea.KeyPressMsg:
		return m.onKey(msg)
	}
	return nil
}

func (m *Model) listen() tea.Cmd {
	if m.watcher == nil {
		return nil
	}
	return m.watcher.listen()
}

// Apply feeds stream messages straight in, as the watcher would; tests
// and benchmarks use it.
func (m *Model) Apply(msgs ...*controlplanev1.WatchFleetResponse) {
	m.onStream(streamMsg{msgs: msgs})
	m.render()
}

func (m *Model) onStream(sm streamMsg) tea.Cmd {
	var c change
	for _, msg := range sm.msgs {
		m.fleet.apply(msg, &c)
	}
	if c.resync {
		m.conn.resyncing = true
	}
	if c.snapshot {
		m.conn.resyncing = false
	}
	// Small fleets show structural changes at once; large ones wait for
	// the once-a-second sort so a busy fleet stays cheap.
	if c.structure && len(m.fleet.rows) <= 10000 {
		m.fleet.resort()
	}
	if !m.fleet.loaded {
		return nil
	}
	m.table.keepCursor()
	m.events.clamp()
	return m.node.onChange(&c, m.fleet)
}

func (m *Model) onConnected(msg connectedMsg) {
	m.conn = conn{connected: true, everUp: true}
	// A snapshot cut short by the old stream is not finished by the new one.
	m.fleet.partial = nil
	if msg.resumed {
		m.setStatus("reconnected; resumed from revision "+fmt.Sprint(m.fleet.revision), false)
	}
}

func (m *Model) onDisconnected(msg disconnectedMsg) {
	if m.conn.connected || m.conn.downSince.IsZero() {
		m.conn.downSince = m.d.now()
	}
	m.conn.connected = false
	m.conn.err, m.conn.retryAt, m.conn.attempt = msg.err, m.d.now().Add(msg.retry), msg.attempt
}

// onKey routes a key: an open dialog or input takes it first, then the
// current view, then the global keys.
func (m *Model) onKey(k tea.KeyPressMsg) tea.Cmd {
	keys := &m.d.keys
	if key.Matches(k, keys.Interrupt) {
		m.quitting = true
		return nil
	}
	switch {
	case m.dialog != nil:
		d, cmd := m.dialog.update(k)
		m.dialog = d
		return cmd
	case m.filter.active:
		m.filter.update(k, m)
		return nil
	case m.palette.active:
		return m.palette.update(k, m)
	case m.help:
		if key.Matches(k, keys.Help, keys.Back, keys.Quit) {
			m.help = false
		}
		return nil
	}
	switch {
	case key.Matches(k, keys.Quit):
		m.quitting = true
		return nil
	case key.Matches(k, keys.Help):
		m.help = true
		return nil
	case key.Matches(k, keys.Command):
		m.palette.open()
		return nil
	case key.Matches(k, keys.Filter) && m.view != viewNode:
		current := m.fleet.filter.text
		if m.view == viewEvents {
			current = m.events.filter.text
		}
		m.filter.open(m.view, current)
		return nil
	case key.Matches(k, keys.Nodes):
		m.show(viewFleet)
		return nil
	case key.Matches(k, keys.Events):
		m.show(viewEvents)
		return nil
	}
	if m.isAction(k) && m.d.readOnly {
		m.setStatus("read-only: actions are disabled", true)
		return nil
	}
	switch m.view {
	case viewNode:
		return m.nodeKeys(k)
	case viewEvents:
		return m.eventsKeys(k)
	}
	return m.fleetKeys(k)
}

// isAction reports whether k is an action key, whether or not read-only
// mode disabled it.
func (m *Model) isAction(k tea.KeyPressMsg) bool {
	all := DefaultKeyMap()
	for _, b := range all.actions() {
		if key.Matches(k, *b) {
			return true
		}
	}
	return false
}

func (m *Model) fleetKeys(k tea.KeyPressMsg) tea.Cmd {
	keys := &m.d.keys
	switch {
	case m.table.move(k):
	case key.Matches(k, keys.Back):
		if len(m.table.marks) > 0 {
			m.table.marks = map[string]bool{}
		} else if m.fleet.filter.text != "" {
			m.fleet.setFilter("")
			m.filter.input.SetValue("")
			m.table.keepCursor()
		}
	case key.Matches(k, keys.Open):
		if r := m.table.current(); r != nil {
			return m.openNode(r.id)
		}
	case key.Matches(k, keys.Sort):
		m.fleet.setSort((m.fleet.sortBy+1)%numColumns, m.fleet.desc)
		m.table.keepCursor()
	case key.Matches(k, keys.SortReverse):
		m.fleet.setSort(m.fleet.sortBy, !m.fleet.desc)
		m.table.keepCursor()
	case key.Matches(k, keys.Mark):
		m.table.toggleMark()
	case key.Matches(k, keys.MarkAll):
		m.table.markAll()
	case key.Matches(k, keys.Provision):
		m.dialog = newProvisionDialog(m.d, m.providers)
	default:
		return m.nodeAction(k, m.table.targets())
	}
	return nil
}

func (m *Model) nodeKeys(k tea.KeyPressMsg) tea.Cmd {
	keys := &m.d.keys
	switch {
	case key.Matches(k, keys.Back):
		m.show(m.back)
		return nil
	case m.node.scroll(k):
		return nil
	case key.Matches(k, keys.Provision):
		m.dialog = newProvisionDialog(m.d, m.providers)
		return nil
	}
	return m.nodeAction(k, []string{m.node.id})
}

func (m *Model) eventsKeys(k tea.KeyPressMsg) tea.Cmd {
	keys := &m.d.keys
	switch {
	case key.Matches(k, keys.Back):
		if m.events.filter.text != "" {
			m.events.setFilter("")
			m.filter.input.SetValue("")
		} else {
			m.show(viewFleet)
		}
	case m.events.move(k):
	case key.Matches(k, keys.Open):
		if e := m.events.current(); e != nil {
			return m.openNode(e.GetNodeId())
		}
	case key.Matches(k, keys.Provision):
		m.dialog = newProvisionDialog(m.d, m.providers)
	}
	return nil
}

// show switches to the fleet or events view; leaving a node stops its
// updates.
func (m *Model) show(v viewID) {
	if m.view == viewNode && v != viewNode {
		m.node.close()
	}
	m.view = v
}

func (m *Model) openNode(id string) tea.Cmd {
	if m.view != viewNode {
		m.back = m.view
	}
	m.view = viewNode
	return m.node.open(id, m.fleet)
}

// nodeAction starts cordon, uncordon, drain, terminate or diagnostics on
// the targets: drains, terminations and every bulk action ask first.
func (m *Model) nodeAction(k tea.KeyPressMsg, targets []string) tea.Cmd {
	keys := &m.d.keys
	if len(targets) == 0 {
		if key.Matches(k, keys.Cordon, keys.Uncordon, keys.Drain, keys.Terminate, keys.Diagnose) {
			m.setStatus("no node selected", true)
		}
		return nil
	}
	what := targets[0]
	if len(targets) > 1 {
		// Name them: a bulk action must never surprise.
		shown := targets[:min(len(targets), 5)]
		what = fmt.Sprintf("%d marked nodes (%s", len(targets), strings.Join(shown, ", "))
		if more := len(targets) - len(shown); more > 0 {
			what += fmt.Sprintf(" and %d more", more)
		}
		what += ")"
	}
	bulk := len(targets) > 1
	switch {
	case key.Matches(k, keys.Cordon):
		return m.confirmIf(bulk, "Cordon "+what+"?", cordonAction(m.d, targets))
	case key.Matches(k, keys.Uncordon):
		return m.confirmIf(bulk, "Uncordon "+what+"?", uncordonAction(m.d, targets))
	case key.Matches(k, keys.Diagnose):
		return m.confirmIf(bulk, "Run diagnostics on "+what+"?", diagnoseAction(m.d, targets))
	case key.Matches(k, keys.Drain):
		m.dialog = newDrainDialog(m.d, targets, what)
	case key.Matches(k, keys.Terminate):
		how := "It is drained first (jobs get TERM, then KILL, after 10m), then stopped."
		if bulk {
			how = "Each is drained first (jobs get TERM, then KILL, after 10m), then stopped."
		}
		m.dialog = newConfirm(m.d, fmt.Sprintf("Terminate %s? %s", what, how), terminateAction(m.d, targets))
	}
	return nil
}

func (m *Model) confirmIf(ask bool, question string, act tea.Cmd) tea.Cmd {
	if ask {
		m.dialog = newConfirm(m.d, question, act)
		return nil
	}
	return act
}

// View hands out the frame Update rendered.
func (m *Model) View() tea.View {
	v := tea.NewView(m.frame)
	v.AltScreen = true
	v.WindowTitle = "navarch"
	return v
}

// Frame is the current screen as text.
func (m *Model) Frame() string { return m.frame }

// render draws the whole screen: header, body (or an overlay in its
// place) and footer, fitted to the terminal.
func (m *Model) render() {
	t := m.d.theme
	header := m.header()
	footer := m.footer()
	bodyH := max(1, m.height-lipgloss.Height(header)-lipgloss.Height(footer))
	var body string
	switch {
	case m.help:
		body = m.helpView(bodyH)
	case m.dialog != nil:
		body = place(m.width, bodyH, m.dialog.view(m.width))
	case !m.fleet.loaded:
		msg := "connecting to " + m.d.server + " …"
		if m.conn.err != "" {
			msg = "waiting for " + m.d.server + ": " + m.conn.err
		}
		// Wrapped to the screen, so the whole error can be read.
		body = place(m.width, bodyH, t.Muted.Width(max(1, min(m.width-4, 100))).Render(msg))
	default:
		switch m.view {
		case viewNode:
			body = m.node.view(m.width, bodyH, m.fleet)
		case viewEvents:
			body = m.events.view(m.width, bodyH)
		default:
			body = m.table.view(m.width, bodyH)
		}
	}
	body = fit(body, m.width, bodyH)
	m.frame = header + "\n" + body + "\n" + footer
}

func (m *Model) header() string {
	t := m.d.theme
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
	left += t.Muted.Render(fmt.Sprintf("  rev %d", m.fleet.revision))
	right := ""
	if m.d.readOnly {
		right = t.Bold.Render("[READ-ONLY]")
	}
	lines := []string{joinEnds(left, right, m.width)}
	lines = append(lines, wrapSegments(strings.Split(m.fleet.totals(), " │ "), " │ ", m.width)...)
	if b := m.banner(); b != "" {
		lines = append(lines, b)
	}
	return strings.Join(lines, "\n")
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
			ageSince(m.conn.downSince, m.d.now()), retry, m.fleet.revision, m.conn.err))
	}
	if b := m.fleet.breaker; b.GetTripped() {
		parts = append(parts, fmt.Sprintf("AUTO-CORDON SUSPENDED: breaker tripped %s ago, %d cordons held back",
			ageSince(b.GetTrippedAt().AsTime(), m.d.now()), b.GetSuppressedCordons()))
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

func (m *Model) footer() string {
	t := m.d.theme
	var line string
	switch {
	case m.filter.active:
		m.filter.input.SetWidth(max(1, m.width-2))
		line = m.filter.view()
	case m.palette.active:
		m.palette.input.SetWidth(max(1, m.width-2))
		line = m.palette.view()
	default:
		st, fresh := m.currentStatus()
		switch {
		case fresh && st.err:
			line = t.StatusErr.Render(truncate(st.text, m.width))
		case fresh:
			line = t.Status.Render(truncate(st.text, m.width))
		default:
			line = t.Muted.Render(truncate(m.viewHint(), m.width))
		}
	}
	return line + "\n" + m.shortHelp()
}

func (m *Model) viewHint() string {
	switch m.view {
	case viewNode:
		return "node " + m.node.id
	case viewEvents:
		return fmt.Sprintf("%d events (newest first)%s", len(m.events.shown()), filterNote(m.events.filter.text))
	}
	n := fmt.Sprintf("%d of %d nodes", len(m.fleet.shown), len(m.fleet.rows))
	if k := len(m.table.marks); k > 0 {
		n += fmt.Sprintf(", %d marked", k)
	}
	return n + " · sorted by " + strings.ToLower(columnNames[m.fleet.sortBy]) + filterNote(m.fleet.filter.text)
}

func filterNote(f string) string {
	if f == "" {
		return ""
	}
	return " · filter " + f
}

// shortHelp is the one-line key help of the current view. It keeps as many
// of the view's keys as fit and always ends with help and quit.
func (m *Model) shortHelp() string {
	t := m.d.theme
	keys := &m.d.keys
	bindings := keys.ShortHelp()
	switch m.view {
	case viewNode:
		bindings = keys.nodeHelp()
	case viewEvents:
		bindings = keys.eventsHelp()
	}
	render := func(b key.Binding) string {
		// The footer has room for the first words only: "filter", not
		// "filter (text or label=value)"; the help overlay says the rest.
		desc, _, _ := strings.Cut(b.Help().Desc, " (")
		return t.Key.Render(b.Help().Key) + " " + t.Muted.Render(desc)
	}
	tail := render(keys.Help) + "  " + render(keys.Quit)
	room := m.width - lipgloss.Width(tail)
	var parts []string
	width := 0
	for _, b := range bindings {
		if !b.Enabled() || b.Help() == keys.Help.Help() || b.Help() == keys.Quit.Help() {
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

// helpView is the help overlay, generated from the keymap. It uses as many
// columns as the terminal's width allows.
func (m *Model) helpView(height int) string {
	t := m.d.theme
	var entries []key.Binding
	for _, group := range m.d.keys.FullHelp() {
		for _, b := range group {
			if b.Enabled() {
				entries = append(entries, b)
			}
		}
	}
	title := t.Title.Render("Keys")
	if m.d.readOnly {
		title += t.Muted.Render("  (read-only: actions hidden)")
	}
	commands := "commands :nodes :events :provision :help :q · ? or esc closes this help"
	if m.d.readOnly {
		commands = "commands :nodes :events :help :q · ? or esc closes this help"
	}
	notes := []string{
		"GPU glyphs: H healthy · D degraded · U unhealthy · ? unknown · X lost",
		commands,
	}
	var table string
	for ncol := min(3, len(entries)); ncol >= 1; ncol-- {
		table = helpColumns(t, entries, ncol)
		// The box adds a border and padding: 4 cells.
		if lipgloss.Width(table)+4 <= m.width {
			break
		}
	}
	body := title + "\n\n" + table + "\n"
	for _, n := range notes {
		body += "\n" + t.Muted.Render(truncate(n, max(10, m.width-4)))
	}
	return place(m.width, height, t.Box.Render(body))
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
