// Package endpoint checks the API endpoints a configuration may point a
// cloud provider at, for an API-compatible cloud or a test server. What
// goes there is signed with the account's keys or carries its tokens, and
// launches carry each node's join token, so none of it may cross the
// network in the clear.
package endpoint

import (
	"fmt"
	"net"
	"net/url"
)

// Check allows an https URL, or plain http on loopback alone (a test
// server or a local emulator), and no credentials in the URL: a provider
// finds its own. An empty endpoint, the provider's default, passes.
func Check(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil || u.Host == "":
		return fmt.Errorf("%q is not a URL such as https://api.example.net", endpoint)
	case u.User != nil:
		return fmt.Errorf("%q holds credentials; the provider finds its own, so leave them out", u.Redacted())
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q is neither https nor plain http on loopback", endpoint)
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}
