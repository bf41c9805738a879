package pool

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/controlplane/pool/autoscale"
	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Limits on a pool.
const (
	// MaxNameLen bounds a pool's name, which starts its nodes' ids.
	MaxNameLen = 40
	// MaxSize bounds a pool's max.
	MaxSize = 10000
)

// CheckName enforces a pool name's grammar: lowercase letters, digits and
// dashes, starting with a letter and not ending with a dash, so that it
// can start an instance name on every provider.
func CheckName(name string) error {
	if name == "" {
		return apierr.Invalid("name", "is required")
	}
	if len(name) > MaxNameLen {
		return apierr.Invalid("name", "is %d characters; the limit is %d", len(name), MaxNameLen)
	}
	for i, r := range name {
		ok := (r >= 'a' && r <= 'z') || (i > 0 && ((r >= '0' && r <= '9') || r == '-'))
		if !ok {
			return apierr.Invalid("name", "%q has %q at offset %d; use lowercase letters, digits and '-', starting with a letter", name, r, i)
		}
	}
	if strings.HasSuffix(name, "-") {
		return apierr.Invalid("name", "%q ends with '-'", name)
	}
	return nil
}

// check checks a spec against the providers this control plane offers.
func (ps *Pools) check(name string, s *fleetv1.PoolSpec) error { return Check(name, s, ps.providers) }

// Check is what a pool's spec must be: its name and sizes sound, its
// providers among those offered, its autoscaling valid. The API checks
// the shape of the request's fields (labels, text, durations) before.
func Check(name string, s *fleetv1.PoolSpec, offered []string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if s == nil {
		return apierr.Invalid("spec", "is required")
	}
	if len(s.GetProviders()) == 0 {
		return apierr.Invalid("spec.providers", "name at least one provider (offered: %s)", strings.Join(offered, ", "))
	}
	for i, p := range s.GetProviders() {
		if !slices.Contains(offered, p) {
			return apierr.Invalid(fmt.Sprintf("spec.providers[%d]", i), "provider %q is not offered here (offered: %s)", p, strings.Join(offered, ", "))
		}
		if slices.Index(s.GetProviders(), p) != i {
			return apierr.Invalid(fmt.Sprintf("spec.providers[%d]", i), "provider %q is named twice", p)
		}
	}
	switch {
	case s.GetMax() < 1 || s.GetMax() > MaxSize:
		return apierr.Invalid("spec.max", "%d is not within 1–%d", s.GetMax(), MaxSize)
	case s.GetMin() > s.GetMax():
		return apierr.Invalid("spec.min", "%d is above max %d", s.GetMin(), s.GetMax())
	case s.GetMaxSurge() > s.GetMax():
		return apierr.Invalid("spec.max_surge", "%d is above max %d", s.GetMaxSurge(), s.GetMax())
	case s.GetGpusPerNode() > 64:
		return apierr.Invalid("spec.gpus_per_node", "%d is above 64", s.GetGpusPerNode())
	}
	if as := s.GetAutoscaling(); as != nil {
		if err := autoscaleConfig(as).Validate(); err != nil {
			return apierr.Invalid("spec.autoscaling", "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
	}
	return nil
}

// autoscaleConfig is the autoscaler's view of a pool's autoscaling.
func autoscaleConfig(as *fleetv1.Autoscaling) autoscale.Config {
	var c autoscale.Config
	if u := as.GetUtilization(); u != nil {
		c.Utilization = &autoscale.Utilization{
			ScaleUpAbove: u.GetScaleUpAbove(), ScaleDownBelow: u.GetScaleDownBelow(),
			Window: orDuration(u.GetWindow().AsDuration(), 5*time.Minute), Cooldown: orDuration(u.GetCooldown().AsDuration(), 10*time.Minute),
			Step: int(u.GetStep()),
		}
	}
	for _, s := range as.GetSchedules() {
		c.Schedules = append(c.Schedules, autoscale.Schedule{Cron: s.GetCron(), Duration: s.GetDuration().AsDuration(), Size: int(s.GetSize()), TimeZone: s.GetTimeZone()})
	}
	if q := as.GetQueue(); q != nil {
		c.Queue = &autoscale.Queue{Partition: q.GetPartition()}
	}
	return c
}

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// asPool makes the fleet name the pool as who asked for a change.
func asPool(ctx context.Context, name string) context.Context {
	return auth.WithCaller(ctx, auth.Caller{Name: "pool/" + name})
}
