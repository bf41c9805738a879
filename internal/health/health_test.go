package health

import (
	"testing"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func TestRankOrdersBestToWorst(t *testing.T) {
	order := []fleetv1.HealthStatus{
		fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED,
		fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY,
		fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN,
		fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED,
		fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY,
	}
	for i := 1; i < len(order); i++ {
		if !Worse(order[i], order[i-1]) || Worse(order[i-1], order[i]) {
			t.Errorf("%s should be worse than %s", order[i], order[i-1])
		}
	}
	if len(fleetv1.HealthStatus_name) != len(order) {
		t.Errorf("the API has %d health states; Rank orders %d", len(fleetv1.HealthStatus_name), len(order))
	}
}

func TestPCIeReplayLimit(t *testing.T) {
	for _, tc := range []struct {
		name       string
		gen, width uint32
		want       uint32
	}{
		{"gen4-x16", 4, 16, 16},
		{"gen5-x16", 5, 16, 32},
		{"gen3-x16", 3, 16, 8},
		{"gen4-x8", 4, 8, 8},
		{"gen1-x1-floor", 1, 1, 1},
		{"unknown", 0, 0, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PCIeReplayLimit(tc.gen, tc.width); got != tc.want {
				t.Errorf("PCIeReplayLimit(%d, %d) = %d, want %d", tc.gen, tc.width, got, tc.want)
			}
		})
	}
}

func TestRetiredPagesExceeded(t *testing.T) {
	for _, tc := range []struct {
		name string
		rp   *fleetv1.RetiredPages
		want bool
	}{
		{"none", nil, false},
		{"62-in-all", &fleetv1.RetiredPages{SingleBit: 50, DoubleBit: 12}, false},
		{"63-in-all", &fleetv1.RetiredPages{SingleBit: 50, DoubleBit: 13}, true},
		{"16-dbe-one-this-week", &fleetv1.RetiredPages{DoubleBit: 16, DoubleBitLastWeek: 1}, false},
		{"16-dbe-two-this-week", &fleetv1.RetiredPages{DoubleBit: 16, DoubleBitLastWeek: 2}, true},
		{"15-dbe-many-this-week", &fleetv1.RetiredPages{DoubleBit: 15, DoubleBitLastWeek: 15}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RetiredPagesExceeded(tc.rp); got != tc.want {
				t.Errorf("RetiredPagesExceeded(%v) = %v, want %v", tc.rp, got, tc.want)
			}
		})
	}
}
