package tui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// fleetViewName is the fleet view's command, and the view the console
// opens on.
const fleetViewName = "nodes"

// fleetKeys are the fleet view's keys.
type fleetKeys struct {
	navKeys
	actionKeys
	Open, Back, Filter, Sort, SortReverse, Mark, MarkAll key.Binding
	// HeldBack lists the nodes the breaker held back, together; again,
	// every node.
	HeldBack key.Binding
	// ReadOnly holds the keys a read-only console refuses.
	ReadOnly key.Binding
}

func newFleetKeys(readOnly bool) fleetKeys {
	k := fleetKeys{
		navKeys: newNavKeys(), actionKeys: newActionKeys(),
		Open: openKey(), Back: backKey(), Filter: filterKey(),
		Sort:        bind("s", "sort by next column", "s"),
		SortReverse: bind("S", "reverse sort", "S"),
		Mark:        markKey(),
		MarkAll:     markAllKey(),
		HeldBack:    bind("H", "held-back nodes", "H"),
	}
	k.ReadOnly = readOnlyGuard(readOnly, append(k.actionKeys.all(), &k.Mark, &k.MarkAll)...)
	return k
}

// fleetView is the node table. It renders only the rows in its window,
// so a hundred thousand nodes cost no more per frame than fifty.
type fleetView struct {
	d        *deps
	f        *fleet
	keys     fleetKeys
	cursor   int
	offset   int
	selected string // id under the cursor, kept across re-sorts
	marks    map[string]bool
	width    int
	height   int  // rows that fit, from the last render
	moved    bool // the operator moved the cursor; until then it stays on top
}

func newFleetView(d *deps) view {
	return &fleetView{d: d, f: d.fleet, keys: newFleetKeys(d.readOnly()), marks: map[string]bool{}, height: 10}
}

func (t *fleetView) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		return t.onKey(msg)
	case fleetChangedMsg:
		t.keepCursor()
	case filterMsg:
		t.f.setFilter(msg.text)
		t.keepCursor()
	case accessChangedMsg:
		t.keys = newFleetKeys(t.d.readOnly())
		if t.d.readOnly() {
			// Marks are for actions, which a read-only console has none of.
			t.marks = map[string]bool{}
		}
	}
	return nil
}

func (t *fleetView) onKey(k tea.KeyPressMsg) tea.Cmd {
	keys := &t.keys
	switch {
	case key.Matches(k, keys.ReadOnly):
		t.d.refuse()
	case t.move(k):
	case key.Matches(k, keys.Back):
		if len(t.marks) > 0 {
			t.marks = map[string]bool{}
		} else if t.f.filter.text != "" {
			t.f.setFilter("")
			t.keepCursor()
		}
	case key.Matches(k, keys.Open):
		if r := t.current(); r != nil {
			t.d.send(showViewMsg{name: nodeViewName, arg: r.id})
		}
	case key.Matches(k, keys.Filter):
		t.d.send(openPromptMsg{prompt: newFilterPrompt(t.d, t.f.filter.text)})
	case key.Matches(k, keys.Sort):
		next := (t.f.sortBy + 1) % numColumns
		if next == colPool && len(t.f.members) == 0 {
			// No node is in a pool: there is no POOL column to sort by.
			next++
		}
		t.f.setSort(next, t.f.desc)
		t.keepCursor()
	case key.Matches(k, keys.SortReverse):
		t.f.setSort(t.f.sortBy, !t.f.desc)
		t.keepCursor()
	case key.Matches(k, keys.HeldBack):
		t.toggleHeldBack()
	case key.Matches(k, keys.Mark):
		t.toggleMark()
	case key.Matches(k, keys.MarkAll):
		t.markAll()
	default:
		cmd, _ := keys.actionKeys.run(t.d, k, t.targets())
		return cmd
	}
	return nil
}

func (t *fleetView) SetSize(width, height int) {
	t.width = width
	t.height = max(1, height-1)
}

func (t *fleetView) Hint() string {
	n := fmt.Sprintf("%d of %s", len(t.f.shown), plural(len(t.f.rows), "node"))
	if k := len(t.marks); k > 0 {
		n += fmt.Sprintf(", %d marked", k)
	}
	return n + " · sorted by " + strings.ToLower(columnNames[t.f.sortBy]) + filterNote(t.f.filter.text)
}

func (t *fleetView) ShortHelp() []key.Binding {
	k := &t.keys
	if t.f.summary.GetHeldBack() > 0 {
		// Nodes wait for an operator's judgement: say how to find them
		// and what to do with them first.
		return []key.Binding{k.HeldBack, k.Cordon, k.Release, k.Open, t.d.keys.Help, t.d.keys.Quit}
	}
	return []key.Binding{k.Open, k.Filter, k.Sort, k.Cordon, k.Drain, k.Terminate, k.Provision, t.d.keys.Help, t.d.keys.Quit}
}

func (t *fleetView) FullHelp() [][]key.Binding {
	k, g := &t.keys, &t.d.keys
	return [][]key.Binding{
		append(k.navKeys.bindings(), k.Open, k.Back),
		[]key.Binding{k.Filter, k.HeldBack, g.Command, k.Sort, k.SortReverse, g.ViewKeys, g.Help, g.Quit},
		{k.Mark, k.MarkAll, k.Cordon, k.Uncordon, k.Release, k.Drain, k.Terminate, k.Diagnose, k.PowerCycle, k.Provision},
	}
}

func (t *fleetView) current() *row {
	if t.cursor < 0 || t.cursor >= len(t.f.shown) {
		return nil
	}
	return t.f.shown[t.cursor]
}

// keepCursor moves the cursor to follow its node after a re-sort, filter
// or removal.
func (t *fleetView) keepCursor() {
	if i, ok := t.f.index[t.selected]; ok && t.moved {
		t.cursor = i
	}
	t.cursor = max(0, min(t.cursor, len(t.f.shown)-1))
	if r := t.current(); r != nil {
		t.selected = r.id
	}
	// Only what is shown stays marked, so a bulk action never reaches a
	// node the filter hides.
	for id := range t.marks {
		if _, ok := t.f.index[id]; !ok {
			delete(t.marks, id)
		}
	}
}

// move handles navigation keys and reports whether k was one.
func (t *fleetView) move(k tea.KeyPressMsg) bool {
	next, ok := t.keys.move(k, t.cursor, max(1, t.height-1), len(t.f.shown))
	if !ok {
		return false
	}
	t.moved = true
	t.cursor = next
	if r := t.current(); r != nil {
		t.selected = r.id
	}
	return true
}

// toggleHeldBack filters the table to the nodes the breaker held back,
// or, when it shows them already, back to every node.
func (t *fleetView) toggleHeldBack() {
	if t.f.filter.text == heldWord {
		t.f.setFilter("")
	} else {
		t.f.setFilter(heldWord)
	}
	t.keepCursor()
}

func (t *fleetView) toggleMark() {
	r := t.current()
	if r == nil {
		return
	}
	if t.marks[r.id] {
		delete(t.marks, r.id)
	} else {
		t.marks[r.id] = true
	}
	t.moved = true
	t.cursor = min(t.cursor+1, len(t.f.shown)-1)
	if c := t.current(); c != nil {
		t.selected = c.id
	}
}

func (t *fleetView) markAll() {
	if len(t.marks) == len(t.f.shown) && len(t.marks) > 0 {
		t.marks = map[string]bool{}
		return
	}
	for _, r := range t.f.shown {
		t.marks[r.id] = true
	}
}

// targets are the marked nodes, or the node under the cursor.
func (t *fleetView) targets() []string {
	if len(t.marks) > 0 {
		ids := make([]string, 0, len(t.marks))
		for id := range t.marks {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	}
	if r := t.current(); r != nil {
		return []string{r.id}
	}
	return nil
}

func (t *fleetView) View() string {
	th := t.d.theme
	width := t.width
	if len(t.f.shown) == 0 {
		msg := "no nodes yet: provision some with p, or start navarch-agent on a GPU node"
		if t.d.readOnly() {
			msg = "no nodes yet: start navarch-agent on a GPU node"
		}
		switch {
		case t.f.filter.text == heldWord:
			msg = "no node is held back from an automatic cordon (H or esc shows every node)"
		case !t.f.filter.empty():
			msg = "no node matches the filter " + t.f.filter.text + " (esc clears it)"
		}
		return t.headerLine(fitColumns(width, wants{id: 12, gpus: 8})) + "\n" + th.Muted.Render(msg)
	}
	t.offset = windowStart(t.cursor, t.offset, t.height, len(t.f.shown))
	end := min(t.offset+t.height, len(t.f.shown))
	window := t.f.shown[t.offset:end]
	l := fitWindow(width, window, true)
	now := t.d.now()
	var sb strings.Builder
	sb.WriteString(t.headerLine(l))
	for i, r := range window {
		sb.WriteByte('\n')
		sb.WriteString(rowLine(t.d.theme, r, l, t.offset+i == t.cursor, t.marks[r.id], now))
	}
	return sb.String()
}

func (t *fleetView) headerLine(l layout) string {
	return headerLine(t.d.theme, l, t.f.sortBy, t.f.desc)
}

// headerLine is the node table's column header, with an arrow on the
// column sortBy.
func headerLine(th *Theme, l layout, sortBy column, desc bool) string {
	var sb strings.Builder
	sb.WriteString("  ")
	for c := range numColumns {
		if l[c] == 0 {
			continue
		}
		name := columnNames[c]
		if c == sortBy {
			if desc {
				name += "▼"
			} else {
				name += "▲"
			}
		}
		if c == colUtil || c == colHot || c == colSeen {
			sb.WriteString(th.Header.Render(padLeft(name, l[c])))
		} else {
			sb.WriteString(th.Header.Render(padRight(name, l[c])))
		}
		sb.WriteByte(' ')
	}
	return sb.String()
}

// rowLine is one node's row of the node table; the fleet view and the
// pool view draw theirs with it.
func rowLine(th *Theme, r *row, l layout, selected, marked bool, now time.Time) string {
	// The gutter shows the cursor and the mark without relying on colour.
	mark := " "
	if selected {
		mark = "›"
	}
	if marked {
		mark += th.Mark.Render("✓")
	} else {
		mark += " "
	}
	cells := make([]string, 0, numColumns)
	add := func(c column, text string, style func(...string) string, right bool) {
		if l[c] == 0 {
			return
		}
		if right {
			text = padLeft(text, l[c])
		} else {
			text = padRight(text, l[c])
		}
		if style != nil && !selected {
			text = style(text)
		}
		cells = append(cells, text)
	}
	// A terminated node's health is history, not an alarm.
	gone := r.lifecycle == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED
	healthStyle := th.HealthStyle(r.health).Render
	if gone {
		healthStyle = th.Muted.Render
	}
	// An OFFLINE or terminated node's metrics are its last, not today's.
	live := r.live()
	add(colNode, r.id, nil, false)
	if r.heldBack {
		// ACTIVE still, and UNHEALTHY: the breaker kept it from a cordon
		// and it waits for an operator.
		add(colLifecycle, "HELD BACK", th.Warn.Render, false)
	} else {
		add(colLifecycle, display.Lifecycle(r.lifecycle), th.LifecycleStyle(r.lifecycle).Render, false)
	}
	add(colHealth, display.Health(r.health), healthStyle, false)
	add(colReach, display.Reachability(r.reach), th.ReachStyle(r.reach).Render, false)
	if l[colGPUs] > 0 {
		cell := glyphCell(th, r, l[colGPUs], selected || !live)
		if !live && !selected {
			cell = th.Muted.Render(cell)
		}
		cells = append(cells, cell)
	}
	util, hot := "-", "-"
	if u := r.liveUtil(); u >= 0 {
		util = fmt.Sprintf("%d%%", u)
	}
	if h := r.liveHot(); h >= 0 {
		hot = fmt.Sprintf("%d°", h)
	}
	add(colUtil, util, nil, true)
	add(colHot, hot, nil, true)
	add(colSeen, display.Age(r.lastHB, now), nil, true)
	add(colPool, display.OrDash(r.pool), nil, false)
	if l[colWhy] > 0 {
		cells = append(cells, whyCell(th, r, l[colWhy], selected || gone))
	}
	add(colLabels, r.labels, th.Muted.Render, false)
	line := strings.Join(cells, " ")
	if selected {
		return mark + th.Selected.Render(line)
	}
	return mark + line
}

// glyphCell draws one letter per GPU, coloured by health unless plain; a
// node with more GPUs than fit shows how many more.
func glyphCell(th *Theme, r *row, width int, plain bool) string {
	g := r.glyphs
	suffix := ""
	if len(g) > width {
		suffix = fmt.Sprintf("+%d", len(g)-(width-3))
		g = g[:width-3]
	}
	var sb strings.Builder
	for _, c := range g {
		if plain {
			sb.WriteByte(c)
		} else {
			sb.WriteString(th.GlyphStyle(c).Render(string(c)))
		}
	}
	sb.WriteString(suffix)
	return sb.String() + strings.Repeat(" ", max(0, width-len(g)-len(suffix)))
}

// whyCell draws the WHY column: the cause in its health's colour, the
// remedy plain; the arrow between them says which is which without
// colour.
func whyCell(th *Theme, r *row, width int, plain bool) string {
	cause, remedy := r.why.text(width)
	pad := strings.Repeat(" ", max(0, width-ansi.StringWidth(cause)-ansi.StringWidth(remedy)))
	if plain {
		return cause + remedy + pad
	}
	style := th.HealthStyle(r.health)
	if r.why.cause == "" {
		style = th.Muted
	}
	return style.Render(cause) + remedy + pad
}
