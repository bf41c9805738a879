package lambda

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/secretfile"
	"github.com/navarch/navarch/internal/yamlfile"
)

// DefaultEndpoint is Lambda Cloud's public API.
const DefaultEndpoint = "https://cloud.lambdalabs.com/api/v1"

// APIKeyEnv is the environment variable the API key is read from when the
// configuration names no key file.
const APIKeyEnv = "LAMBDA_API_KEY"

// minPollInterval keeps Watch well inside Lambda's limit of about one
// request a second, which launches and terminations share.
const minPollInterval = 5 * time.Second

// Config is the lambda provider's section of the control plane's
// configuration, under the key lambda_provider. The API key is never in
// it: it comes from LAMBDA_API_KEY or the file APIKeyFile names.
type Config struct {
	// Enabled offers the provider.
	Enabled bool `yaml:"enabled"`
	// Endpoint is the API's base URL, https only: the key travels in
	// every request.
	Endpoint string `yaml:"endpoint"`
	// Regions are tried in order; one with no capacity for the instance
	// type is passed over. Empty means every region with capacity, by
	// name.
	Regions []string `yaml:"regions"`
	// InstanceType is launched unless a request names another.
	InstanceType string `yaml:"instance_type"`
	// SSHKeyNames names the account's SSH key every instance gets; Lambda
	// requires exactly one.
	SSHKeyNames []string `yaml:"ssh_key_names"`
	// FileSystemNames names a file system to attach (at most one, in the
	// region the instances start in).
	FileSystemNames []string `yaml:"file_system_names"`
	// APIKeyFile holds the API key, readable by its owner only; empty
	// means the environment variable LAMBDA_API_KEY.
	APIKeyFile string `yaml:"api_key_file"`
	// PollInterval is how often Watch lists the instances to notice ones
	// gone without the control plane stopping them.
	PollInterval yamlfile.Duration `yaml:"poll_interval"`
}

// DefaultConfig is the section's defaults.
func DefaultConfig() Config {
	return Config{
		Endpoint:     DefaultEndpoint,
		InstanceType: "gpu_8x_h100_sxm5",
		PollInterval: yamlfile.Duration{Duration: time.Minute},
	}
}

// On reports whether the provider is offered.
func (c *Config) On() bool { return c.Enabled }

// Validate checks the section; errors name the key within it.
func (c *Config) Validate() error {
	if err := checkEndpoint(c.Endpoint); err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	for i, r := range c.Regions {
		if strings.TrimSpace(r) == "" {
			return fmt.Errorf("regions[%d]: empty", i)
		}
		if slices.Index(c.Regions, r) != i {
			return fmt.Errorf("regions[%d]: %q is listed twice", i, r)
		}
	}
	if strings.TrimSpace(c.InstanceType) == "" {
		return errors.New("instance_type: empty")
	}
	if c.Enabled && len(c.SSHKeyNames) != 1 {
		return fmt.Errorf("ssh_key_names: Lambda Cloud takes exactly one SSH key name, and %d are given", len(c.SSHKeyNames))
	}
	if len(c.FileSystemNames) > 1 {
		return fmt.Errorf("file_system_names: Lambda Cloud attaches at most one file system at launch, and %d are given", len(c.FileSystemNames))
	}
	if c.PollInterval.Duration < minPollInterval {
		return fmt.Errorf("poll_interval: %s is under %s; Lambda Cloud allows about one request a second", c.PollInterval.Duration, minPollInterval)
	}
	return nil
}

func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q is not an https URL", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q holds credentials; the API key comes from %s or api_key_file", u.Redacted(), APIKeyEnv)
	}
	return nil
}

// Build makes the provider as configured, for the control plane whose
// cluster name env gives.
func Build(c Config, env provider.Env) (*Provider, error) {
	key, err := c.apiKey()
	if err != nil {
		return nil, err
	}
	return New(Options{
		Endpoint:        c.Endpoint,
		APIKey:          key,
		Cluster:         env.Cluster,
		Regions:         c.Regions,
		InstanceType:    c.InstanceType,
		SSHKeyNames:     c.SSHKeyNames,
		FileSystemNames: c.FileSystemNames,
		PollInterval:    c.PollInterval.Duration,
		Logger:          env.Logger,
	})
}

// maxAPIKeyFile bounds what is read of an API key file; a key is a few
// dozen bytes.
const maxAPIKeyFile = 64 << 10

// apiKey reads the key from APIKeyFile, refusing a file anyone but its
// owner may read or change (the key has full rights to the Lambda
// account), or else from the environment.
func (c *Config) apiKey() (string, error) {
	if c.APIKeyFile == "" {
		key := strings.TrimSpace(os.Getenv(APIKeyEnv))
		if key == "" {
			return "", fmt.Errorf("no API key: set %s or api_key_file", APIKeyEnv)
		}
		return key, nil
	}
	b, err := secretfile.Read(c.APIKeyFile, maxAPIKeyFile)
	if err != nil {
		return "", fmt.Errorf("api_key_file: %w", err)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("api_key_file: %s is empty", c.APIKeyFile)
	}
	return key, nil
}
