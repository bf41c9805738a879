package tui

import (
	"charm.land/bubbles/v2/help"
	tea "charm.land/bubbletea/v2"
)

// view is one screen of the console: the fleet table, the events, the
// pools, a node, a pool.
// The root model forwards keys to the active view and fleet changes to
// every view, and draws the chrome around what the view renders: the
// header, the status line (the view's hint while there is no result to
// show) and a footer made from the view's short help. The help overlay
// shows its full help.
type view interface {
	// Update handles a message and returns what to do next. A view tells
	// the root what it wants (another view, a dialog, a line in the status
	// line) by sending a message through deps.send.
	Update(msg tea.Msg) tea.Cmd
	// View renders the body at the size SetSize last gave.
	View() string
	SetSize(width, height int)
	// Hint is the status line's text while no result is shown.
	Hint() string
	help.KeyMap
}

// viewSpec registers a view.
type viewSpec struct {
	// name is the view's command in the : prompt, such as "nodes".
	name string
	// title names it in help: "fleet" gives "fleet view (:nodes)".
	title string
	// aliases are other commands that show it.
	aliases []string
	// listed views get a number key and a command. A view that needs more
	// than its name to open, such as a node, is opened from the others
	// with showViewMsg's arg, and implements opener.
	listed bool
	// newView builds it.
	newView func(d *deps) view
}

// viewSpecs are the console's views. The first opens first, and listed
// views are numbered in this order: 1, 2, …. A new view is a file with
// its constructor, and a line here.
var viewSpecs = []viewSpec{
	{name: fleetViewName, title: "fleet", aliases: []string{"fleet", "n"}, listed: true, newView: newFleetView},
	{name: eventsViewName, title: "events", aliases: []string{"e"}, listed: true, newView: newEventsView},
	{name: poolsViewName, title: "pools", aliases: []string{"pool"}, listed: true, newView: newPoolsView},
	{name: nodeViewName, newView: newNodeView},
	{name: poolViewName, newView: newPoolView},
}

// listedViews are the views with a number key and a command.
func listedViews() []viewSpec {
	var out []viewSpec
	for _, s := range viewSpecs {
		if s.listed {
			out = append(out, s)
		}
	}
	return out
}

// showViewMsg asks the root to show a view by name. arg, when not empty,
// names what the view opens on (the node view: a node id); the root hands
// it to the view's open.
type showViewMsg struct{ name, arg string }

// opener is a view that opens on something named, as the node view opens
// on a node. The root knows no such view by name: any view that takes an
// argument implements this, and is shown with showViewMsg.
type opener interface {
	view
	// open shows what arg names; the view is the active one by then.
	open(arg string) tea.Cmd
}

// backMsg asks the root to show the view that was shown before this one.
type backMsg struct{}

// hiddenMsg tells a view that another took its place.
type hiddenMsg struct{}

// shownMsg tells a view that it took another's place, so that one which
// let changes wait while out of sight can catch up.
type shownMsg struct{}

// fleetChangedMsg tells every view what the stream changed in the fleet.
type fleetChangedMsg struct{ change *change }
