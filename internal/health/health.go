// Package health holds the one order of health states that the control
// plane's policy, the console and the command line all sort and compare by.
package health

import fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"

// Rank orders health from best to worst: HEALTHY, UNKNOWN, DEGRADED,
// UNHEALTHY. An unset value ranks below HEALTHY.
func Rank(h fleetv1.HealthStatus) int {
	switch h {
	case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
		return 1
	case fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN:
		return 2
	case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		return 3
	case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
		return 4
	}
	return 0
}

// Worse reports whether a is worse than b.
func Worse(a, b fleetv1.HealthStatus) bool { return Rank(a) > Rank(b) }

// The values a health takes in the navarch_node_health and
// navarch_gpu_health metrics, which alerts and dashboards compare with.
const (
	MetricUnknown   = 0
	MetricHealthy   = 1
	MetricDegraded  = 2
	MetricUnhealthy = 3
)

// Metric is h as the health metrics report it.
func Metric(h fleetv1.HealthStatus) float64 {
	switch h {
	case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
		return MetricHealthy
	case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		return MetricDegraded
	case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
		return MetricUnhealthy
	}
	return MetricUnknown
}
