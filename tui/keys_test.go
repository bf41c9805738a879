package tui

import (
	"testing"

	tea "charm.land/bubbletea/v2"
)

func TestNavKeysMove(t *testing.T) {
	tests := []struct {
		name           string
		key            string
		cursor, page   int
		rows, want     int
		wantNavigation bool
	}{
		{name: "down", key: "j", cursor: 2, page: 4, rows: 10, want: 3, wantNavigation: true},
		{name: "up", key: "k", cursor: 2, page: 4, rows: 10, want: 1, wantNavigation: true},
		{name: "up-at-top-stays", key: "up", cursor: 0, page: 4, rows: 10, want: 0, wantNavigation: true},
		{name: "down-at-bottom-stays", key: "down", cursor: 9, page: 4, rows: 10, want: 9, wantNavigation: true},
		{name: "page-down", key: "ctrl+f", cursor: 2, page: 4, rows: 10, want: 6, wantNavigation: true},
		{name: "page-down-stops-at-last", key: "ctrl+f", cursor: 8, page: 4, rows: 10, want: 9, wantNavigation: true},
		{name: "page-up-stops-at-first", key: "ctrl+b", cursor: 2, page: 4, rows: 10, want: 0, wantNavigation: true},
		{name: "top", key: "g", cursor: 7, page: 4, rows: 10, want: 0, wantNavigation: true},
		{name: "bottom", key: "G", cursor: 1, page: 4, rows: 10, want: 9, wantNavigation: true},
		{name: "no-rows", key: "G", cursor: 0, page: 4, rows: 0, want: 0, wantNavigation: true},
		{name: "other-key", key: "c", cursor: 3, page: 4, rows: 10, want: 3},
	}
	keys := newNavKeys()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := keys.move(navPress(tt.key), tt.cursor, tt.page, tt.rows)
			if got != tt.want || ok != tt.wantNavigation {
				t.Errorf("move(%q, %d, %d, %d) = %d, %v; want %d, %v", tt.key, tt.cursor, tt.page, tt.rows, got, ok, tt.want, tt.wantNavigation)
			}
		})
	}
}

// navPress is press, with the paging keys too.
func navPress(k string) tea.KeyPressMsg {
	switch k {
	case "ctrl+f":
		return tea.KeyPressMsg{Code: 'f', Mod: tea.ModCtrl}
	case "ctrl+b":
		return tea.KeyPressMsg{Code: 'b', Mod: tea.ModCtrl}
	}
	return press(k)
}

func TestWindowStart(t *testing.T) {
	tests := []struct {
		name                         string
		cursor, offset, height, rows int
		want                         int
	}{
		{name: "cursor-in-window", cursor: 5, offset: 3, height: 4, rows: 20, want: 3},
		{name: "cursor-above", cursor: 1, offset: 3, height: 4, rows: 20, want: 1},
		{name: "cursor-below", cursor: 9, offset: 3, height: 4, rows: 20, want: 6},
		{name: "rows-shrank", cursor: 7, offset: 6, height: 4, rows: 8, want: 4},
		{name: "fewer-rows-than-height", cursor: 2, offset: 1, height: 10, rows: 3, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := windowStart(tt.cursor, tt.offset, tt.height, tt.rows); got != tt.want {
				t.Errorf("windowStart(%d, %d, %d, %d) = %d, want %d", tt.cursor, tt.offset, tt.height, tt.rows, got, tt.want)
			}
		})
	}
}
