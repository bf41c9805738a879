package tui

import (
	"slices"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// The console's keys follow k9s. Each view declares the keys it acts on in
// a key map of its own, made of the groups below, and both its footer and
// its help overlay are generated from that map; nothing matches raw key
// strings.

func bind(help, desc string, keys ...string) key.Binding {
	return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
}

// globalKeys work in every view; the root model handles them.
type globalKeys struct {
	Quit, Interrupt, Help, Command key.Binding
	// Views show the listed views, in the order viewSpecs lists them: 1
	// for the first.
	Views []key.Binding
	// ViewKeys is how help shows Views: on one line, so that help keeps
	// its size as views are added.
	ViewKeys key.Binding
}

func newGlobalKeys(listed []viewSpec) globalKeys {
	g := globalKeys{
		Quit:      bind("q", "quit", "q", "ctrl+c"),
		Interrupt: bind("ctrl+c", "quit", "ctrl+c"),
		Help:      bind("?", "help", "?"),
		Command:   bind(":", "command prompt", ":"),
	}
	var numbers, titles []string
	for i, s := range listed {
		n := strconv.Itoa(i + 1)
		g.Views = append(g.Views, key.NewBinding(key.WithKeys(n)))
		numbers, titles = append(numbers, n), append(titles, s.title)
	}
	if len(numbers) > 0 {
		keys := numbers[0] + "–" + numbers[len(numbers)-1]
		g.ViewKeys = bind(keys, strings.Join(titles, ", "), numbers...)
	}
	return g
}

// navKeys move a cursor or scroll, alike in every view.
type navKeys struct {
	Up, Down, PageUp, PageDown, Top, Bottom key.Binding
}

func newNavKeys() navKeys {
	return navKeys{
		Up:       bind("↑/k", "up", "up", "k"),
		Down:     bind("↓/j", "down", "down", "j"),
		PageUp:   bind("pgup", "page up", "pgup", "ctrl+b"),
		PageDown: bind("pgdn", "page down", "pgdown", "ctrl+f"),
		Top:      bind("g/home", "first", "home", "g"),
		Bottom:   bind("G/end", "last", "end", "G"),
	}
}

// bindings are the keys in the order help lists them.
func (n navKeys) bindings() []key.Binding {
	return []key.Binding{n.Up, n.Down, n.PageUp, n.PageDown, n.Top, n.Bottom}
}

// move is where the navigation key k takes a cursor at cursor over rows
// rows, page rows a page, kept within the rows; ok is false when k is no
// navigation key. Every list view and the node view's scrolling move so.
func (n *navKeys) move(k tea.KeyPressMsg, cursor, page, rows int) (next int, ok bool) {
	switch {
	case key.Matches(k, n.Up):
		cursor--
	case key.Matches(k, n.Down):
		cursor++
	case key.Matches(k, n.PageUp):
		cursor -= page
	case key.Matches(k, n.PageDown):
		cursor += page
	case key.Matches(k, n.Top):
		cursor = 0
	case key.Matches(k, n.Bottom):
		cursor = rows - 1
	default:
		return cursor, false
	}
	return max(0, min(cursor, rows-1)), true
}

// The keys the list views share.
func openKey() key.Binding   { return bind("enter", "open node", "enter") }
func backKey() key.Binding   { return bind("esc", "back", "esc") }
func filterKey() key.Binding { return bind("/", "filter (text, label=value)", "/") }

// actionKeys change nodes; the fleet, node and pool views act on them.
type actionKeys struct {
	Cordon, Uncordon, Drain, Terminate, Diagnose, Provision, PowerCycle key.Binding
	// Release keeps in service a node the breaker held back from an
	// automatic cordon.
	Release key.Binding
}

func newActionKeys() actionKeys {
	return actionKeys{
		Cordon:    bind("c", "cordon", "c"),
		Uncordon:  bind("u", "uncordon", "u"),
		Drain:     bind("d", "drain…", "d"),
		Terminate: bind("t", "terminate", "t"),
		Diagnose:  bind("x", "run diagnostics", "x"),
		Provision: bind("p", "provision…", "p"),
		// P, as power: a silent machine's last resort, and far from the
		// keys used every day.
		PowerCycle: bind("P", "power-cycle…", "P"),
		Release:    bind("R", "release held-back", "R"),
	}
}

// all are the action bindings, for a key map to guard.
func (a *actionKeys) all() []*key.Binding {
	return []*key.Binding{&a.Cordon, &a.Uncordon, &a.Drain, &a.Terminate, &a.Diagnose, &a.Provision, &a.PowerCycle, &a.Release}
}

// remedyKeys ask a node's agent for a remedy; the node view acts on them,
// on the node it shows.
type remedyKeys struct {
	ResetGPU, Reboot key.Binding
}

func newRemedyKeys() remedyKeys {
	return remedyKeys{
		ResetGPU: bind("r", "reset a GPU…", "r"),
		Reboot:   bind("b", "reboot…", "b"),
	}
}

// all are the remedy bindings, for a key map to guard.
func (r *remedyKeys) all() []*key.Binding {
	return []*key.Binding{&r.ResetGPU, &r.Reboot}
}

// poolKeys change a pool's wanted size by one, after confirmation; the
// pool views act on them.
type poolKeys struct {
	ScaleUp, ScaleDown key.Binding
}

func newPoolKeys() poolKeys {
	return poolKeys{
		ScaleUp:   bind("+", "scale up (one node more)", "+"),
		ScaleDown: bind("-", "scale down (one node fewer)", "-"),
	}
}

// all are the pool bindings, for a key map to guard.
func (p *poolKeys) all() []*key.Binding {
	return []*key.Binding{&p.ScaleUp, &p.ScaleDown}
}

// The keys that mark rows for an action on several nodes.
func markKey() key.Binding    { return bind("space", "mark row", "space") }
func markAllKey() key.Binding { return bind("ctrl+a", "mark all shown", "ctrl+a") }

// everyActionKey is every key that acts in some view: the actions, the
// remedies, the pools' scaling and the marks.
func everyActionKey() []string {
	a, r, p := newActionKeys(), newRemedyKeys(), newPoolKeys()
	keys := append(markKey().Keys(), markAllKey().Keys()...)
	for _, b := range slices.Concat(a.all(), r.all(), p.all()) {
		keys = append(keys, b.Keys()...)
	}
	return keys
}

// readOnlyGuard leaves bindings unbound in a read-only console, so that
// they neither match nor show in help, and returns a binding of their keys
// and of every other action key, so that pressing any action key in any
// view says why nothing happens, whether or not that view acts with it. A
// console that may act keeps the bindings and gets an unbound guard.
func readOnlyGuard(readOnly bool, bindings ...*key.Binding) key.Binding {
	if !readOnly {
		return key.Binding{}
	}
	keys := everyActionKey()
	for _, b := range bindings {
		keys = append(keys, b.Keys()...)
		b.Unbind()
	}
	return key.NewBinding(key.WithKeys(keys...))
}

// modalKeys are the keys of dialogs and prompts.
type modalKeys struct {
	Confirm, Cancel, Next, Prev, Submit key.Binding
	Dismiss, Toggle, Yes, No            key.Binding
	// Older and Newer walk the command prompt's history.
	Older, Newer key.Binding
	// Complete takes the completion the command prompt offers; NextMatch
	// and PrevMatch offer the others.
	Complete, NextMatch, PrevMatch key.Binding
}

func newModalKeys() modalKeys {
	return modalKeys{
		Confirm: bind("y", "confirm", "y", "Y"),
		Cancel:  bind("n/esc", "cancel", "n", "N", "esc"),
		Next:    bind("tab", "next field", "tab", "down"),
		Prev:    bind("shift+tab", "previous field", "shift+tab", "up"),
		Submit:  bind("enter", "submit", "enter"),
		Dismiss: bind("esc", "close", "esc"),
		Toggle:  bind("space", "toggle", "space", "x", "left", "right"),
		Yes:     bind("y", "yes", "y", "Y"),
		No:      bind("n", "no", "n", "N"),
		Older:   bind("↑", "older command", "up"),
		Newer:   bind("↓", "newer command", "down"),

		Complete:  bind("tab", "complete", "tab"),
		NextMatch: bind("ctrl+n", "next match", "ctrl+n"),
		PrevMatch: bind("ctrl+p", "previous match", "ctrl+p"),
	}
}
