package controlplane

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/api"
	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/controlplane/pool"
	"github.com/navarch/navarch/internal/rpcclient"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// PoolConfig is one pool of the configuration file (docs/pools.md).
type PoolConfig struct {
	Name             string             `yaml:"name"`
	Providers        []string           `yaml:"providers"`
	InstanceType     string             `yaml:"instance_type"`
	GPUsPerNode      uint32             `yaml:"gpus_per_node"`
	Region           string             `yaml:"region"`
	Zones            []string           `yaml:"zones"`
	Min              uint32             `yaml:"min"`
	Max              uint32             `yaml:"max"`
	Labels           map[string]string  `yaml:"labels"`
	ReplaceUnhealthy bool               `yaml:"replace_unhealthy"`
	UnhealthyGrace   Duration           `yaml:"unhealthy_grace"`
	MaxSurge         uint32             `yaml:"max_surge"`
	DrainTimeout     Duration           `yaml:"drain_timeout"`
	Autoscaling      *AutoscalingConfig `yaml:"autoscaling"`
}

// AutoscalingConfig is a pool's autoscaling.
type AutoscalingConfig struct {
	Utilization *struct {
		ScaleUpAbove   float64  `yaml:"scale_up_above"`
		ScaleDownBelow float64  `yaml:"scale_down_below"`
		Window         Duration `yaml:"window"`
		Cooldown       Duration `yaml:"cooldown"`
		Step           uint32   `yaml:"step"`
	} `yaml:"utilization"`
	Schedules []struct {
		Cron     string   `yaml:"cron"`
		Duration Duration `yaml:"duration"`
		Size     uint32   `yaml:"size"`
		TimeZone string   `yaml:"time_zone"`
	} `yaml:"schedules"`
	Queue *struct {
		Partition string `yaml:"partition"`
	} `yaml:"queue"`
}

// BootstrapConfig is how instances that cloud providers launch install
// and start their agent (docs/providers.md, Bootstrap).
type BootstrapConfig struct {
	// Server is the address launched agents dial, HOST:PORT, or several
	// joined by commas (every control plane of a fleet on etcd); empty
	// means the first of tls.names with the listen port.
	Server string `yaml:"server"`
	// PackageURL is the agent's .deb, over https.
	PackageURL string `yaml:"package_url"`
	// PackageFile is the agent's .deb on this machine, which the control
	// plane serves to launched instances on its own port, instead of a
	// PackageURL.
	PackageFile string `yaml:"package_file"`
	// PackageSHA256 is the .deb's SHA-256, in hex; with a PackageFile it
	// is worked out, and checked when given.
	PackageSHA256 string `yaml:"package_sha256"`
	// CAHash pins the CA of a certificate the operator brought
	// ("sha256:" and hex, see `navarch-controlplane ca-pin`); with the
	// control plane's own CA it is found on its own.
	CAHash string `yaml:"ca_hash"`
	// Settings are more of the agent's settings, by flag name.
	Settings map[string]string `yaml:"settings"`
}

// On reports whether launched instances can bootstrap.
func (b *BootstrapConfig) On() bool { return b.PackageURL != "" || b.PackageFile != "" }

// SlurmConfig says where the control plane finds Slurm, for pools that
// scale on a partition's queue.
type SlurmConfig struct {
	// Bin is the folder holding squeue; empty looks in $PATH.
	Bin string `yaml:"bin"`
	// Conf is slurm.conf; empty means Slurm's default.
	Conf string `yaml:"conf"`
}

var clusterName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// checkFleetSettings checks the cluster name, the bootstrap, the unknown
// instance choice and the pools.
func (c *Config) checkFleetSettings(offered []string) error {
	cloud := c.AWSProvider.On() || c.GCPProvider.On() || c.LambdaProvider.On()
	switch {
	case c.Cluster == "" && cloud:
		// No default: two control planes in one account that both took
		// it would list, adopt and stop each other's instances.
		return errors.New("cluster: required with a cloud provider: a name for this control plane, unique in the cloud accounts it uses")
	case c.Cluster != "" && !clusterName.MatchString(c.Cluster):
		return fmt.Errorf("cluster: %q is not lowercase letters, digits and '-', starting with a letter, at most 63", c.Cluster)
	}
	switch fleet.Unknown(c.UnknownInstances) {
	case fleet.UnknownReport, fleet.UnknownStop, fleet.UnknownAdopt:
	default:
		return fmt.Errorf("unknown_instances: %q is not report, stop or adopt", c.UnknownInstances)
	}
	if c.PoolInterval.Duration < 100e6 {
		return fmt.Errorf("pool_interval: %s is below the minimum of 100ms", c.PoolInterval.Duration)
	}
	if b := c.Bootstrap; b.On() || b.PackageSHA256 != "" || b.Server != "" {
		switch {
		case b.PackageURL != "" && b.PackageFile != "":
			return errors.New("bootstrap: package_url or package_file, not both")
		case b.PackageFile == "" && (b.PackageURL == "" || b.PackageSHA256 == ""):
			return errors.New("bootstrap: package_url and package_sha256 go together (or set package_file)")
		}
		if b.Server != "" {
			if _, err := rpcclient.ParseAddrs(b.Server); err != nil {
				return fmt.Errorf("bootstrap.server: %w", err)
			}
		} else if len(c.TLS.Names) == 0 {
			return errors.New("bootstrap.server: set it, or tls.names, so launched agents know where to dial")
		}
		if c.Insecure {
			return errors.New("bootstrap: launched agents always use TLS; insecure is for this machine only")
		}
		if c.TLS.CertFile != "" && b.CAHash == "" {
			return errors.New("bootstrap.ca_hash: required with a certificate the operator brought")
		}
		if c.ProvisionTimeout.Duration > auth.MaxBootTTL {
			return fmt.Errorf("provision_timeout: %s is longer than a launched instance's join token lives (%s)", c.ProvisionTimeout.Duration, auth.MaxBootTTL)
		}
	}
	seen := map[string]bool{}
	for i, pc := range c.Pools {
		p := pc.pool()
		err := api.CheckPoolSpec("spec", p.GetSpec())
		if err == nil {
			err = pool.Check(p.GetName(), p.GetSpec(), offered)
		}
		if err != nil {
			// The API's field names are spec.x; the file's are pools[i].x.
			return fmt.Errorf("pools[%d].%s", i, strings.TrimPrefix(status.Convert(err).Message(), "spec."))
		}
		if seen[pc.Name] {
			return fmt.Errorf("pools[%d].name: %q is defined twice", i, pc.Name)
		}
		seen[pc.Name] = true
	}
	return nil
}

// pool is the pool the configuration defines.
func (pc PoolConfig) pool() *fleetv1.Pool {
	s := &fleetv1.PoolSpec{
		Providers: pc.Providers, InstanceType: pc.InstanceType, GpusPerNode: pc.GPUsPerNode,
		Region: pc.Region, Zones: pc.Zones, Min: pc.Min, Max: pc.Max, Labels: pc.Labels,
		ReplaceUnhealthy: pc.ReplaceUnhealthy, MaxSurge: pc.MaxSurge,
		UnhealthyGrace: optDuration(pc.UnhealthyGrace), DrainTimeout: optDuration(pc.DrainTimeout),
	}
	if a := pc.Autoscaling; a != nil {
		s.Autoscaling = &fleetv1.Autoscaling{}
		if u := a.Utilization; u != nil {
			s.Autoscaling.Utilization = &fleetv1.UtilizationScaling{
				ScaleUpAbove: u.ScaleUpAbove, ScaleDownBelow: u.ScaleDownBelow,
				Window: optDuration(u.Window), Cooldown: optDuration(u.Cooldown), Step: u.Step,
			}
		}
		for _, sc := range a.Schedules {
			s.Autoscaling.Schedules = append(s.Autoscaling.Schedules, &fleetv1.ScheduledScaling{
				Cron: sc.Cron, Duration: optDuration(sc.Duration), Size: sc.Size, TimeZone: sc.TimeZone,
			})
		}
		if q := a.Queue; q != nil {
			s.Autoscaling.Queue = &fleetv1.QueueScaling{Partition: q.Partition}
		}
	}
	return &fleetv1.Pool{Name: pc.Name, Spec: s}
}

func optDuration(d Duration) *durationpb.Duration {
	if d.Duration == 0 {
		return nil
	}
	return durationpb.New(d.Duration)
}

// configPools are the pools the configuration file defines.
func (c *Config) configPools() []*fleetv1.Pool {
	out := make([]*fleetv1.Pool, 0, len(c.Pools))
	for _, pc := range c.Pools {
		out = append(out, pc.pool())
	}
	return out
}
