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
