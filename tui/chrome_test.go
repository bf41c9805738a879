package tui

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
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
