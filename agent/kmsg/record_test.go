package kmsg

import (
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name   string
		line   string
		want   Record
		wantOK bool
	}{
		{"plain", "4,1200,81000000,-;NVRM: hello\n", Record{Facility: 0, Level: 4, Seq: 1200, SinceBoot: 81 * time.Second, Text: "NVRM: hello"}, true},
		{"later-kernel-fields", "6,7,1,c,caller=T12;x", Record{Level: 6, Seq: 7, SinceBoot: time.Microsecond, Text: "x"}, true},
		{"without-flags", "3,9,0;old kernel", Record{Level: 3, Seq: 9, Text: "old kernel"}, true},
		{"userspace-facility", "14,5,10,-;from a program", Record{Facility: 1, Level: 6, Seq: 5, SinceBoot: 10 * time.Microsecond, Text: "from a program"}, true},
		{"escaped-newline-and-backslash", `4,1,0,-;a\x0ab\x5cc`, Record{Level: 4, Seq: 1, Text: `a?b\c`}, true},
		{"escaped-utf8", `4,1,0,-;caf\xc3\xa9`, Record{Level: 4, Seq: 1, Text: "café"}, true},
		{"escaped-invalid-utf8", `4,1,0,-;bad\xff`, Record{Level: 4, Seq: 1, Text: "bad?"}, true},
		{"unfinished-escape", `4,1,0,-;end\x4`, Record{Level: 4, Seq: 1, Text: `end\x4`}, true},
		{"empty-text", "4,1,0,-;", Record{Level: 4, Seq: 1}, true},
		{"no-semicolon", "4,1,0,- no text", Record{}, false},
		{"too-few-fields", "4,1;text", Record{}, false},
		{"bad-priority", "x,1,0,-;text", Record{}, false},
		{"bad-sequence", "4,-1,0,-;text", Record{}, false},
		{"negative-time", "4,1,-5,-;text", Record{}, false},
		{"dictionary-line", " SUBSYSTEM=pci", Record{}, false},
		{"empty", "", Record{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseRecord(tt.line)
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("ParseRecord(%q) = %+v, %v; want %+v, %v", tt.line, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseRecordCutsOverlongText(t *testing.T) {
	got, ok := ParseRecord("4,1,0,-;" + strings.Repeat("é", maxText))
	if !ok || len(got.Text) > maxText || !strings.HasPrefix(got.Text, "éé") || strings.ContainsRune(got.Text, '\uFFFD') {
		t.Fatalf("text of %d bytes (%v): cut to %d bytes, want at most %d on a rune boundary", 2*maxText, ok, len(got.Text), maxText)
	}
}
