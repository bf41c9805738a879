package tui

// layout is the widths of the columns that fit; 0 hides a column.
type layout [numColumns]int

// wants is what the rows in sight ask of the table's widths.
type wants struct {
	id, gpus, pool int
	// why is the widest cause with its short remedy, whyFull with its
	// remedy in words; 0 when no row in sight has anything wrong.
	why, whyFull int
}

const (
	// whyMin is the narrowest WHY column worth drawing.
	whyMin = 4
	// whyRoom is as much of WHY as other columns give way for: a cause
	// cut to a few words and a short remedy. Past it WHY takes only what
	// is left, so a wide-enough terminal keeps its UTIL, HOT and SEEN.
	whyRoom = 24
)

// fitColumns gives NODE what it needs, the fixed columns their width, POOL
// the widest pool name shown (none when no node shown is in a pool), WHY
// the widest cause and remedy shown, and LABELS the rest. The WHY column
// answers why a node needs attention and what to do, so on a narrow
// terminal the rest gives way before it is cut below whyRoom: long node
// ids shorten to 16, then LABELS, POOL, SEEN, HOT and UTIL drop, and only
// then is the cause cut further, the remedy last of all. NODE shortens
// further only when even that does not fit. With nothing wrong in sight,
// WHY shows only where LABELS keep room.
func fitColumns(width int, w wants) layout {
	l := layout{
		// UTIL and SEEN fit their sort arrow: "UTIL▲".
		colNode: max(8, min(w.id, 28)), colLifecycle: 12, colHealth: 9, colReach: 7,
		colGPUs: max(4, min(w.gpus, 16)), colUtil: 5, colHot: 4, colSeen: 5,
	}
	if w.pool > 0 {
		l[colPool] = max(5, min(w.pool, 16))
	}
	used := 2 // the mark column
	for c := range numColumns {
		if l[c] > 0 {
			used += l[c] + 1
		}
	}
	// The room WHY asks for before other columns give way.
	need := 0
	if w.why > 0 {
		need = max(whyMin, min(w.why, whyRoom)) + 1
	}
	if over := used + need - width; over > 0 && l[colNode] > 16 {
		cut := min(over, l[colNode]-16)
		l[colNode] -= cut
		used -= cut
	}
	for _, drop := range []column{colPool, colSeen, colHot, colUtil} {
		if used+need <= width {
			break
		}
		if l[drop] > 0 {
			used -= l[drop] + 1
			l[drop] = 0
		}
	}
	if over := used + min(need, whyMin+1) - width; over > 0 {
		cut := min(over, l[colNode]-6)
		l[colNode] -= cut
		used -= cut
	}
	rest := width - used - 1 // for WHY and LABELS, a space apart
	switch {
	case w.why > 0:
		l[colWhy] = min(max(whyMin, w.whyFull), rest)
	case rest >= whyMin+1+20:
		l[colWhy] = whyMin
	}
	if l[colWhy] < whyMin {
		l[colWhy] = 0
	}
	if l[colWhy] > 0 {
		rest -= l[colWhy] + 1
	}
	if rest >= 6 {
		l[colLabels] = rest
	}
	return l
}

// fitWindow fits the columns to the rows in window; withPool shows their
// pools, where any has one.
func fitWindow(width int, window []*row, withPool bool) layout {
	w := wants{id: 4, gpus: 4}
	for _, r := range window {
		w.id = max(w.id, len(r.id))
		w.gpus = max(w.gpus, len(r.glyphs))
		if withPool {
			w.pool = max(w.pool, len(r.pool))
		}
		if r.why.cause != "" {
			w.why = max(w.why, r.why.shortWidth())
			w.whyFull = max(w.whyFull, r.why.fullWidth())
		}
	}
	return fitColumns(width, w)
}
