package tui

import (
	"fmt"
	"strings"
	"time"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/navarch/navarch/internal/display"
)

// truncate cuts s (which may hold styles) to width cells, with an ellipsis.
func truncate(s string, width int) string {
	if width <= 0 {
		return ""
	}
	return ansi.Truncate(s, width, "…")
}

// padRight pads plain text to width cells, or truncates it.
func padRight(s string, width int) string {
	w := lipgloss.Width(s)
	if w > width {
		return truncate(s, width)
	}
	return s + strings.Repeat(" ", width-w)
}

// padLeft right-aligns plain text in width cells.
func padLeft(s string, width int) string {
	w := lipgloss.Width(s)
	if w > width {
		return truncate(s, width)
	}
	return strings.Repeat(" ", width-w) + s
}

// plural is n and the noun, plural unless n is 1: "1 node", "2 nodes". The
// noun may be a phrase whose last word takes the plural: "1 marked node".
func plural[N int | uint32 | uint64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprint(n) + " " + noun + "s"
}

// windowStart is the first of rows rows to draw, height at a time, so
// that the cursor stays in sight: the window moves only as far as it must,
// and never past the last row.
func windowStart(cursor, offset, height, rows int) int {
	if cursor < offset {
		offset = cursor
	}
	if cursor >= offset+height {
		offset = cursor - height + 1
	}
	return max(0, min(offset, rows-height))
}

// fit makes s exactly height lines of at most width cells each.
func fit(s string, width, height int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > height {
		lines = lines[:height]
	}
	for i, l := range lines {
		if lipgloss.Width(l) > width {
			lines[i] = truncate(l, width)
		}
	}
	for len(lines) < height {
		lines = append(lines, "")
	}
	return strings.Join(lines, "\n")
}

// place centres a block in a width × height area.
func place(width, height int, block string) string {
	return lipgloss.Place(width, height, lipgloss.Center, lipgloss.Center, block)
}

// joinEnds puts left and right on one line of width cells.
func joinEnds(left, right string, width int) string {
	gap := width - lipgloss.Width(left) - lipgloss.Width(right)
	if gap < 1 {
		return truncate(left, width)
	}
	return left + strings.Repeat(" ", gap) + right
}

// wrapSegments joins segments with sep, starting a new line where the next
// segment would pass width.
func wrapSegments(segs []string, sep string, width int) []string {
	var lines []string
	cur := ""
	for _, s := range segs {
		switch {
		case cur == "":
			cur = s
		case lipgloss.Width(cur)+lipgloss.Width(sep)+lipgloss.Width(s) <= width:
			cur += sep + s
		default:
			lines = append(lines, truncate(cur, width))
			cur = s
		}
	}
	if cur != "" {
		lines = append(lines, truncate(cur, width))
	}
	return lines
}

func ageSince(t, now time.Time) string { return display.Age(t, now) }

// sparkline draws values (0–max) as block characters, newest on the right.
func sparkline(values []uint32, maxValue uint32, width int) string {
	const blocks = "▁▂▃▄▅▆▇█"
	runes := []rune(blocks)
	if len(values) > width {
		values = values[len(values)-width:]
	}
	var sb strings.Builder
	for range width - len(values) {
		sb.WriteByte(' ')
	}
	for _, v := range values {
		i := 0
		if maxValue > 0 {
			i = int(min(v, maxValue) * uint32(len(runes)-1) / maxValue)
		}
		sb.WriteRune(runes[i])
	}
	return sb.String()
}

// tsTime reads a timestamp, with the zero time for an unset one.
func tsTime(ts interface {
	AsTime() time.Time
	IsValid() bool
}) time.Time {
	if ts == nil || !ts.IsValid() {
		return time.Time{}
	}
	return ts.AsTime()
}
