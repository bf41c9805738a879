// Package tui is navarch's full-screen fleet console: a root model that
// draws the chrome and forwards to the view on screen (the fleet, the
// events, the pools, a node or a pool, each a component registered in
// views.go), streaming WatchFleet
// from the control plane and acting through ControlPlaneService. It never
// polls, and it keeps no knowledge of its own about the control plane's
// limits: GetFleetStatus tells it.
package tui

import (
	"context"
	"fmt"
	"os"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Options configures New.
type Options struct {
	// Client reaches the control plane. Required.
	Client controlplanev1.ControlPlaneServiceClient
	// Server is the control plane's address, shown in the header.
	Server string
	// Context is the client context the console was opened with, shown in
	// the header before who it calls as; empty for none.
	Context string
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
	// Note is a line the help view keeps in sight, such as how the demo is
	// reached from another terminal; empty for none.
	Note string
}

// deps is what every component shares, passed down rather than global.
type deps struct {
	client controlplanev1.ControlPlaneServiceClient
	server string
	keys   globalKeys
	modal  modalKeys
	theme  *Theme
	fixed  bool // the theme was given, not detected
	// context is the client context the header shows; "" for none.
	context string
	// note is Options.Note, for the help view.
	note string
	// readOnlyFlag is --read-only; a viewer's token makes the console
	// read-only too, once GetFleetStatus has said whose it is.
	readOnlyFlag bool
	now          func() time.Time
	// fleet is the console's copy of the fleet, kept by the stream.
	fleet *fleet
	// providers and limits are what GetFleetStatus last said; until it
	// has answered, limits is nil and the control plane judges every
	// value the operator gives, and the operator names the provider.
	providers []string
	limits    *controlplanev1.OperatorLimits
	// caller is who GetFleetStatus says the console calls as; nil until
	// it has answered.
	caller *controlplanev1.Caller
	// controlPlanes is the election among the control planes on etcd as
	// GetFleetStatus last said it, shown in the header; nil for a lone
	// control plane, and until it has answered.
	controlPlanes *controlplanev1.ControlPlanes
	// inbox holds what components sent during this Update.
	inbox []tea.Msg
}

// send hands msg to the root model, which handles it before the Update in
// progress returns, as if the program had delivered it: components say
// what they want without reaching into the root, and the frame drawn
// after a key shows its whole effect.
func (d *deps) send(msg tea.Msg) { d.inbox = append(d.inbox, msg) }

// readOnly reports whether the console hides and refuses every action:
// --read-only asked it to, or the token's role allows none. The control
// plane refuses them anyway; this spares the operator the attempt.
func (d *deps) readOnly() bool {
	return d.readOnlyFlag || d.caller.GetRole() == controlplanev1.Role_ROLE_VIEWER
}

// refuse says on the status line why a read-only console does not act.
func (d *deps) refuse() {
	text := "read-only: actions are disabled"
	if d.caller.GetRole() == controlplanev1.Role_ROLE_VIEWER {
		text = "read-only: this token's role is viewer; actions need an operator token"
	}
	d.send(statusLineMsg{text: text, err: true})
}

// conn is the stream's state, shown in the header and the banner.
type conn struct {
	connected bool
	everUp    bool
	err       string    // what happened, in words
	detail    string    // the control plane's or the transport's words
	retryAt   time.Time // when the next attempt starts
	attempt   int
	downSince time.Time
	resyncing bool
}

// Model is the console's root model.
type Model struct {
	d      *deps
	width  int
	height int
	conn   conn
	status statusLine

	views  map[string]view
	order  []string // view names, as registered
	listed []string // the names the number keys show
	active string
	back   string // the view shown before the active one

	overlay overlay // a dialog or the help, over the body
	prompt  prompt  // the filter or the command prompt, in the status line
	palette *palette

	asks     statusAsks // of GetFleetStatus
	watcher  *watcher
	cancel   context.CancelFunc
	frame    string
	quitting bool
}

// New builds the console.
func New(o Options) *Model {
	listed := listedViews()
	d := &deps{client: o.Client, server: o.Server, context: o.Context, note: o.Note, keys: newGlobalKeys(listed), modal: newModalKeys(),
		theme: o.Theme, readOnlyFlag: o.ReadOnly, now: o.Now, fleet: newFleet()}
	if d.now == nil {
		d.now = time.Now
	}
	if d.theme == nil {
		// NO_COLOR, when set to anything, turns colour off (no-color.org).
		d.theme = NewTheme(true, os.Getenv("NO_COLOR") == "")
	} else {
		d.fixed = true
	}
	m := &Model{d: d, width: 80, height: 24, views: map[string]view{}, palette: newPalette(d, listed)}
	for _, s := range viewSpecs {
		m.views[s.name] = s.newView(d)
		m.order = append(m.order, s.name)
	}
	for _, s := range listed {
		m.listed = append(m.listed, s.name)
	}
	m.active = viewSpecs[0].name
	m.back = m.active
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

// quitMsg asks the root to quit.
type quitMsg struct{}

// Init starts the stream, the clock, the background-colour query and the
// first ask of the control plane's providers and limits, which need not
// wait for the stream.
func (m *Model) Init() tea.Cmd {
	cmds := []tea.Cmd{tick(), m.askFleetStatus()}
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

// Update handles one message, then what the components sent while it was
// handled, and renders the frame once, here, so that View only hands it
// out.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	cmds := []tea.Cmd{m.handle(msg)}
	for len(m.d.inbox) > 0 {
		next := m.d.inbox[0]
		m.d.inbox = m.d.inbox[1:]
		cmds = append(cmds, m.handle(next))
	}
	m.render()
	if m.quitting {
		m.Close()
		return m, tea.Quit
	}
	return m, tea.Batch(cmds...)
}

// handle gives each message its handler; what no handler here takes goes
// to the active view.
func (m *Model) handle(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tea.BackgroundColorMsg:
		if !m.d.fixed {
			m.d.theme = NewTheme(msg.IsDark(), m.d.theme.Color)
		}
	case tickMsg:
		m.d.fleet.resort()
		return tick()
	case streamMsg:
		return tea.Batch(m.onStream(msg), m.listen())
	case connectedMsg:
		return tea.Batch(m.onConnected(msg), m.listen())
	case disconnectedMsg:
		m.onDisconnected(msg)
		return m.listen()
	case fleetStatusMsg:
		return m.onFleetStatus(msg)
	case fleetStatusFailedMsg:
		return m.onFleetStatusFailed(msg)
	case fleetStatusRetryMsg:
		return m.onFleetStatusRetry(msg)
	case statusLineMsg:
		m.setStatus(msg.text, msg.err)
	case openOverlayMsg:
		m.overlay = msg.overlay
	case openPromptMsg:
		m.prompt = msg.prompt
	case showHelpMsg:
		m.overlay = newHelpOverlay(m.d, m.views[m.active])
	case showViewMsg:
		return m.showView(msg)
	case remedyMsg:
		return m.remedy(msg)
	case backMsg:
		return m.show(m.back)
	case quitMsg:
		m.quitting = true
	case tea.KeyPressMsg:
		return m.onKey(msg)
	default:
		return m.views[m.active].Update(msg)
	}
	return nil
}

// remedier is a view that asks a node's agent for a remedy, as the node
// view does for the node it shows.
type remedier interface {
	remedy(reboot bool) tea.Cmd
}

// remedy hands a remedy asked at the : prompt to the view on screen, or
// says that none takes it there.
func (m *Model) remedy(msg remedyMsg) tea.Cmd {
	if r, ok := m.views[m.active].(remedier); ok {
		return r.remedy(msg.reboot)
	}
	m.setStatus("a GPU reset or a reboot acts on the node on screen: open one first (enter on a row)", true)
	return nil
}

// showView shows the view msg names and, when msg names what it opens on,
// opens it there.
func (m *Model) showView(msg showViewMsg) tea.Cmd {
	cmd := m.show(msg.name)
	if o, ok := m.views[msg.name].(opener); ok && msg.arg != "" {
		return tea.Batch(cmd, o.open(msg.arg))
	}
	return cmd
}

// show makes the named view the active one; the one it replaces is told,
// and so is the one shown.
func (m *Model) show(name string) tea.Cmd {
	if name == m.active {
		return nil
	}
	left := m.views[m.active]
	m.back, m.active = m.active, name
	return tea.Batch(left.Update(hiddenMsg{}), m.views[name].Update(shownMsg{}))
}

// onKey routes a key: an open overlay or prompt takes it first, then the
// global keys, then the active view.
func (m *Model) onKey(k tea.KeyPressMsg) tea.Cmd {
	g := &m.d.keys
	var cmd tea.Cmd
	switch {
	case key.Matches(k, g.Interrupt):
		m.quitting = true
	case m.overlay != nil:
		m.overlay, cmd = m.overlay.update(k)
	case m.prompt != nil:
		m.prompt, cmd = m.prompt.update(k)
	case key.Matches(k, g.Quit):
		m.quitting = true
	case key.Matches(k, g.Help):
		m.overlay = newHelpOverlay(m.d, m.views[m.active])
	case key.Matches(k, g.Command):
		m.prompt = m.palette.open()
	default:
		for i, b := range g.Views {
			if key.Matches(k, b) {
				return m.show(m.listed[i])
			}
		}
		return m.views[m.active].Update(k)
	}
	return cmd
}

func (m *Model) listen() tea.Cmd {
	if m.watcher == nil {
		return nil
	}
	return m.watcher.listen()
}

func (m *Model) onStream(sm streamMsg) tea.Cmd {
	f := m.d.fleet
	var c change
	for _, msg := range sm.msgs {
		f.apply(msg, &c)
	}
	if c.resync {
		m.conn.resyncing = true
	}
	if c.snapshot {
		m.conn.resyncing = false
	}
	// Small fleets show structural changes at once; large ones wait for
	// the once-a-second sort so a busy fleet stays cheap.
	if c.structure && len(f.rows) <= 10000 {
		f.resort()
	}
	if !f.loaded {
		return nil
	}
	// Every view follows the fleet, shown or not: cursors stay on their
	// rows and marks on rows that are still there.
	cmds := make([]tea.Cmd, 0, len(m.order))
	for _, name := range m.order {
		cmds = append(cmds, m.views[name].Update(fleetChangedMsg{change: &c}))
	}
	return tea.Batch(cmds...)
}

func (m *Model) onConnected(msg connectedMsg) tea.Cmd {
	m.conn = conn{connected: true, everUp: true}
	// A snapshot cut short by the old stream is not finished by the new one.
	m.d.fleet.partial = nil
	if msg.resumed {
		m.setStatus("reconnected; resumed from revision "+fmt.Sprint(m.d.fleet.revision), false)
	}
	// The control plane may be a new one, with other providers or limits.
	return m.askFleetStatus()
}

func (m *Model) onDisconnected(msg disconnectedMsg) {
	if m.conn.connected || m.conn.downSince.IsZero() {
		m.conn.downSince = m.d.now()
	}
	m.conn.connected = false
	m.conn.err, m.conn.detail = msg.err, msg.detail
	m.conn.retryAt, m.conn.attempt = m.d.now().Add(msg.retry), msg.attempt
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
