package autoscale

import (
	"testing"
	"time"

	// The schedules' zones, for a machine without a zone database.
	_ "time/tzdata"
)

// monday is 09:00 UTC on a Monday.
var monday = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// flat is samples at percent every 30 s over window and a minute before,
// up to now: enough to cover the window.
func flat(now time.Time, window time.Duration, percent float64) []Sample {
	var out []Sample
	for at := now.Add(-window - time.Minute); !at.After(now); at = at.Add(30 * time.Second) {
		out = append(out, Sample{At: at, Percent: percent})
	}
	return out
}

func util(step int) *Utilization {
	return &Utilization{ScaleUpAbove: 80, ScaleDownBelow: 30, Window: 5 * time.Minute, Cooldown: 5 * time.Minute, Step: step}
}

var weekdays = Schedule{Cron: "0 8 * * 1-5", Duration: 10 * time.Hour, Size: 6}

func TestDecide(t *testing.T) {
	gpu := &Queue{Partition: "gpu"}
	tests := []struct {
		name string
		cfg  Config
		in   Inputs
		want Decision
	}{
		// Bounds.
		{"nothing-configured", Config{}, Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3}, Decision{Wanted: 3}},
		{"below-min", Config{}, Inputs{Now: monday, Min: 2, Max: 5, Wanted: 1},
			Decision{Wanted: 2, Reason: "the pool's min is 2: 1 → 2"}},
		{"above-max", Config{}, Inputs{Now: monday, Min: 1, Max: 5, Wanted: 7},
			Decision{Wanted: 5, Reason: "the pool's max is 5: 7 → 5"}},
		{"min-wins-over-max-below-it", Config{}, Inputs{Now: monday, Min: 3, Max: 2, Wanted: 2},
			Decision{Wanted: 3, Reason: "the pool's min is 3: 2 → 3"}},
		{"above-max-utilisation-waits", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 7, Utilization: flat(monday, 5*time.Minute, 10)},
			Decision{Wanted: 5, Reason: "the pool's max is 5: 7 → 5"}},
		{"below-min-utilisation-waits", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 3, Max: 8, Wanted: 1, Utilization: flat(monday, 5*time.Minute, 95)},
			Decision{Wanted: 3, Reason: "the pool's min is 3: 1 → 3"}},

		// Utilisation.
		{"utilisation-up", Config{Utilization: util(0)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, Utilization: flat(monday, 5*time.Minute, 91)},
			Decision{Wanted: 4, Reason: "mean GPU utilisation 91% over 5m0s is above 80%: 3 → 4", Source: SourceUtilization}},
		{"utilisation-up-by-step", Config{Utilization: util(2)},
			Inputs{Now: monday, Min: 1, Max: 8, Wanted: 3, Utilization: flat(monday, 5*time.Minute, 91)},
			Decision{Wanted: 5, Reason: "mean GPU utilisation 91% over 5m0s is above 80%: 3 → 5", Source: SourceUtilization}},
		{"utilisation-up-to-max", Config{Utilization: util(3)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 4, Utilization: flat(monday, 5*time.Minute, 91)},
			Decision{Wanted: 5, Reason: "mean GPU utilisation 91% over 5m0s is above 80%: 4 → 5, the pool's max", Source: SourceUtilization}},
		{"utilisation-up-at-max", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 5, Utilization: flat(monday, 5*time.Minute, 91)},
			Decision{Wanted: 5}},
		{"utilisation-down", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 4, Utilization: flat(monday, 5*time.Minute, 12)},
			Decision{Wanted: 3, Reason: "mean GPU utilisation 12% over 5m0s is below 30%: 4 → 3", Source: SourceUtilization}},
		{"utilisation-down-to-min", Config{Utilization: util(3)},
			Inputs{Now: monday, Min: 2, Max: 5, Wanted: 4, Utilization: flat(monday, 5*time.Minute, 12)},
			Decision{Wanted: 2, Reason: "mean GPU utilisation 12% over 5m0s is below 30%: 4 → 2, the pool's min", Source: SourceUtilization}},
		{"utilisation-down-at-min", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 2, Max: 5, Wanted: 2, Utilization: flat(monday, 5*time.Minute, 0)},
			Decision{Wanted: 2}},
		{"utilisation-between", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, Utilization: flat(monday, 5*time.Minute, 50)},
			Decision{Wanted: 3}},
		{"utilisation-at-threshold", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, Utilization: flat(monday, 5*time.Minute, 80)},
			Decision{Wanted: 3}},
		{"utilisation-near-threshold", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, Utilization: flat(monday, 5*time.Minute, 80.4)},
			Decision{Wanted: 4, Reason: "mean GPU utilisation 80.4% over 5m0s is above 80%: 3 → 4", Source: SourceUtilization}},
		{"cooldown", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, LastChange: monday.Add(-4 * time.Minute), Utilization: flat(monday, 5*time.Minute, 95)},
			Decision{Wanted: 3}},
		{"cooldown-passed", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, LastChange: monday.Add(-5 * time.Minute), Utilization: flat(monday, 5*time.Minute, 95)},
			Decision{Wanted: 4, Reason: "mean GPU utilisation 95% over 5m0s is above 80%: 3 → 4", Source: SourceUtilization}},
		{"cooldown-holds-scale-down", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, LastChange: monday.Add(-time.Minute), Utilization: flat(monday, 5*time.Minute, 5)},
			Decision{Wanted: 3}},
		{"half-window", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, Utilization: flat(monday, 2*time.Minute, 5)},
			Decision{Wanted: 3}},
		{"no-samples", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3},
			Decision{Wanted: 3}},
		{"stale-samples", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, Utilization: flat(monday.Add(-10*time.Minute), 5*time.Minute, 99)},
			Decision{Wanted: 3}},
		{"samples-held-until-the-next", Config{Utilization: util(1)},
			// 100% holds from the window's start for a minute, then 0%
			// for four: a mean of 20%, where the samples' plain mean
			// would be 50%.
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, Utilization: []Sample{
				{At: monday.Add(-6 * time.Minute), Percent: 100},
				{At: monday.Add(-4 * time.Minute), Percent: 0},
			}},
			Decision{Wanted: 2, Reason: "mean GPU utilisation 20% over 5m0s is below 30%: 3 → 2", Source: SourceUtilization}},
		{"samples-after-now-left-out", Config{Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 5, Wanted: 3, Utilization: append(flat(monday, 5*time.Minute, 50),
				Sample{At: monday.Add(time.Minute), Percent: 100})},
			Decision{Wanted: 3}},

		// Schedules.
		{"schedule-open", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 6, Reason: `schedule "0 8 * * 1-5" (for 10h0m0s) wants 6: 2 → 6`, Source: SourceSchedule}},
		{"schedule-opens-on-the-minute", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday.Add(-time.Hour), Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 6, Reason: `schedule "0 8 * * 1-5" (for 10h0m0s) wants 6: 2 → 6`, Source: SourceSchedule}},
		{"schedule-not-yet-open", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday.Add(-time.Hour - time.Second), Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 2}},
		{"schedule-closed", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday.Add(9 * time.Hour), Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 2}},
		{"schedule-weekend", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday.AddDate(0, 0, 5), Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 2}},
		{"schedule-in-its-zone-not-yet", Config{Schedules: []Schedule{{Cron: "0 8 * * *", Duration: 2 * time.Hour, Size: 4, TimeZone: "America/New_York"}}},
			// 12:30 UTC is 07:30 in New York in March, before DST.
			Inputs{Now: time.Date(2026, 3, 2, 12, 30, 0, 0, time.UTC), Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 2}},
		{"schedule-in-its-zone", Config{Schedules: []Schedule{{Cron: "0 8 * * *", Duration: 2 * time.Hour, Size: 4, TimeZone: "America/New_York"}}},
			Inputs{Now: time.Date(2026, 3, 2, 13, 30, 0, 0, time.UTC), Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 4, Reason: `schedule "0 8 * * *" in America/New_York (for 2h0m0s) wants 4: 2 → 4`, Source: SourceSchedule}},
		{"schedule-in-its-zone-in-summer", Config{Schedules: []Schedule{{Cron: "0 8 * * *", Duration: 2 * time.Hour, Size: 4, TimeZone: "America/New_York"}}},
			// 12:30 UTC is 08:30 in New York in July.
			Inputs{Now: time.Date(2026, 7, 1, 12, 30, 0, 0, time.UTC), Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 4, Reason: `schedule "0 8 * * *" in America/New_York (for 2h0m0s) wants 4: 2 → 4`, Source: SourceSchedule}},
		{"schedule-largest-open-wins", Config{Schedules: []Schedule{
			{Cron: "0 8 * * *", Duration: 2 * time.Hour, Size: 4}, weekdays, {Cron: "0 7 * * *", Duration: time.Hour, Size: 9}}},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 6, Reason: `schedule "0 8 * * 1-5" (for 10h0m0s) wants 6: 2 → 6`, Source: SourceSchedule}},
		{"schedule-to-max", Config{Schedules: []Schedule{{Cron: "@daily", Duration: 24 * time.Hour, Size: 12}}},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 2},
			Decision{Wanted: 10, Reason: `schedule "@daily" (for 24h0m0s) wants 12: 2 → 10, the pool's max`, Source: SourceSchedule}},
		{"schedule-below-wanted", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 8},
			Decision{Wanted: 8}},
		{"schedule-floor-holds", Config{Schedules: []Schedule{weekdays}, Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 6, Utilization: flat(monday, 5*time.Minute, 0)},
			Decision{Wanted: 6}},
		{"schedule-floor-stops-a-step", Config{Schedules: []Schedule{weekdays}, Utilization: util(3)},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 7, Utilization: flat(monday, 5*time.Minute, 0)},
			Decision{Wanted: 6, Reason: `mean GPU utilisation 0% over 5m0s is below 30%: 7 → 6, the floor of schedule "0 8 * * 1-5" (for 10h0m0s)`,
				Source: SourceUtilization}},
		{"schedule-ended", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday.Add(9*time.Hour + 10*time.Second), LastChange: monday.Add(-time.Hour + 5*time.Second), Min: 2, Max: 10, Wanted: 6},
			Decision{Wanted: 2, Reason: `schedule "0 8 * * 1-5" (for 10h0m0s) ended at 2026-03-02 18:00 UTC: 6 → 2, the pool's min`, Source: SourceSchedule}},
		{"schedule-ended-in-its-zone", Config{Schedules: []Schedule{{Cron: "0 8 * * *", Duration: 2 * time.Hour, Size: 4, TimeZone: "Europe/Paris"}}},
			Inputs{Now: time.Date(2026, 7, 1, 8, 1, 0, 0, time.UTC), LastChange: time.Date(2026, 7, 1, 6, 0, 0, 0, time.UTC), Min: 1, Max: 10, Wanted: 4},
			Decision{Wanted: 1, Reason: `schedule "0 8 * * *" in Europe/Paris (for 2h0m0s) ended at 2026-07-01 10:00 CEST: 4 → 1, the pool's min`,
				Source: SourceSchedule}},
		{"schedule-ended-before-the-last-change", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday.Add(10 * time.Hour), LastChange: monday.Add(9*time.Hour + 5*time.Second), Min: 2, Max: 10, Wanted: 6},
			Decision{Wanted: 6}},
		{"schedule-ended-another-open", Config{Schedules: []Schedule{weekdays, {Cron: "0 17 * * *", Duration: 4 * time.Hour, Size: 4}}},
			Inputs{Now: monday.Add(9*time.Hour + 10*time.Second), LastChange: monday.Add(-time.Hour), Min: 2, Max: 10, Wanted: 6},
			Decision{Wanted: 4, Reason: `schedule "0 8 * * 1-5" (for 10h0m0s) ended at 2026-03-02 18:00 UTC: 6 → 4, the floor of schedule "0 17 * * *" (for 4h0m0s)`,
				Source: SourceSchedule}},
		{"schedule-ended-utilisation-decides", Config{Schedules: []Schedule{weekdays}, Utilization: util(1)},
			Inputs{Now: monday.Add(9*time.Hour + 10*time.Second), LastChange: monday.Add(-time.Hour), Min: 2, Max: 10, Wanted: 6,
				Utilization: flat(monday.Add(9*time.Hour+10*time.Second), 5*time.Minute, 50)},
			Decision{Wanted: 6}},
		{"schedule-ended-jobs-wait", Config{Schedules: []Schedule{weekdays}, Queue: gpu},
			Inputs{Now: monday.Add(9*time.Hour + 10*time.Second), LastChange: monday.Add(-time.Hour), Min: 2, Max: 10, Wanted: 6, Live: 6,
				QueueKnown: true, PendingNodes: 1, PendingJobs: 1},
			Decision{Wanted: 7, Reason: "1 pending job in partition gpu asks for 1 node beyond the 6 live: 6 → 7", Source: SourceQueue}},
		{"schedule-never-changed", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday.Add(10 * time.Hour), Min: 2, Max: 10, Wanted: 6},
			Decision{Wanted: 6}},

		// Queue.
		{"queue-up", Config{Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 4, Live: 4, QueueKnown: true, PendingNodes: 3, PendingJobs: 12},
			Decision{Wanted: 7, Reason: "12 pending jobs in partition gpu ask for 3 nodes beyond the 4 live: 4 → 7", Source: SourceQueue}},
		{"queue-jobs-not-counted", Config{Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 4, Live: 4, QueueKnown: true, PendingNodes: 3},
			Decision{Wanted: 7, Reason: "pending jobs in partition gpu ask for 3 nodes beyond the 4 live: 4 → 7", Source: SourceQueue}},
		{"queue-to-max", Config{Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 6, Wanted: 4, Live: 4, QueueKnown: true, PendingNodes: 30, PendingJobs: 30},
			Decision{Wanted: 6, Reason: "30 pending jobs in partition gpu ask for 30 nodes beyond the 4 live: 4 → 6, the pool's max", Source: SourceQueue}},
		{"queue-nodes-on-the-way", Config{Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 8, Live: 4, QueueKnown: true, PendingNodes: 3, PendingJobs: 3},
			Decision{Wanted: 8}},
		{"queue-unknown", Config{Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 4, Live: 4, PendingNodes: 3, PendingJobs: 3},
			Decision{Wanted: 4}},
		{"queue-not-configured", Config{},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 4, Live: 4, QueueKnown: true, PendingNodes: 3, PendingJobs: 3},
			Decision{Wanted: 4}},
		{"queue-waiting-holds-scale-down", Config{Queue: gpu, Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 5, Live: 4, QueueKnown: true, PendingNodes: 1, PendingJobs: 1,
				Utilization: flat(monday, 5*time.Minute, 0)},
			Decision{Wanted: 5}},
		{"queue-unknown-holds-scale-down", Config{Queue: gpu, Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 5, Live: 5, Utilization: flat(monday, 5*time.Minute, 0)},
			Decision{Wanted: 5}},
		{"queue-empty-leaves-scale-down", Config{Queue: gpu, Utilization: util(1)},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 5, Live: 5, QueueKnown: true, Utilization: flat(monday, 5*time.Minute, 0)},
			Decision{Wanted: 4, Reason: "mean GPU utilisation 0% over 5m0s is below 30%: 5 → 4", Source: SourceUtilization}},
		{"queue-empty-no-scale-down-alone", Config{Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 5, Live: 5, QueueKnown: true, LastChange: monday.Add(-time.Hour)},
			Decision{Wanted: 5}},

		// Together.
		{"largest-raise-wins", Config{Utilization: util(1), Schedules: []Schedule{weekdays}, Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 3, Live: 3, QueueKnown: true, PendingNodes: 4, PendingJobs: 2,
				Utilization: flat(monday, 5*time.Minute, 95)},
			Decision{Wanted: 7, Reason: "2 pending jobs in partition gpu ask for 4 nodes beyond the 3 live: 3 → 7", Source: SourceQueue}},
		{"schedule-beats-utilisation", Config{Utilization: util(1), Schedules: []Schedule{weekdays}, Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 3, Live: 3, QueueKnown: true, PendingNodes: 1, PendingJobs: 1,
				Utilization: flat(monday, 5*time.Minute, 95)},
			Decision{Wanted: 6, Reason: `schedule "0 8 * * 1-5" (for 10h0m0s) wants 6: 3 → 6`, Source: SourceSchedule}},
		{"utilisation-beats-a-smaller-ask", Config{Utilization: util(3), Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 3, Live: 3, QueueKnown: true, PendingNodes: 1, PendingJobs: 1,
				Utilization: flat(monday, 5*time.Minute, 95)},
			Decision{Wanted: 6, Reason: "mean GPU utilisation 95% over 5m0s is above 80%: 3 → 6", Source: SourceUtilization}},
		{"tie-goes-to-the-schedule", Config{Schedules: []Schedule{weekdays}, Queue: gpu},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 2, Live: 2, QueueKnown: true, PendingNodes: 4, PendingJobs: 4},
			Decision{Wanted: 6, Reason: `schedule "0 8 * * 1-5" (for 10h0m0s) wants 6: 2 → 6`, Source: SourceSchedule}},
		{"raise-beats-scale-down", Config{Utilization: util(1), Schedules: []Schedule{weekdays}},
			Inputs{Now: monday, Min: 1, Max: 10, Wanted: 3, Utilization: flat(monday, 5*time.Minute, 0)},
			Decision{Wanted: 6, Reason: `schedule "0 8 * * 1-5" (for 10h0m0s) wants 6: 3 → 6`, Source: SourceSchedule}},
		{"below-min-and-a-schedule", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday, Min: 2, Max: 10, Wanted: 1},
			Decision{Wanted: 6, Reason: `schedule "0 8 * * 1-5" (for 10h0m0s) wants 6: 1 → 6`, Source: SourceSchedule}},
		{"above-max-and-a-schedule", Config{Schedules: []Schedule{weekdays}},
			Inputs{Now: monday, Min: 2, Max: 5, Wanted: 8},
			Decision{Wanted: 5, Reason: "the pool's max is 5: 8 → 5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Fatalf("the test's config is invalid: %v", err)
			}
			if got := Decide(tt.cfg, tt.in); got != tt.want {
				t.Errorf("Decide =\n  %+v\nwant\n  %+v", got, tt.want)
			}
		})
	}
}
