package gcp

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/api/option"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/endpoint"
	"github.com/navarch/navarch/internal/secretfile"
)

// Config is the gcp provider's section of the control plane's
// configuration, under the key gcp_provider. It holds no credentials:
// those come from CredentialsFile or Application Default Credentials.
type Config struct {
	// Enabled offers the provider.
	Enabled bool `yaml:"enabled"`
	// Project is the Google Cloud project the instances run in.
	Project string `yaml:"project"`
	// Zones are tried in order; a zone with no capacity for the machine
	// type moves the launch on to the next. A pool's zones narrow and
	// reorder them.
	Zones []string `yaml:"zones"`
	// MachineType is the default machine type, such as a3-highgpu-8g.
	MachineType string `yaml:"machine_type"`
	// Accelerators are GPUs attached to machine types that take them (n1
	// with nvidia-tesla-t4); a2, a3 and g2 machine types have theirs built
	// in and need none.
	Accelerators []Accelerator `yaml:"accelerators"`
	// Image is the boot disk's source image: an image or an image family,
	// by URL (projects/P/global/images/family/F). It must run cloud-init,
	// which reads the user data from the instance's metadata.
	Image string `yaml:"image"`
	// DiskSizeGB is the boot disk's size.
	DiskSizeGB int64 `yaml:"disk_size_gb"`
	// DiskType is the boot disk's type, such as pd-balanced.
	DiskType string `yaml:"disk_type"`
	// Network and Subnetwork place the instance, by name or URL; both
	// empty means the project's default network.
	Network    string `yaml:"network"`
	Subnetwork string `yaml:"subnetwork"`
	// ExternalIP gives each instance an ephemeral public address. Turn it
	// off where the subnetwork reaches the control plane and the agent's
	// package through Cloud NAT or a private route.
	ExternalIP bool `yaml:"external_ip"`
	// NICType is the network interface's type, GVNIC or VIRTIO_NET; empty
	// leaves it to Compute Engine.
	NICType string `yaml:"nic_type"`
	// ServiceAccount is the email of the service account the instances
	// run as, with Scopes (default cloud-platform); empty attaches none.
	ServiceAccount string   `yaml:"service_account"`
	Scopes         []string `yaml:"scopes"`
	// Spot launches Spot VMs, which Compute Engine deletes when it
	// reclaims them.
	Spot bool `yaml:"spot"`
	// Labels are put on every instance and its boot disk besides the
	// provider's own.
	Labels map[string]string `yaml:"labels"`
	// Endpoint overrides the Compute Engine API's address, for tests: an
	// https URL (plain http on loopback only), under which the API's paths
	// (/compute/v1/projects/...) are served; empty means Google's.
	Endpoint string `yaml:"endpoint"`
	// CredentialsFile is a service account key file; empty means
	// Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
	// gcloud's, then the metadata server).
	CredentialsFile string `yaml:"credentials_file"`
	// PollInterval is how often the provider lists its instances to
	// notice ones that stopped or were reclaimed.
	PollInterval time.Duration `yaml:"poll_interval"`
}

// Accelerator is one kind of GPU attached to each instance.
type Accelerator struct {
	// Type is the accelerator type, such as nvidia-tesla-t4.
	Type string `yaml:"type"`
	// Count is how many of them.
	Count int64 `yaml:"count"`
}

// DefaultConfig is the section's defaults.
func DefaultConfig() Config {
	return Config{
		MachineType:  "a3-highgpu-8g",
		DiskSizeGB:   200,
		DiskType:     "pd-balanced",
		ExternalIP:   true,
		PollInterval: 30 * time.Second,
	}
}

// On reports whether the provider is offered.
func (c *Config) On() bool { return c.Enabled }

// Validate checks the section; errors name the key within it. The
// project, zones and image are needed only when the provider is enabled.
func (c *Config) Validate() error { return c.check(c.Enabled) }

// Compute Engine's rules for names (zones, types, instances) and labels.
var (
	nameRE       = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	labelKeyRE   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[a-z0-9_-]{0,63}$`)
	emailRE      = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)
)

func (c *Config) check(enabled bool) error {
	if enabled {
		switch {
		case c.Project == "":
			return errors.New("project: required when the provider is enabled")
		case len(c.Zones) == 0:
			return errors.New("zones: at least one zone is required when the provider is enabled")
		case c.Image == "":
			return errors.New("image: required when the provider is enabled (an image or image family URL)")
		}
	}
	for i, z := range c.Zones {
		if !nameRE.MatchString(z) || !strings.Contains(z, "-") {
			return fmt.Errorf("zones[%d]: %q is not a zone name such as us-central1-a", i, z)
		}
		if slices.Index(c.Zones, z) != i {
			return fmt.Errorf("zones[%d]: %q is listed twice", i, z)
		}
	}
	if !nameRE.MatchString(c.MachineType) {
		return fmt.Errorf("machine_type: %q is not a machine type name", c.MachineType)
	}
	for i, a := range c.Accelerators {
		if !nameRE.MatchString(a.Type) {
			return fmt.Errorf("accelerators[%d].type: %q is not an accelerator type name", i, a.Type)
		}
		if a.Count < 1 || a.Count > 16 {
			return fmt.Errorf("accelerators[%d].count: %d is not within 1–16", i, a.Count)
		}
	}
	if c.DiskSizeGB < 10 || c.DiskSizeGB > 65536 {
		return fmt.Errorf("disk_size_gb: %d is not within 10–65536", c.DiskSizeGB)
	}
	if !nameRE.MatchString(c.DiskType) {
		return fmt.Errorf("disk_type: %q is not a disk type name", c.DiskType)
	}
	switch c.NICType {
	case "", "GVNIC", "VIRTIO_NET":
	default:
		return fmt.Errorf("nic_type: %q is not GVNIC or VIRTIO_NET", c.NICType)
	}
	if c.ServiceAccount != "" && !emailRE.MatchString(c.ServiceAccount) {
		return fmt.Errorf("service_account: %q is not a service account email", c.ServiceAccount)
	}
	if c.ServiceAccount == "" && len(c.Scopes) > 0 {
		return errors.New("scopes: set without service_account, so no account would have them")
	}
	for k, v := range c.Labels {
		if !labelKeyRE.MatchString(k) {
			return fmt.Errorf("labels: key %q is not a label key (a lowercase letter, then up to 62 of a-z, 0-9, _ and -)", k)
		}
		if strings.HasPrefix(k, "navarch-") {
			return fmt.Errorf("labels: key %q: navarch- keys are the provider's own", k)
		}
		if !labelValueRE.MatchString(v) {
			return fmt.Errorf("labels.%s: %q is not a label value (up to 63 of a-z, 0-9, _ and -)", k, v)
		}
	}
	if err := endpoint.Check(c.Endpoint); err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	if c.PollInterval < time.Second {
		return fmt.Errorf("poll_interval: %s is below the minimum of 1s", c.PollInterval)
	}
	return nil
}

// Build makes the provider as configured, with credentials from
// c.CredentialsFile or else Application Default Credentials; it fails
// when there are none. Its errors start with the key they concern.
func Build(c Config, env provider.Env) (*Provider, error) {
	opts := []option.ClientOption{option.WithScopes("https://www.googleapis.com/auth/compute")}
	if c.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(apiBase(c.Endpoint)))
	}
	if c.CredentialsFile != "" {
		key, err := secretfile.Read(c.CredentialsFile, maxKeyFile)
		if err != nil {
			return nil, fmt.Errorf("credentials_file: %w", err)
		}
		opts = append(opts, option.WithAuthCredentialsJSON(option.ServiceAccount, key))
	}
	return New(Options{
		Config:        c,
		Cluster:       env.Cluster,
		Logger:        env.Logger,
		ClientOptions: opts,
	})
}

// maxKeyFile bounds what is read of a key file; a service account key is
// a few KiB.
const maxKeyFile = 64 << 10

// apiBase is the client's base path for an endpoint given with or
// without the API's /compute/v1 prefix.
func apiBase(endpoint string) string {
	base := strings.TrimSuffix(endpoint, "/")
	if !strings.HasSuffix(base, "/compute/v1") {
		base += "/compute/v1"
	}
	return base + "/"
}
