package tui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// eventsView lists the fleet's health events, newest first, with the same
// filter syntax as the fleet view (text matches node, kind and cause).
type eventsView struct {
	d      *deps
	f      *fleet
	filter filter
	cursor int
	offset int
	height int
}

func newEventsView(d *deps, f *fleet) *eventsView { return &eventsView{d: d, f: f, height: 10} }

func (v *eventsView) setFilter(s string) {
	v.filter = parseFilter(s)
	v.cursor, v.offset = 0, 0
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
		if !strings.Contains(text, t) {
			return false
		}
	}
	for k, want := range v.filter.labels {
		if r, ok := v.f.rows[e.GetNodeId()]; !ok || r.node.GetLabels()[k] != want {
			return false
		}
	}
	return true
}

func (v *eventsView) clamp() {
	v.cursor = max(0, min(v.cursor, len(v.shown())-1))
}

func (v *eventsView) current() *fleetv1.HealthEvent {
	evs := v.shown()
	if v.cursor < 0 || v.cursor >= len(evs) {
		return nil
	}
	return evs[v.cursor]
}

func (v *eventsView) move(k tea.KeyPressMsg) bool {
	keys := &v.d.keys
	switch {
	case key.Matches(k, keys.Up):
		v.cursor--
	case key.Matches(k, keys.Down):
		v.cursor++
	case key.Matches(k, keys.PageUp):
		v.cursor -= v.height
	case key.Matches(k, keys.PageDown):
		v.cursor += v.height
	case key.Matches(k, keys.Top):
		v.cursor = 0
	case key.Matches(k, keys.Bottom):
		v.cursor = len(v.shown()) - 1
	default:
		return false
	}
	v.clamp()
	return true
}

func (v *eventsView) view(width, height int) string {
	t := v.d.theme
	evs := v.shown()
	v.height = max(1, height-1)
	if len(evs) == 0 {
		head := t.Header.Render(truncate(eventHeader(4, width), width))
		msg := "no health events yet"
		if !v.filter.empty() {
			msg = "no event matches the filter " + v.filter.text + " (esc clears it)"
		}
		return head + "\n" + t.Muted.Render(msg)
	}
	if v.cursor < v.offset {
		v.offset = v.cursor
	}
	if v.cursor >= v.offset+v.height {
		v.offset = v.cursor - v.height + 1
	}
	end := min(len(evs), v.offset+v.height)
	now := v.d.now()
	nodeW := 4
	for _, e := range evs[v.offset:end] {
		nodeW = max(nodeW, min(len(e.GetNodeId()), 28))
	}
	head := t.Header.Render(truncate(eventHeader(nodeW, width), width))
	lines := []string{head}
	for i, e := range evs[v.offset:end] {
		if v.offset+i == v.cursor {
			lines = append(lines, t.Selected.Render(padRight(eventLine(&Theme{}, e, now, nodeW, width), width)))
			continue
		}
		lines = append(lines, eventLine(t, e, now, nodeW, width))
	}
	return strings.Join(lines, "\n")
}
