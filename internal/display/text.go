package display

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// CleanText makes text from outside Navarch (a driver's line, a process
// name, a tool's output) safe to report and show: invalid UTF-8 and every
// control character become '?', except the characters in keep.
func CleanText(s, keep string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && !strings.ContainsRune(keep, r) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// Cut cuts s to at most n bytes at a character boundary; a string it cut
// ends with mark, which the n bytes include.
func Cut(s string, n int, mark string) string {
	if len(s) <= n {
		return s
	}
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// OneLine makes text from outside Navarch one line of at most n bytes:
// every run of white space, line breaks and tabs included, becomes one
// space, other control characters '?', and a cut line ends with "…".
func OneLine(s string, n int) string {
	return Cut(strings.Join(strings.Fields(CleanText(s, "\t\n\r\v\f")), " "), n, "…")
}
