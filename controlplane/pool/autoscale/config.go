package autoscale

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"
)

// Config is one pool's autoscaling; each part is optional, and a Config
// with none leaves the pool at the size it is given.
type Config struct {
	// Utilization scales the pool on its GPUs' mean utilisation.
	Utilization *Utilization
	// Schedules hold the pool at a size during windows of time.
	Schedules []Schedule
	// Queue scales the pool up for the Slurm jobs waiting for its
	// partition.
	Queue *Queue
}

// Utilization is the reactive rule: it scales the pool on the mean GPU
// utilisation of its active nodes.
type Utilization struct {
	// ScaleUpAbove is the mean, in percent (0–100), above which the pool
	// grows; 100 never grows it.
	ScaleUpAbove float64
	// ScaleDownBelow is the mean, in percent (0–100), below which the pool
	// shrinks; 0 never shrinks it. It is below ScaleUpAbove, so that a
	// mean between the two leaves the pool as it is.
	ScaleDownBelow float64
	// Window is how far back the mean looks.
	Window time.Duration
	// Cooldown is how long after the pool's wanted size last changed,
	// for whatever reason, the rule waits before it changes it again.
	Cooldown time.Duration
	// Step is how many nodes one decision adds or removes; 0 is 1.
	Step int
}

// Schedule is a window of time, opened at each firing of a cron line, in
// which the pool is at least Size nodes.
type Schedule struct {
	// Cron is a standard five-field cron line ("0 8 * * 1-5"), or one of
	// @yearly, @monthly, @weekly, @daily and @hourly.
	Cron string
	// Duration is how long each window lasts from its firing.
	Duration time.Duration
	// Size is the size the pool is held at, at least, while the window
	// is open.
	Size int
	// TimeZone is the IANA name of the zone Cron reads its times in; ""
	// is UTC.
	TimeZone string
}

// Queue is the queue-driven rule: it grows the pool for the Slurm jobs
// waiting for the pool's partition, counted by SlurmQueue.
type Queue struct {
	// Partition is the Slurm partition the pool's nodes serve.
	Partition string
}

// partitionPattern is the partition names accepted: squeue reads a name
// with a comma as a list of partitions, and one that starts with '-' as
// an option.
var partitionPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate checks the configuration. Its errors, one per line, name the
// field they are about ("schedules[1].cron: ...").
func (c Config) Validate() error {
	var errs []error
	if u := c.Utilization; u != nil {
		errs = append(errs, u.validate()...)
	}
	for i, s := range c.Schedules {
		if err := s.validate(); err != nil {
			errs = append(errs, fmt.Errorf("schedules[%d].%w", i, err))
		}
	}
	if q := c.Queue; q != nil && !partitionPattern.MatchString(q.Partition) {
		errs = append(errs, fmt.Errorf("queue.partition: %q is not a Slurm partition name", q.Partition))
	}
	return errors.Join(errs...)
}

func (u *Utilization) validate() []error {
	var errs []error
	up, down := u.ScaleUpAbove, u.ScaleDownBelow
	if !inPercent(up) {
		errs = append(errs, fmt.Errorf("utilization.scale_up_above: %v is not within 0–100", up))
	}
	if !inPercent(down) {
		errs = append(errs, fmt.Errorf("utilization.scale_down_below: %v is not within 0–100", down))
	}
	if inPercent(up) && inPercent(down) && down >= up {
		errs = append(errs, fmt.Errorf("utilization.scale_down_below: %v is not below scale_up_above %v", down, up))
	}
	if u.Window <= 0 {
		errs = append(errs, fmt.Errorf("utilization.window: %s is not a positive duration", u.Window))
	}
	if u.Cooldown <= 0 {
		errs = append(errs, fmt.Errorf("utilization.cooldown: %s is not a positive duration", u.Cooldown))
	}
	if u.Step < 0 {
		errs = append(errs, fmt.Errorf("utilization.step: %d is negative", u.Step))
	}
	return errs
}

// inPercent reports whether v is a percentage; NaN is not.
func inPercent(v float64) bool { return v >= 0 && v <= 100 && !math.IsNaN(v) }

// validate checks one schedule; its error starts with the field's name.
func (s Schedule) validate() error {
	if s.Duration <= 0 {
		return fmt.Errorf("duration: %s is not a positive duration", s.Duration)
	}
	if s.Size < 0 {
		return fmt.Errorf("size: %d is negative", s.Size)
	}
	_, err := compile(s)
	return err
}
