package tui

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
)

// TestFooterAlwaysOffersHelpAndQuit: however narrow the terminal, in every
// view, the last line ends with the help and quit keys.
func TestFooterAlwaysOffersHelpAndQuit(t *testing.T) {
	m := newPoolModel(t, Options{})
	for _, width := range []int{160, 100, 80, 60, 40} {
		send(m, tea.WindowSizeMsg{Width: width, Height: 24})
		for _, keys := range [][]tea.Msg{keysOf("1"), keysOf("2"), keysOf("3"), keysOf("3", "enter")} {
			send(m, keys...)
			lines := strings.Split(plain(m), "\n")
			if last := lines[len(lines)-1]; !strings.HasSuffix(last, "? help  q quit") {
				t.Fatalf("width %d, view %s: footer %q", width, m.active, last)
			}
		}
	}
}

// TestHelpFitsSmallTerminal: at 80 × 24 the help overlay is whole, border
// to border, with every binding.
func TestHelpFitsSmallTerminal(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24}, press("?"))
	f := plain(m)
	for i, l := range strings.Split(f, "\n") {
		if w := len([]rune(l)); w > 80 || strings.HasSuffix(l, "…") {
			t.Fatalf("line %d cut or too wide (%d): %q", i, w, l)
		}
	}
	mustContain(t, f, "╭", "╰", "run diagnostics", "provision…", "reverse sort", "? or esc closes help")
}

// TestHelpKeepsTheNote: the line the console was opened with (the demo's
// way in from another terminal) stays in sight in help, at 80×24 too.
func TestHelpKeepsTheNote(t *testing.T) {
	note := "from another terminal: navarch --server 127.0.0.1:41234 --ca-cert /home/op/.demo/pki/ca.crt --token $(cat /home/op/.demo/admin.token)"
	for _, size := range []tea.WindowSizeMsg{{Width: 80, Height: 24}, {Width: 200, Height: 60}} {
		m := newTestModel(t, Options{Note: note})
		send(m, size, press("?"))
		f := plain(m)
		mustContain(t, f, "╭", "╰", "? or esc closes help")
		if flat := strings.Join(strings.Fields(strings.ReplaceAll(f, "│", " ")), " "); !strings.Contains(flat, note) {
			t.Fatalf("%dx%d: help lacks the note:\n%s", size.Width, size.Height, f)
		}
	}
}

// TestStatusLineExpires: an action's result shows for a while, then the
// view's hint returns; errors stay longer.
func TestStatusLineExpires(t *testing.T) {
	at := now
	m := newTestModel(t, Options{Now: func() time.Time { return at }})
	send(m, statusLineMsg{text: "cordoned gpu-a01"})
	mustContain(t, m.Frame(), "cordoned gpu-a01")
	at = at.Add(statusShown)
	send(m, tickMsg(at))
	if strings.Contains(plain(m), "cordoned gpu-a01") {
		t.Fatal("status line still shown after it expired")
	}
	mustContain(t, m.Frame(), "5 of 5 nodes")
	send(m, statusLineMsg{text: "cordon failed: node is TERMINATED", err: true})
	at = at.Add(statusShown)
	send(m, tickMsg(at))
	mustContain(t, m.Frame(), "cordon failed")
	at = at.Add(statusErrShown)
	send(m, tickMsg(at))
	if strings.Contains(plain(m), "cordon failed") {
		t.Fatal("error still shown after it expired")
	}
}

// TestOverlayDrawsOverTheView: a dialog is drawn over the fleet table,
// not in its place: the rows above it and the ends of the row it covers
// stay on screen, the frame keeps the terminal's size, and in colour the
// cells are the same as without, so no style leaks into the box or out of
// it.
func TestOverlayDrawsOverTheView(t *testing.T) {
	// At 60 columns the dialog's hint takes two lines: 22 rows leave
	// gpu-a02 above it.
	for _, size := range [][2]int{{80, 24}, {120, 40}, {60, 22}} {
		colour := newTestModel(t, Options{Theme: NewTheme(true, true)})
		mono := newTestModel(t, Options{})
		for _, m := range []*Model{colour, mono} {
			send(m, tea.WindowSizeMsg{Width: size[0], Height: size[1]}, press("d"))
		}
		f := plain(mono)
		mustContain(t, f, "Drain gpu-a01", "NODE▲", "› gpu-a01", "gpu-a02  CORDONED", "╰", "5 of 5 nodes")
		checkFits(t, mono, size[0], size[1])
		if got := ansi.Strip(colour.Frame()); got != f {
			t.Fatalf("%dx%d: in colour the frame reads\n%s\nwithout colour\n%s", size[0], size[1], got, f)
		}
		send(mono, press("esc"))
		if strings.Contains(plain(mono), "Drain") {
			t.Fatal("esc left the dialog on screen")
		}
	}
}

// TestOverlayOnKeepsTheWidth: under a box whose edges fall in the middle
// of wide characters, every line stays within the terminal's width, the
// box is whole, and what is on either side of it stays in its columns.
func TestOverlayOnKeepsTheWidth(t *testing.T) {
	row := strings.Repeat("日本", 5) // 20 cells
	base := strings.Join([]string{row, row, row}, "\n")
	box := "╭────╮\n│ ok │\n╰────╯" // 6 cells, from cell 7 to 13
	out := strings.Split(overlayOn(NewTheme(true, false), base, 0, 3, box, 20), "\n")
	for i, l := range out {
		if w := ansi.StringWidth(l); w > 20 {
			t.Errorf("line %d is %d cells: %q", i, w, l)
		}
	}
	if got := ansi.Strip(out[1]); got != "日本日 │ ok │ 本日本" {
		t.Errorf("the box's row reads %q", got)
	}
}
