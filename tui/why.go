package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// why is what the fleet table's WHY column says of a node: its worst
// fault and the remedy for it, worked out when the node changes so that a
// frame only cuts it to width.
type why struct {
	cause  string // one line; "" for a node with nothing wrong
	remedy fleetv1.Remedy
	width  int // cells of cause
}

// whySep joins cause and remedy; it reads without colour.
const whySep = " → "

// whyOf reads a node's cause and remedy as the stream carries them, with
// its GPUs. The control plane writes the cause as "gpu2: <the fault's
// meaning>"; where that GPU's worst fault is an XID the code goes in after
// the GPU, since the code is what operators search for: "gpu2 XID 79: GPU
// has fallen off the bus".
func whyOf(healthCause string, remedy fleetv1.Remedy, gpus []gpuState) why {
	cause := display.CleanText(display.FirstLine(healthCause), "")
	if cause == "" {
		return why{}
	}
	var index uint32
	if _, err := fmt.Sscanf(cause, "gpu%d:", &index); err == nil {
		for _, g := range gpus {
			if g.index != index || !g.faulted {
				continue
			}
			if g.kind == fleetv1.EventKind_EVENT_KIND_XID && g.xid != 0 {
				head, rest, _ := strings.Cut(cause, ":")
				cause = fmt.Sprintf("%s XID %d:%s", head, g.xid, rest)
			}
			break
		}
	}
	return why{cause: cause, remedy: remedy, width: ansi.StringWidth(cause)}
}

// hasRemedy reports whether there is an action to suggest.
func (w why) hasRemedy() bool {
	return w.remedy != fleetv1.Remedy_REMEDY_UNSPECIFIED && w.remedy != fleetv1.Remedy_REMEDY_NONE
}

// shortWidth is the cells the cause and the short remedy take whole; the
// table drops other columns before it cuts either.
func (w why) shortWidth() int {
	if !w.hasRemedy() {
		return w.width
	}
	return w.width + ansi.StringWidth(whySep) + ansi.StringWidth(display.ShortRemedy(w.remedy))
}

// fullWidth is the cells the cause and the remedy in words take.
func (w why) fullWidth() int {
	if !w.hasRemedy() {
		return w.width
	}
	return w.width + ansi.StringWidth(whySep) + ansi.StringWidth(display.Remedy(w.remedy))
}

// minCause is the fewest cells of cause worth showing beside a remedy.
const minCause = 5

// text is the WHY cell's text in at most width cells. The remedy is what
// to do, so it goes last and is cut last: the remedy in words where it
// fits, else its short name, with the cause cut at a word to make room;
// in a cell too narrow even for that, the remedy alone.
func (w why) text(width int) (cause, remedy string) {
	if w.cause == "" {
		return "-", ""
	}
	if !w.hasRemedy() {
		return cutWords(w.cause, width), ""
	}
	if w.fullWidth() <= width {
		return w.cause, whySep + display.Remedy(w.remedy)
	}
	short := display.ShortRemedy(w.remedy)
	room := width - ansi.StringWidth(whySep+short)
	switch {
	case w.width <= room:
		return w.cause, whySep + short
	case room >= minCause:
		return cutWords(w.cause, room), whySep + short
	}
	return "", truncate("→ "+short, width)
}

// cutWords cuts s to width cells with an ellipsis, at the end of a word
// where one ends near enough, so "GPU has fallen off the bus" becomes
// "GPU has fallen…" rather than "GPU has fall…".
func cutWords(s string, width int) string {
	if ansi.StringWidth(s) <= width {
		return s
	}
	cut := ansi.Truncate(s, width-1, "")
	ended := strings.HasPrefix(s[len(cut):], " ")
	if i := strings.LastIndexByte(cut, ' '); i > 0 && !ended && ansi.StringWidth(cut[i:]) <= 8 {
		cut = cut[:i]
	}
	return strings.TrimRight(cut, " :,") + "…"
}

// compareWhy orders nodes with a fault first, alike causes together.
func compareWhy(a, b why) int {
	switch {
	case a.cause == "" && b.cause != "":
		return 1
	case a.cause != "" && b.cause == "":
		return -1
	}
	return strings.Compare(a.cause, b.cause)
}
