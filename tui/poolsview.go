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

// poolsViewName is the pools view's command.
const poolsViewName = "pools"

// poolsKeys are the pools view's keys.
type poolsKeys struct {
	navKeys
	poolKeys
	Open, Back key.Binding
	// ReadOnly holds the keys a read-only console refuses.
	ReadOnly key.Binding
}

func newPoolsKeys(readOnly bool) poolsKeys {
	k := poolsKeys{navKeys: newNavKeys(), poolKeys: newPoolKeys(), Open: bind("enter", "open pool", "enter"), Back: backKey()}
	k.ReadOnly = readOnlyGuard(readOnly, k.poolKeys.all()...)
	return k
}

// poolsView lists the pools with their size, health and latest decision,
// as the stream keeps them. The cursor stays on its pool by name as pools
// come and go.
type poolsView struct {
	d        *deps
	f        *fleet
	keys     poolsKeys
	cursor   int
	offset   int
	selected string
	width    int
	height   int
}

func newPoolsView(d *deps) view {
	return &poolsView{d: d, f: d.fleet, keys: newPoolsKeys(d.readOnly()), height: 10}
}

func (v *poolsView) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		v.onKey(msg)
	case fleetChangedMsg:
		if msg.change.pools {
			v.follow()
		}
	case accessChangedMsg:
		v.keys = newPoolsKeys(v.d.readOnly())
	}
	return nil
}

func (v *poolsView) onKey(k tea.KeyPressMsg) {
	keys := &v.keys
	switch {
	case key.Matches(k, keys.ReadOnly):
		v.d.refuse()
	case key.Matches(k, keys.Back):
		v.d.send(showViewMsg{name: fleetViewName})
	case v.move(k):
	case key.Matches(k, keys.Open):
		if p := v.current(); p != nil {
			v.d.send(showViewMsg{name: poolViewName, arg: p.GetName()})
		}
	case key.Matches(k, keys.ScaleUp, keys.ScaleDown):
		askScale(v.d, v.current(), key.Matches(k, keys.ScaleUp))
	}
}

func (v *poolsView) SetSize(width, height int) {
	v.width = width
	v.height = max(1, height-1)
}

func (v *poolsView) Hint() string {
	return plural(len(v.f.poolNames), "pool") + " · " + poolColumnsLegend
}

func (v *poolsView) ShortHelp() []key.Binding {
	k, g := &v.keys, &v.d.keys
	return []key.Binding{k.Open, k.ScaleUp, k.ScaleDown, k.Back, g.Command, g.Help, g.Quit}
}

func (v *poolsView) FullHelp() [][]key.Binding {
	k, g := &v.keys, &v.d.keys
	return [][]key.Binding{
		append(k.navKeys.bindings(), k.Open, k.Back),
		[]key.Binding{g.Command, g.ViewKeys, g.Help, g.Quit},
		{k.ScaleUp, k.ScaleDown},
	}
}

func (v *poolsView) notes() []string { return []string{poolHealthLegend, poolColumnsLegend} }

func (v *poolsView) current() *fleetv1.Pool {
	if v.cursor < 0 || v.cursor >= len(v.f.poolNames) {
		return nil
	}
	return v.f.pools[v.f.poolNames[v.cursor]]
}

// follow puts the cursor back on its pool after pools came or went; a
// pool that went leaves the cursor where it was, within the list.
func (v *poolsView) follow() {
	for i, name := range v.f.poolNames {
		if name == v.selected {
			v.cursor = i
			break
		}
	}
	v.clamp()
}

func (v *poolsView) clamp() {
	v.cursor = max(0, min(v.cursor, len(v.f.poolNames)-1))
	if p := v.current(); p != nil {
		v.selected = p.GetName()
	}
}

func (v *poolsView) move(k tea.KeyPressMsg) bool {
	next, ok := v.keys.move(k, v.cursor, max(1, v.height-1), len(v.f.poolNames))
	if ok {
		v.cursor = next
		v.clamp()
	}
	return ok
}

// The pools table's columns.
type poolColumn int

const (
	pcName poolColumn = iota
	pcProviders
	pcSize
	pcRange
	pcProv
	pcOff
	pcRemoving
	pcUtil
	pcHealth
	pcAuto
	pcDecision
	numPoolColumns
)

var poolColumnNames = [numPoolColumns]string{"NAME", "PROVIDERS", "SIZE", "MIN–MAX", "PROV", "OFF", "RMV", "UTIL", "HEALTH", "AUTO", "LAST DECISION"}

// poolCells are one pool's cells as plain text; HEALTH is styled when the
// row is drawn.
func poolCells(th *Theme, p *fleetv1.Pool, now time.Time) [numPoolColumns]string {
	s, spec := p.GetStatus(), p.GetSpec()
	util := "-"
	if s.GetNodes() > 0 {
		util = fmt.Sprintf("%.0f%%", s.GetUtilization())
	}
	decision := "-"
	if ds := p.GetDecisions(); len(ds) > 0 {
		decision = display.Age(tsTime(ds[0].GetAt()), now) + " ago: " + display.FirstLine(ds[0].GetReason())
	}
	return [numPoolColumns]string{
		pcName:      p.GetName(),
		pcProviders: display.OrDash(strings.Join(spec.GetProviders(), ",")),
		pcSize:      fmt.Sprintf("%d/%d", s.GetNodes(), p.GetWanted()),
		pcRange:     fmt.Sprintf("%d–%d", spec.GetMin(), spec.GetMax()),
		pcProv:      fmt.Sprint(s.GetProvisioning()),
		pcOff:       fmt.Sprint(s.GetOffline()),
		pcRemoving:  fmt.Sprint(s.GetRemoving()),
		pcUtil:      util,
		pcHealth:    poolHealth(th, s, true),
		pcAuto:      autoscaling(p),
		pcDecision:  decision,
	}
}

// rightAligned are the pools table's numeric columns.
var rightAligned = [numPoolColumns]bool{pcSize: true, pcRange: true, pcProv: true, pcOff: true, pcRemoving: true, pcUtil: true}

// fitPoolColumns sizes the columns to their widest cell, LAST DECISION to
// what is left; a narrow terminal drops RMV, OFF, UTIL and PROVIDERS, in
// that order, before the decision goes.
func fitPoolColumns(width int, rows [][numPoolColumns]string) [numPoolColumns]int {
	var w [numPoolColumns]int
	for c := range numPoolColumns {
		w[c] = len([]rune(poolColumnNames[c]))
		for _, r := range rows {
			w[c] = max(w[c], len([]rune(r[c])))
		}
	}
	w[pcName] = min(w[pcName], 24)
	w[pcProviders] = min(w[pcProviders], 20)
	used := 2 // the cursor column
	for c := range pcDecision {
		used += w[c] + 1
	}
	for _, drop := range []poolColumn{pcRemoving, pcOff, pcUtil, pcProviders} {
		if width-used >= 16 {
			break
		}
		used -= w[drop] + 1
		w[drop] = 0
	}
	w[pcDecision] = max(0, width-used)
	if w[pcDecision] < 6 {
		w[pcDecision] = 0
	}
	return w
}

func (v *poolsView) View() string {
	th := v.d.theme
	names := v.f.poolNames
	if len(names) == 0 {
		return v.headerLine(fitPoolColumns(v.width, nil)) + "\n" +
			th.Muted.Render("no pools: a pool is defined in the control plane's configuration, or with navarch pool put NAME -f FILE")
	}
	v.clamp()
	v.offset = windowStart(v.cursor, v.offset, v.height, len(names))
	window := names[v.offset:min(v.offset+v.height, len(names))]
	now := v.d.now()
	rows := make([][numPoolColumns]string, len(window))
	for i, name := range window {
		rows[i] = poolCells(th, v.f.pools[name], now)
	}
	w := fitPoolColumns(v.width, rows)
	lines := []string{v.headerLine(w)}
	for i, name := range window {
		lines = append(lines, v.rowLine(v.f.pools[name], rows[i], w, v.offset+i == v.cursor))
	}
	return strings.Join(lines, "\n")
}

func (v *poolsView) headerLine(w [numPoolColumns]int) string {
	var cells []string
	for c := range numPoolColumns {
		if w[c] == 0 {
			continue
		}
		if rightAligned[c] {
			cells = append(cells, padLeft(poolColumnNames[c], w[c]))
		} else {
			cells = append(cells, padRight(poolColumnNames[c], w[c]))
		}
	}
	return "  " + v.d.theme.Header.Render(strings.Join(cells, " "))
}

func (v *poolsView) rowLine(p *fleetv1.Pool, cells [numPoolColumns]string, w [numPoolColumns]int, selected bool) string {
	th := v.d.theme
	out := make([]string, 0, numPoolColumns)
	for c := range numPoolColumns {
		if w[c] == 0 {
			continue
		}
		text := cells[c]
		if rightAligned[c] {
			text = padLeft(text, w[c])
		} else {
			text = padRight(text, w[c])
		}
		if !selected {
			switch {
			case c == pcHealth:
				text = poolHealth(th, p.GetStatus(), false) + strings.Repeat(" ", max(0, w[c]-len(cells[c])))
			case c == pcSize && p.GetStatus().GetNodes() != p.GetWanted():
				text = th.Warn.Render(text)
			case c == pcAuto && cells[c] == "off", c == pcDecision:
				text = th.Muted.Render(text)
			}
		}
		out = append(out, text)
	}
	line := strings.Join(out, " ")
	if selected {
		return "›" + " " + th.Selected.Render(line)
	}
	return "  " + line
}
