package memlimit

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestFleetLimit: the budget grows with the fleet, stays half as much
// again as what is live, and never passes the ceiling or goes under the minimum.
func TestFleetLimit(t *testing.T) {
	tests := []struct {
		name    string
		ceiling int64
		nodes   int
		live    uint64
		want    int64
	}{
		{"empty-fleet-is-the-base", 19 * gib, 0, 10 * uint64(mib), BudgetBase},
		{"thousand-nodes", 19 * gib, 1000, 50 * uint64(mib), BudgetBase + 1000*BudgetPerNode},
		{"hundred-thousand-nodes", 19 * gib, 100000, 1500 * uint64(mib), BudgetBase + 100000*BudgetPerNode},
		{"live-over-budget-raises-it", 19 * gib, 1000, uint64(gib), gib + gib/2},
		{"ceiling-wins", 1 * gib, 100000, 600 * uint64(mib), gib},
		{"ceiling-wins-over-live", 1 * gib, 10, 2 * uint64(gib), gib},
		{"ceiling-under-the-base", 200 * mib, 0, 0, 200 * mib},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fleetLimit(tt.ceiling, tt.nodes, tt.live)
			if got != tt.want {
				t.Fatalf("limit %s, want %s", FormatSize(got), FormatSize(tt.want))
			}
		})
	}
}

// TestFleetFollowsOnlyAuto: only auto's limits follow the fleet; Update
// sets the runtime's limit.
func TestFleetFollowsOnlyAuto(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, src := range []Source{FromEnv, FromConfig, FromOff, FromNothing} {
		if f := NewFleet(Limit{Bytes: gib, Source: src}); f.Sized() || f.Update(100) != 0 {
			t.Fatalf("%s: follows the fleet", src)
		}
	}
	f := NewFleet(Limit{Bytes: 8 * gib, Source: FromMachine})
	if !f.Sized() {
		t.Fatal("auto's machine share does not follow the fleet")
	}
	got := f.Update(20000)
	if got < BudgetBase+20000*BudgetPerNode || got > 8*gib {
		t.Fatalf("limit %s for 20 000 nodes", FormatSize(got))
	}
	if in := debug.SetMemoryLimit(-1); in != got || in == math.MaxInt64 {
		t.Fatalf("runtime limit %d, Update said %d", in, got)
	}
}
