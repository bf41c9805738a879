package tui

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// poolViewName is the pool view's name; showViewMsg opens it on the pool
// its arg names.
const poolViewName = "pool"

// poolViewKeys are the pool view's keys: the navigation keys move over the
// pool's nodes, and the node actions act on the node under the cursor.
type poolViewKeys struct {
	navKeys
	actionKeys
	poolKeys
	Open, Back key.Binding
	// ReadOnly holds the keys a read-only console refuses.
	ReadOnly key.Binding
}

func newPoolViewKeys(readOnly bool) poolViewKeys {
	k := poolViewKeys{navKeys: newNavKeys(), actionKeys: newActionKeys(), poolKeys: newPoolKeys(), Open: openKey(), Back: backKey()}
	k.ReadOnly = readOnlyGuard(readOnly, append(k.actionKeys.all(), k.poolKeys.all()...)...)
	return k
}

// poolView shows one pool: what it is and how it is kept, its nodes as the
// fleet table draws them, and its latest decisions, newest first. All of
// it follows the stream; the nodes are the ones whose Node.pool names it.
type poolView struct {
	d        *deps
	keys     poolViewKeys
	name     string
	rows     []*row // the pool's nodes, by id
	cursor   int
	offset   int
	selected string // id under the cursor
	width    int
	height   int
	nodeRoom int    // node rows shown, from the last render
	hidden   bool   // another view is on screen
	loaded   uint64 // the fleet's joins when rows were taken
}

func newPoolView(d *deps) view {
	return &poolView{d: d, keys: newPoolViewKeys(d.readOnly()), nodeRoom: 5}
}

func (v *poolView) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		return v.onKey(msg)
	case fleetChangedMsg:
		v.refresh()
	case hiddenMsg:
		v.hidden = true
	case shownMsg:
		v.hidden = false
		v.refresh()
	case accessChangedMsg:
		v.keys = newPoolViewKeys(v.d.readOnly())
	}
	return nil
}

// open shows the pool name names.
func (v *poolView) open(name string) tea.Cmd {
	v.name, v.cursor, v.offset, v.selected = name, 0, 0, ""
	v.load()
	return nil
}

// refresh takes the pool's nodes afresh if any joined or left a pool
// since they were taken. Nodes that changed otherwise are the same rows,
// already up to date, in the same order; out of sight, nothing is taken.
func (v *poolView) refresh() {
	if v.name != "" && !v.hidden && v.loaded != v.d.fleet.joins {
		v.load()
	}
}

// load takes the pool's nodes afresh, the cursor staying on its node.
func (v *poolView) load() {
	v.loaded = v.d.fleet.joins
	v.rows = v.d.fleet.poolRows(v.name)
	for i, r := range v.rows {
		if r.id == v.selected {
			v.cursor = i
			break
		}
	}
	v.clamp()
}

func (v *poolView) clamp() {
	v.cursor = max(0, min(v.cursor, len(v.rows)-1))
	if r := v.current(); r != nil {
		v.selected = r.id
	}
}

func (v *poolView) current() *row {
	if v.cursor < 0 || v.cursor >= len(v.rows) {
		return nil
	}
	return v.rows[v.cursor]
}

func (v *poolView) onKey(k tea.KeyPressMsg) tea.Cmd {
	keys := &v.keys
	switch {
	case key.Matches(k, keys.ReadOnly):
		v.d.refuse()
	case key.Matches(k, keys.Back):
		v.d.send(showViewMsg{name: poolsViewName})
	case v.move(k):
	case key.Matches(k, keys.Open):
		if r := v.current(); r != nil {
			v.d.send(showViewMsg{name: nodeViewName, arg: r.id})
		}
	case key.Matches(k, keys.ScaleUp, keys.ScaleDown):
		askScale(v.d, v.d.fleet.pools[v.name], key.Matches(k, keys.ScaleUp))
	default:
		var targets []string
		if r := v.current(); r != nil {
			targets = []string{r.id}
		}
		cmd, _ := keys.actionKeys.run(v.d, k, targets)
		return cmd
	}
	return nil
}

func (v *poolView) move(k tea.KeyPressMsg) bool {
	next, ok := v.keys.move(k, v.cursor, max(1, v.nodeRoom-1), len(v.rows))
	if ok {
		v.cursor = next
		v.clamp()
	}
	return ok
}

func (v *poolView) SetSize(width, height int) { v.width, v.height = width, height }

func (v *poolView) Hint() string {
	return "pool " + v.name + " · " + plural(len(v.rows), "node") + " · enter opens the node under the cursor"
}

func (v *poolView) ShortHelp() []key.Binding {
	k, g := &v.keys, &v.d.keys
	return []key.Binding{k.Back, k.Open, k.ScaleUp, k.ScaleDown, k.Cordon, k.Drain, k.Terminate, k.PowerCycle, g.Help, g.Quit}
}

func (v *poolView) FullHelp() [][]key.Binding {
	k, g := &v.keys, &v.d.keys
	return [][]key.Binding{
		append(k.navKeys.bindings(), k.Open, k.Back),
		[]key.Binding{g.Command, g.ViewKeys, g.Help, g.Quit},
		{k.ScaleUp, k.ScaleDown, k.Cordon, k.Uncordon, k.Release, k.Drain, k.Terminate, k.Diagnose, k.PowerCycle, k.Provision},
	}
}

func (v *poolView) notes() []string {
	return []string{gpuLegend, poolHealthLegend}
}

func (v *poolView) View() string {
	t := v.d.theme
	p, ok := v.d.fleet.pools[v.name]
	if !ok && len(v.rows) == 0 {
		return t.StatusErr.Render("pool " + v.name + ": no such pool (esc lists the pools)")
	}
	now := v.d.now()
	top := v.summary(p, ok, now)
	decisions := v.decisionLines(p, now)
	// Rows beyond the fixed lines go to the nodes and the decisions: the
	// nodes all of theirs while the decisions keep what they need, else
	// half.
	fixed := len(top) + 5 // a blank, the node header, a blank, the decisions' two headers
	room := max(2, v.height-fixed)
	nodes := max(1, len(v.rows))
	v.nodeRoom = max(1, min(nodes, max(room-len(decisions), room/2)))
	lines := append(top, "")
	lines = append(lines, v.nodeLines(now)...)
	lines = append(lines, "", t.Header.Render("DECISIONS (newest first)"),
		t.Muted.Render(truncate(fmt.Sprintf(" %4s  %-9s  %-14s  %s", "AGE", "ACTION", "BY", "REASON"), v.width)))
	return strings.Join(append(lines, decisions...), "\n")
}

// summary is what the pool is and how it stands: a title, its spec, its
// nodes' health.
func (v *poolView) summary(p *fleetv1.Pool, exists bool, now time.Time) []string {
	t := v.d.theme
	if !exists {
		return []string{t.Title.Render(v.name) + "  " + t.StatusErr.Render("deleted: its nodes stay, kept by no pool")}
	}
	s, spec := p.GetStatus(), p.GetSpec()
	size := fmt.Sprintf("%d/%s", s.GetNodes(), plural(p.GetWanted(), "node"))
	if s.GetNodes() != p.GetWanted() {
		size = t.Warn.Render(size)
	}
	title := t.Title.Render(p.GetName()) + "  " + size + t.Muted.Render(fmt.Sprintf(" · min %d · max %d · autoscaling %s", spec.GetMin(), spec.GetMax(), autoscaling(p)))
	if p.GetFromConfig() {
		title += t.Muted.Render(" · from the configuration file")
	}
	health := t.Muted.Render("nodes ") + poolHealth(t, s, false) + t.Muted.Render(fmt.Sprintf(" · %d provisioning · %d offline · %d removing", s.GetProvisioning(), s.GetOffline(), s.GetRemoving()))
	if s.GetNodes() > 0 {
		health += t.Muted.Render(fmt.Sprintf(" · utilisation %.0f%%", s.GetUtilization()))
	}
	if at := tsTime(p.GetWantedChangedAt()); !at.IsZero() {
		health += t.Muted.Render(" · wanted since " + display.Age(at, now) + " ago")
	}
	return []string{title, t.Muted.Render(truncate(poolSpecLine(spec), v.width)), health}
}

// poolSpecLine says how a pool's nodes are made and kept, on one line.
func poolSpecLine(spec *fleetv1.PoolSpec) string {
	parts := []string{"providers " + display.OrDash(strings.Join(spec.GetProviders(), ", "))}
	if it := spec.GetInstanceType(); it != "" {
		parts = append(parts, it)
	}
	if g := spec.GetGpusPerNode(); g > 0 {
		parts = append(parts, plural(g, "GPU")+" each")
	}
	if r := spec.GetRegion(); r != "" {
		parts = append(parts, "region "+r)
	}
	if z := spec.GetZones(); len(z) > 0 {
		parts = append(parts, "zones "+strings.Join(z, ", "))
	}
	if spec.GetReplaceUnhealthy() {
		replace := "replaces unhealthy nodes"
		if g := spec.GetUnhealthyGrace().AsDuration(); g > 0 {
			replace += " after " + display.Duration(g)
		}
		parts = append(parts, replace)
	}
	if n := spec.GetMaxSurge(); n > 0 {
		parts = append(parts, fmt.Sprintf("surge %d", n))
	}
	if l := display.Labels(spec.GetLabels()); l != "" {
		parts = append(parts, l)
	}
	return strings.Join(parts, " · ")
}

// nodeLines are the node table's header and the window of rows around the
// cursor.
func (v *poolView) nodeLines(now time.Time) []string {
	t := v.d.theme
	if len(v.rows) == 0 {
		return []string{headerLine(t, fitColumns(v.width, wants{id: 12, gpus: 8}), colNode, false), t.Muted.Render("  no nodes in this pool yet")}
	}
	v.offset = windowStart(v.cursor, v.offset, v.nodeRoom, len(v.rows))
	window := v.rows[v.offset:min(v.offset+v.nodeRoom, len(v.rows))]
	l := fitWindow(v.width, window, false)
	lines := []string{headerLine(t, l, colNode, false)}
	for i, r := range window {
		lines = append(lines, rowLine(t, r, l, v.offset+i == v.cursor, false, now))
	}
	return lines
}

// decisionLines are the pool's latest decisions, newest first.
func (v *poolView) decisionLines(p *fleetv1.Pool, now time.Time) []string {
	t := v.d.theme
	if len(p.GetDecisions()) == 0 {
		return []string{t.Muted.Render("  no decisions yet")}
	}
	var lines []string
	for _, d := range p.GetDecisions() {
		reason := display.FirstLine(d.GetReason())
		if ids := d.GetNodeIds(); len(ids) > 0 {
			reason += " [" + strings.Join(ids, ", ") + "]"
		}
		line := fmt.Sprintf(" %4s  %s  %s  %s", display.Age(tsTime(d.GetAt()), now), padRight(display.PoolAction(d.GetAction()), 9),
			padRight(display.OrDash(d.GetBy()), 14), reason)
		lines = append(lines, truncate(line, v.width))
	}
	return lines
}
