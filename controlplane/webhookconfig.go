package controlplane

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/navarch/navarch/controlplane/webhook"
)

// WebhookConfig is one webhook endpoint.
type WebhookConfig struct {
	// URL is where events are POSTed: https, or http on loopback only.
	URL string `yaml:"url"`
	// SecretFile holds the shared secret the body is signed with,
	// readable by its owner only. The secret is never in the config.
	SecretFile string `yaml:"secret_file"`
	// Events are the event types sent (lifecycle, health, breaker);
	// empty means all.
	Events []string `yaml:"events"`
	// CAFile is a PEM file of CAs to trust for URL besides the system's.
	CAFile string `yaml:"ca_file"`
}

// checkWebhooks checks each webhook's URL and event types. A signed body
// still tells an eavesdropper about the fleet, so it goes over plain HTTP
// only to this machine.
func (c *Config) checkWebhooks() error {
	for i, w := range c.Webhooks {
		u, err := url.Parse(w.URL)
		switch {
		case err != nil || u.Host == "":
			return fmt.Errorf("webhooks[%d].url: %q is not a URL", i, w.URL)
		case u.Scheme == "http" && !loopback(u.Hostname()):
			return fmt.Errorf("webhooks[%d].url: %s is plain http to a host not on loopback; use https", i, w.URL)
		case u.Scheme != "https" && u.Scheme != "http":
			return fmt.Errorf("webhooks[%d].url: %s is not https", i, w.URL)
		case w.SecretFile == "":
			return fmt.Errorf("webhooks[%d].secret_file: must be set; events are signed with the secret in it", i)
		}
		for j, e := range w.Events {
			if !slices.Contains(webhook.Types, e) {
				return fmt.Errorf("webhooks[%d].events[%d]: %q is not one of %s", i, j, e, strings.Join(webhook.Types, ", "))
			}
		}
	}
	return nil
}

// webhookEndpoints reads each webhook's secret, for the dispatcher.
func (c *Config) webhookEndpoints() ([]webhook.Endpoint, error) {
	out := make([]webhook.Endpoint, 0, len(c.Webhooks))
	for i, w := range c.Webhooks {
		secret, err := webhook.ReadSecret(w.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("webhooks[%d].secret_file: %w", i, err)
		}
		out = append(out, webhook.Endpoint{URL: w.URL, Secret: secret, Events: w.Events, CAFile: w.CAFile})
	}
	return out, nil
}
