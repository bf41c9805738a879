package simload_test

import (
	"slices"
	"testing"

	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/internal/simload"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestChaosXIDsAreMostlyMild: every XID chaos picks is in the fault
// catalog, and few of the picks take a GPU out of service.
func TestChaosXIDsAreMostlyMild(t *testing.T) {
	p := policy.Default()
	known := p.KnownXIDs()
	serious := 0
	for _, x := range simload.ChaosXIDs {
		if !slices.Contains(known, x) {
			t.Errorf("XID %d is not in the catalog", x)
		}
		if p.XIDRule(x).Health == fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
			serious++
		}
	}
	if share := float64(serious) / float64(len(simload.ChaosXIDs)); serious == 0 || share > 0.1 {
		t.Fatalf("%d of %d picks are UNHEALTHY XIDs (%.0f%%)", serious, len(simload.ChaosXIDs), 100*share)
	}
}
