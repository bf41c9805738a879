package tui

import (
	"fmt"
	"slices"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// eventsViewName is the events view's command.
const eventsViewName = "events"

// eventsKeys are the events view's keys.
type eventsKeys struct {
	navKeys
	Open, Back, Filter, Provision key.Binding
	// ReadOnly holds the keys a read-only console refuses.
	ReadOnly key.Binding
}

func newEventsKeys(readOnly bool) eventsKeys {
	k := eventsKeys{navKeys: newNavKeys(), Open: openKey(), Back: backKey(), Filter: filterKey(), Provision: newActionKeys().Provision}
	k.ReadOnly = readOnlyGuard(readOnly, &k.Provision)
	return k
}

// eventsView lists the fleet's health events, newest first, with the same
// filter syntax as the fleet view (text matches node, kind and cause).
//
// New events arrive at the top, so an index alone would slide the cursor
// onto another event; like the fleet table's selected node, the cursor
// remembers its event's key and finds it again after every change.
type eventsView struct {
	d        *deps
	f        *fleet
	keys     eventsKeys
	filter   filter
	cursor   int
	offset   int
	width    int
	height   int
	selected string               // key of the event under the cursor
	selEvent *fleetv1.HealthEvent // the event itself, until a snapshot replaces it
	moved    bool                 // the operator moved the cursor; until then it stays on top
}

func newEventsView(d *deps) view {
	return &eventsView{d: d, f: d.fleet, keys: newEventsKeys(d.readOnly()), height: 10}
}

func (v *eventsView) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		v.onKey(msg)
	case fleetChangedMsg:
		v.clamp()
	case filterMsg:
		v.setFilter(msg.text)
	case accessChangedMsg:
		v.keys = newEventsKeys(v.d.readOnly())
	}
	return nil
}

func (v *eventsView) onKey(k tea.KeyPressMsg) {
	keys := &v.keys
	switch {
	case key.Matches(k, keys.ReadOnly):
		v.d.refuse()
	case key.Matches(k, keys.Back):
		if v.filter.text != "" {
			v.setFilter("")
		} else {
			v.d.send(showViewMsg{name: fleetViewName})
		}
	case v.move(k):
	case key.Matches(k, keys.Open):
		if e := v.current(); e != nil {
			v.d.send(showViewMsg{name: nodeViewName, arg: e.GetNodeId()})
		}
	case key.Matches(k, keys.Filter):
		v.d.send(openPromptMsg{prompt: newFilterPrompt(v.d, v.filter.text)})
	case key.Matches(k, keys.Provision):
		v.d.send(openOverlayMsg{overlay: newProvisionDialog(v.d)})
	}
}

func (v *eventsView) SetSize(width, height int) {
	v.width = width
	v.height = max(1, height-1)
}

func (v *eventsView) Hint() string {
	return plural(len(v.shown()), "event") + " (newest first)" + filterNote(v.filter.text)
}

func (v *eventsView) ShortHelp() []key.Binding {
	k, g := &v.keys, &v.d.keys
	return []key.Binding{k.Open, k.Filter, k.Back, g.Command, g.Help, g.Quit}
}

func (v *eventsView) FullHelp() [][]key.Binding {
	k, g := &v.keys, &v.d.keys
	return [][]key.Binding{
		append(k.navKeys.bindings(), k.Open, k.Back),
		[]key.Binding{k.Filter, g.Command, g.ViewKeys, g.Help, g.Quit},
		{k.Provision},
	}
}

func (v *eventsView) setFilter(s string) {
	v.filter = parseFilter(s)
	v.cursor, v.offset, v.moved = 0, 0, false
	v.remember(v.shown())
}

// eventKey identifies an event: its id, or for an event without one (the
// agent's, before the control plane numbered it) what it is made of.
func eventKey(e *fleetv1.HealthEvent) string {
	if id := e.GetId(); id != "" {
		return "id " + id
	}
	ts := e.GetTime()
	return fmt.Sprintf("%s|%d.%09d|%d|%d|%d|%s", e.GetNodeId(), ts.GetSeconds(), ts.GetNanos(), e.GetKind(), e.GetGpuIndex(), e.GetXid(), e.GetCause())
}

// remember notes the key of the event under the cursor.
func (v *eventsView) remember(evs []*fleetv1.HealthEvent) {
	if v.cursor < 0 || v.cursor >= len(evs) {
		v.selected, v.selEvent = "", nil
		return
	}
	if e := evs[v.cursor]; e != v.selEvent {
		v.selected, v.selEvent = eventKey(e), e
	}
}

// follow puts the cursor back on its event after events came or went; an
// event that is gone leaves the cursor where it was, within the list.
func (v *eventsView) follow(evs []*fleetv1.HealthEvent) {
	if v.moved && v.selected != "" && (v.cursor < 0 || v.cursor >= len(evs) || evs[v.cursor] != v.selEvent) {
		found := slices.Index(evs, v.selEvent)
		if found < 0 {
			// A snapshot brought new copies of the events.
			found = slices.IndexFunc(evs, func(e *fleetv1.HealthEvent) bool { return eventKey(e) == v.selected })
		}
		if found >= 0 {
			v.cursor = found
		}
	}
	v.cursor = max(0, min(v.cursor, len(evs)-1))
	v.remember(evs)
}

func (v *eventsView) shown() []*fleetv1.HealthEvent {
	if v.filter.empty() {
		return v.f.events
	}
	var out []*fleetv1.HealthEvent
	for _, e := range v.f.events {
		if v.match(e) {
			out = append(out, e)
		}
	}
	return out
}

func (v *eventsView) match(e *fleetv1.HealthEvent) bool {
	text := strings.ToLower(eventLine(&Theme{}, e, v.d.now(), len(e.GetNodeId()), 1000) + " " + e.GetMessage())
	for _, t := range v.filter.terms {
		if !strings.Contains(text, t.word) {
			return false
		}
	}
	for k, want := range v.filter.labels {
		if r, ok := v.f.rows[e.GetNodeId()]; !ok || r.label(k) != want {
			return false
		}
	}
	return true
}

// clamp follows the selected event after a change.
func (v *eventsView) clamp() { v.follow(v.shown()) }

func (v *eventsView) current() *fleetv1.HealthEvent {
	evs := v.shown()
	v.follow(evs)
	if v.cursor < 0 || v.cursor >= len(evs) {
		return nil
	}
	return evs[v.cursor]
}

func (v *eventsView) move(k tea.KeyPressMsg) bool {
	evs := v.shown()
	v.follow(evs)
	next, ok := v.keys.move(k, v.cursor, v.height, len(evs))
	if !ok {
		return false
	}
	v.moved = true
	v.cursor = next
	v.remember(evs)
	return true
}

// scroll moves the window over the n events shown so that the cursor is
// in it and it is full: after the list shrank or the terminal grew, the
// last event shown would otherwise leave blank rows under it while events
// hid above.
func (v *eventsView) scroll(n int) {
	v.offset = min(v.offset, v.cursor, max(0, n-v.height))
	v.offset = max(0, v.offset, v.cursor-v.height+1)
}

func (v *eventsView) View() string {
	t := v.d.theme
	width := v.width
	evs := v.shown()
	v.follow(evs)
	// The first column marks the cursor row with › so that it reads
	// without colour, as in the fleet table.
	lineW := width - 1
	if len(evs) == 0 {
		head := " " + t.Header.Render(truncate(eventHeader(4, lineW), lineW))
		msg := "no health events yet"
		if !v.filter.empty() {
			msg = "no event matches the filter " + v.filter.text + " (esc clears it)"
		}
		return head + "\n" + t.Muted.Render(msg)
	}
	v.scroll(len(evs))
	end := min(len(evs), v.offset+v.height)
	now := v.d.now()
	nodeW := 4
	for _, e := range evs[v.offset:end] {
		nodeW = max(nodeW, min(len(e.GetNodeId()), 28))
	}
	head := " " + t.Header.Render(truncate(eventHeader(nodeW, lineW), lineW))
	lines := []string{head}
	for i, e := range evs[v.offset:end] {
		if v.offset+i == v.cursor {
			lines = append(lines, "›"+t.Selected.Render(padRight(eventLine(&Theme{}, e, now, nodeW, lineW), lineW)))
			continue
		}
		lines = append(lines, " "+eventLine(t, e, now, nodeW, lineW))
	}
	return strings.Join(lines, "\n")
}
