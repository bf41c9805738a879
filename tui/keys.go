package tui

import "charm.land/bubbles/v2/key"

// KeyMap is the console's one keymap; the help overlay is generated from
// it, and every key handler matches against it.
type KeyMap struct {
	Up, Down, PageUp, PageDown, Top, Bottom key.Binding
	Open, Back, Filter, Command, Help, Quit key.Binding
	Sort, SortReverse, Mark, MarkAll        key.Binding
	Cordon, Uncordon, Drain, Terminate      key.Binding
	Provision, Diagnose                     key.Binding
	Nodes, Events                           key.Binding
	Confirm, Cancel, Next, Prev, Submit     key.Binding
	// Used inside dialogs and prompts.
	Dismiss, Toggle, Yes, No, Older, Newer, Interrupt key.Binding
}

// DefaultKeyMap follows k9s conventions.
func DefaultKeyMap() KeyMap {
	b := func(help, desc string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return KeyMap{
		Up:          b("↑/k", "up", "up", "k"),
		Down:        b("↓/j", "down", "down", "j"),
		PageUp:      b("pgup", "page up", "pgup", "ctrl+b"),
		PageDown:    b("pgdn", "page down", "pgdown", "ctrl+f"),
		Top:         b("g/home", "first", "home", "g"),
		Bottom:      b("G/end", "last", "end", "G"),
		Open:        b("enter", "open node", "enter"),
		Back:        b("esc", "back", "esc"),
		Filter:      b("/", "filter (text, label=value)", "/"),
		Command:     b(":", "command prompt", ":"),
		Help:        b("?", "help", "?"),
		Quit:        b("q", "quit", "q", "ctrl+c"),
		Sort:        b("s", "sort by next column", "s"),
		SortReverse: b("S", "reverse sort", "S"),
		Mark:        b("space", "mark row", "space"),
		MarkAll:     b("ctrl+a", "mark all shown", "ctrl+a"),
		Cordon:      b("c", "cordon", "c"),
		Uncordon:    b("u", "uncordon", "u"),
		Drain:       b("d", "drain…", "d"),
		Terminate:   b("t", "terminate", "t"),
		Provision:   b("p", "provision…", "p"),
		Diagnose:    b("x", "run diagnostics", "x"),
		Nodes:       b("1", "fleet view (:nodes)", "1"),
		Events:      b("2", "events view (:events)", "2"),
		Confirm:     b("y", "confirm", "y", "Y"),
		Cancel:      b("n/esc", "cancel", "n", "N", "esc"),
		Next:        b("tab", "next field", "tab", "down"),
		Prev:        b("shift+tab", "previous field", "shift+tab", "up"),
		Submit:      b("enter", "submit", "enter"),
		Dismiss:     b("esc", "close", "esc"),
		Toggle:      b("space", "toggle", "space", "x", "left", "right"),
		Yes:         b("y", "yes", "y", "Y"),
		No:          b("n", "no", "n", "N"),
		Older:       b("↑", "older command", "up"),
		Newer:       b("↓", "newer command", "down"),
		Interrupt:   b("ctrl+c", "quit", "ctrl+c"),
	}
}

// actions are the bindings read-only mode turns off.
func (k *KeyMap) actions() []*key.Binding {
	return []*key.Binding{&k.Cordon, &k.Uncordon, &k.Drain, &k.Terminate, &k.Provision, &k.Diagnose, &k.Mark, &k.MarkAll}
}

// SetReadOnly disables every action binding, which also hides them from
// help.
func (k *KeyMap) SetReadOnly(ro bool) {
	for _, b := range k.actions() {
		b.SetEnabled(!ro)
	}
}

// ShortHelp is the one-line help of the fleet view.
func (k KeyMap) ShortHelp() []key.Binding {
	return []key.Binding{k.Open, k.Filter, k.Sort, k.Cordon, k.Drain, k.Terminate, k.Provision, k.Help, k.Quit}
}

// nodeHelp is the one-line help of the node view.
func (k KeyMap) nodeHelp() []key.Binding {
	return []key.Binding{k.Back, k.Up, k.Cordon, k.Uncordon, k.Drain, k.Terminate, k.Diagnose, k.Help, k.Quit}
}

// eventsHelp is the one-line help of the events view.
func (k KeyMap) eventsHelp() []key.Binding {
	return []key.Binding{k.Open, k.Filter, k.Back, k.Command, k.Help, k.Quit}
}

// FullHelp is the help overlay, in columns.
func (k KeyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{
		{k.Up, k.Down, k.PageUp, k.PageDown, k.Top, k.Bottom, k.Open, k.Back},
		{k.Filter, k.Command, k.Sort, k.SortReverse, k.Nodes, k.Events, k.Help, k.Quit},
		{k.Mark, k.MarkAll, k.Cordon, k.Uncordon, k.Drain, k.Terminate, k.Diagnose, k.Provision},
	}
}
