package static

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/url"
	"slices"
	"strings"
)

// redacted stands in for a username or password in a BMC's words.
const redacted = "[redacted]"

// redactor takes a BMC account's username and password out of text the
// BMC wrote, which goes into errors that are logged and returned to API
// callers: a BMC that refuses a login may quote what it was sent, as
// Redfish's PropertyValueFormatError quotes the value. Each is taken out
// as sent and as a BMC may have escaped it (JSON, HTML, URL), and so is
// the basic authentication header's value.
func redactor(c Credentials) *strings.Replacer {
	var forms []string
	for _, s := range []string{c.Password, c.Username} {
		if s == "" {
			continue
		}
		forms = append(forms, s, jsonEscaped(s, true), jsonEscaped(s, false), html.EscapeString(s), url.QueryEscape(s), url.PathEscape(s))
	}
	if c.Password != "" {
		forms = append(forms, base64.StdEncoding.EncodeToString([]byte(c.Username+":"+c.Password)))
	}
	// The replacer tries its strings in order at each place: the longest
	// first, so that no part of a longer form is left behind.
	slices.SortFunc(forms, func(a, b string) int { return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b)) })
	forms = slices.Compact(forms)
	pairs := make([]string, 0, 2*len(forms))
	for _, f := range forms {
		pairs = append(pairs, f, redacted)
	}
	return strings.NewReplacer(pairs...)
}

// jsonEscaped is s as it stands inside a JSON string.
func jsonEscaped(s string, escapeHTML bool) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(escapeHTML)
	_ = enc.Encode(s) // a string always encodes
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(buf.String(), "\n"), `"`), `"`)
}
