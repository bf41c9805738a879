package aws

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/endpoint"
	"github.com/navarch/navarch/internal/yamlfile"
)

// Config is the aws provider's section of the control plane's
// configuration, under the key aws_provider. It holds no credentials: the
// SDK finds them where AWS tools always look (environment, shared files,
// SSO, the instance's role).
type Config struct {
	// Enabled offers the provider.
	Enabled bool `yaml:"enabled"`
	// Region is the EC2 region the subnets are in, such as us-east-1.
	Region string `yaml:"region"`
	// Endpoint overrides the EC2 endpoint, for an EC2-compatible cloud or
	// a test server; empty means EC2's endpoint for the region. It
	// must be https, or plain http on loopback: every request is signed
	// and RunInstances carries the join tokens.
	Endpoint string `yaml:"endpoint"`
	// AMI is the image the instances boot; it must run cloud-init.
	AMI string `yaml:"ami"`
	// InstanceType is the type launched when a request or pool names none.
	InstanceType string `yaml:"instance_type"`
	// Subnets are tried in order; one without capacity for the type passes
	// the launch to the next. A pool's zones narrow them to those zones,
	// in the pool's order.
	Subnets []Subnet `yaml:"subnets"`
	// SecurityGroups are security group ids (sg-…) for the instances.
	SecurityGroups []string `yaml:"security_groups"`
	// KeyName is an EC2 key pair for SSH; empty means none.
	KeyName string `yaml:"key_name"`
	// IAMInstanceProfile is the instance profile's name or ARN; empty
	// means none.
	IAMInstanceProfile string `yaml:"iam_instance_profile"`
	// RootVolumeGB sizes the root volume (gp3); 0 keeps the AMI's size.
	RootVolumeGB int `yaml:"root_volume_gb"`
	// Spot launches spot instances (one-time, terminated on
	// interruption); the provider watches for interruption notices.
	Spot bool `yaml:"spot"`
	// Tags go on every instance and volume besides the provider's own.
	Tags map[string]string `yaml:"tags"`
	// PollInterval is how often the provider looks for interrupted and
	// vanished instances.
	PollInterval yamlfile.Duration `yaml:"poll_interval"`
}

// Subnet is one subnet instances may start in, and its availability zone.
type Subnet struct {
	ID   string `yaml:"id"`
	Zone string `yaml:"zone"`
}

// DefaultConfig is the section's defaults.
func DefaultConfig() Config {
	return Config{InstanceType: "p5.48xlarge", PollInterval: yamlfile.Duration{Duration: 30 * time.Second}}
}

// On reports whether the provider is offered.
func (c *Config) On() bool { return c.Enabled }

// maxTags is EC2's limit of tags on one resource.
const maxTags = 50

// Validate checks the section; errors name the key within it. A section
// that is not enabled needs no region, image or subnets.
func (c *Config) Validate() error {
	if err := endpoint.Check(c.Endpoint); err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	if c.PollInterval.Duration < time.Second {
		return fmt.Errorf("poll_interval: %s is below the minimum of 1s", c.PollInterval.Duration)
	}
	if c.RootVolumeGB < 0 || c.RootVolumeGB > 65536 {
		return fmt.Errorf("root_volume_gb: %d is not within 0–65536", c.RootVolumeGB)
	}
	if err := c.checkTags(); err != nil {
		return err
	}
	for i, g := range c.SecurityGroups {
		if !strings.HasPrefix(g, "sg-") {
			return fmt.Errorf("security_groups[%d]: %q is not a security group id (sg-…)", i, g)
		}
	}
	if err := c.checkSubnets(); err != nil {
		return err
	}
	if !c.Enabled {
		return nil
	}
	switch {
	case c.Region == "":
		return errors.New("region: required")
	case c.AMI == "":
		return errors.New("ami: required")
	case c.InstanceType == "":
		return errors.New("instance_type: required")
	case len(c.Subnets) == 0:
		return errors.New("subnets: at least one subnet is required")
	}
	return nil
}

func (c *Config) checkSubnets() error {
	seen := map[string]bool{}
	for i, s := range c.Subnets {
		switch {
		case !strings.HasPrefix(s.ID, "subnet-"):
			return fmt.Errorf("subnets[%d].id: %q is not a subnet id (subnet-…)", i, s.ID)
		case seen[s.ID]:
			return fmt.Errorf("subnets[%d].id: %s is listed twice", i, s.ID)
		case s.Zone == "":
			return fmt.Errorf("subnets[%d].zone: required (the subnet's availability zone, which pools choose by)", i)
		// AWS names every zone, local zones included, after its region;
		// an EC2-compatible cloud behind an endpoint may not.
		case c.Endpoint == "" && c.Region != "" && !strings.HasPrefix(s.Zone, c.Region):
			return fmt.Errorf("subnets[%d].zone: %s is not in region %s", i, s.Zone, c.Region)
		}
		seen[s.ID] = true
	}
	return nil
}

func (c *Config) checkTags() error {
	if len(c.Tags) > maxTags-len(ownTags) {
		return fmt.Errorf("tags: %d tags and the provider's %d pass EC2's limit of %d", len(c.Tags), len(ownTags), maxTags)
	}
	for k, v := range c.Tags {
		switch {
		case k == "" || len(k) > 128:
			return fmt.Errorf("tags: key %q must be 1–128 characters", k)
		case len(v) > 256:
			return fmt.Errorf("tags.%s: value is longer than 256 characters", k)
		case strings.HasPrefix(strings.ToLower(k), "aws:"):
			return fmt.Errorf("tags.%s: the aws: prefix is reserved by AWS", k)
		case ownTags[k]:
			return fmt.Errorf("tags.%s: the provider sets this tag itself", k)
		}
	}
	return nil
}

// ownTags are the tags the provider puts on what it launches.
var ownTags = map[string]bool{provider.TagCluster: true, provider.TagNode: true, provider.TagPool: true, "Name": true}

// Build makes the provider as configured, with credentials from the SDK's
// default chain. It reaches no AWS service: credentials are looked up on
// the first call.
func Build(c Config, env provider.Env) (*Provider, error) {
	return New(Options{Config: c, Env: env})
}
