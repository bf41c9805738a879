package autoscale

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	good := Config{
		Utilization: util(2),
		Schedules: []Schedule{weekdays, {Cron: "@weekly", Duration: time.Hour, Size: 0, TimeZone: "Europe/Paris"},
			{Cron: "0 0 29 2 *", Duration: time.Hour, Size: 1}},
		Queue: &Queue{Partition: "gpu-a100.big_1"},
	}
	tests := []struct {
		name    string
		change  func(c *Config)
		wantErr []string
	}{
		{"valid", func(*Config) {}, nil},
		{"empty", func(c *Config) { *c = Config{} }, nil},
		{"up-above-100", func(c *Config) { c.Utilization.ScaleUpAbove = 120 },
			[]string{"utilization.scale_up_above: 120 is not within 0–100"}},
		{"down-negative", func(c *Config) { c.Utilization.ScaleDownBelow = -1 },
			[]string{"utilization.scale_down_below: -1 is not within 0–100"}},
		{"up-nan", func(c *Config) { c.Utilization.ScaleUpAbove = math.NaN() },
			[]string{"utilization.scale_up_above: NaN is not within 0–100"}},
		{"down-not-below-up", func(c *Config) { c.Utilization.ScaleDownBelow = 80 },
			[]string{"utilization.scale_down_below: 80 is not below scale_up_above 80"}},
		{"no-window", func(c *Config) { c.Utilization.Window = 0 },
			[]string{"utilization.window: 0s is not a positive duration"}},
		{"negative-cooldown", func(c *Config) { c.Utilization.Cooldown = -time.Second },
			[]string{"utilization.cooldown: -1s is not a positive duration"}},
		{"negative-step", func(c *Config) { c.Utilization.Step = -1 },
			[]string{"utilization.step: -1 is negative"}},
		{"bad-cron", func(c *Config) { c.Schedules[1].Cron = "0 25 * * *" },
			[]string{`schedules[1].cron: "0 25 * * *": `}},
		{"six-fields", func(c *Config) { c.Schedules[0].Cron = "0 0 8 * * 1-5" },
			[]string{`schedules[0].cron: "0 0 8 * * 1-5": `}},
		{"every", func(c *Config) { c.Schedules[0].Cron = "@every 1h" },
			[]string{`schedules[0].cron: "@every 1h" fires at no fixed time`}},
		{"zone-in-the-line", func(c *Config) { c.Schedules[0].Cron = "CRON_TZ=Asia/Tokyo 0 8 * * *" },
			[]string{`schedules[0].cron: "CRON_TZ=Asia/Tokyo 0 8 * * *" names its time zone: give it in time_zone`}},
		{"never-fires", func(c *Config) { c.Schedules[2].Cron = "0 0 30 2 *" },
			[]string{`schedules[2].cron: "0 0 30 2 *" never fires`}},
		{"no-duration", func(c *Config) { c.Schedules[1].Duration = 0 },
			[]string{"schedules[1].duration: 0s is not a positive duration"}},
		{"negative-size", func(c *Config) { c.Schedules[0].Size = -2 },
			[]string{"schedules[0].size: -2 is negative"}},
		{"unknown-zone", func(c *Config) { c.Schedules[1].TimeZone = "Mars/Olympus" },
			[]string{"schedules[1].time_zone: unknown time zone Mars/Olympus"}},
		{"no-partition", func(c *Config) { c.Queue.Partition = "" },
			[]string{`queue.partition: "" is not a Slurm partition name`}},
		{"partition-list", func(c *Config) { c.Queue.Partition = "gpu,cpu" },
			[]string{`queue.partition: "gpu,cpu" is not a Slurm partition name`}},
		{"partition-option", func(c *Config) { c.Queue.Partition = "-gpu" },
			[]string{`queue.partition: "-gpu" is not a Slurm partition name`}},
		{"every-error-named", func(c *Config) {
			c.Utilization.Window = 0
			c.Schedules[2].Size = -1
			c.Queue.Partition = ""
		}, []string{"utilization.window: ", "schedules[2].size: ", "queue.partition: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			u := *good.Utilization
			q := *good.Queue
			c.Utilization, c.Queue = &u, &q
			c.Schedules = append([]Schedule(nil), good.Schedules...)
			tt.change(&c)
			err := c.Validate()
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %q", tt.wantErr)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.wantErr) {
				t.Fatalf("Validate = %q, want %d errors", err, len(tt.wantErr))
			}
			for i, want := range tt.wantErr {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("Validate error %d = %q, want it to start %q", i, lines[i], want)
				}
			}
		})
	}
}
