package metrics

import (
	"iter"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/navarch/navarch/controlplane/fleet"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Fleet is what a scrape reads of the fleet.
type Fleet interface {
	// Gauges are the fleet's kept totals; reading them visits no node.
	Gauges() fleet.Gauges
	// NodeHealth yields each node's id and health, terminated ones left
	// out.
	NodeHealth() iter.Seq2[string, fleetv1.HealthStatus]
}

// ReadFleet has every scrape read f's gauges and each node's health. Call
// it once, before the registry is served.
func (m *Metrics) ReadFleet(f Fleet) {
	m.reg.MustRegister(newFleetCollector(f))
	m.fleet = f
}

// fleetCollector turns the fleet's gauges into series at each scrape.
type fleetCollector struct {
	fleet Fleet

	nodes, nodesHealth, nodesReach, gpusHealth, faults              *prometheus.Desc
	breakerTripped, breakerRecent, breakerWindow, breakerSuppressed *prometheus.Desc
	watchers, queueDepth, revision                                  *prometheus.Desc
}

func newFleetCollector(f Fleet) *fleetCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &fleetCollector{
		fleet:             f,
		nodes:             desc("navarch_nodes", "Nodes in the fleet, by lifecycle state.", "lifecycle"),
		nodesHealth:       desc("navarch_nodes_health", "Nodes not terminated, by health.", "health"),
		nodesReach:        desc("navarch_nodes_reachability", "Nodes not terminated, by reachability.", "reachability"),
		gpusHealth:        desc("navarch_gpus_health", "GPUs of the nodes not terminated, by health.", "health"),
		faults:            desc("navarch_faults_active", "Active GPU faults on nodes not terminated, by suggested remedy.", "remedy"),
		breakerTripped:    desc("navarch_breaker_tripped", "1 while the auto-cordon circuit breaker is tripped, else 0."),
		breakerRecent:     desc("navarch_breaker_recent_auto_cordons", "Automatic cordons within the breaker's window."),
		breakerWindow:     desc("navarch_breaker_window_seconds", "The auto-cordon breaker's sliding window, in seconds."),
		breakerSuppressed: desc("navarch_breaker_suppressed_cordons", "Automatic cordons the breaker held back in its current trip."),
		watchers:          desc("navarch_watchers", "Open WatchFleet streams."),
		queueDepth:        desc("navarch_watch_queue_depth_max", "The most changes waiting for any one WatchFleet stream."),
		revision:          desc("navarch_fleet_revision", "The fleet's revision: the number of its latest change."),
	}
}

// Describe sends every series' description.
func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.nodes, c.nodesHealth, c.nodesReach, c.gpusHealth, c.faults,
		c.breakerTripped, c.breakerRecent, c.breakerWindow, c.breakerSuppressed,
		c.watchers, c.queueDepth, c.revision,
	} {
		ch <- d
	}
}

// labelled is one series of a labelled gauge.
type labelled struct {
	label string
	value uint32
}

// Collect reads the fleet's totals. Each node's health is not collected
// here but built as a family of its own: see nodeHealthFamily.
func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.fleet.Gauges()
	s := g.Summary
	c.labelled(ch, c.nodes, []labelled{
		{"PROVISIONING", s.GetProvisioning()}, {"ACTIVE", s.GetActive()}, {"CORDONED", s.GetCordoned()},
		{"DRAINING", s.GetDraining()}, {"DRAINED", s.GetDrained()}, {"TERMINATING", s.GetTerminating()},
		{"TERMINATED", s.GetTerminated()}, {"PROVISION_FAILED", s.GetProvisionFailed()},
	})
	c.labelled(ch, c.nodesHealth, []labelled{
		{"HEALTHY", s.GetHealthy()}, {"DEGRADED", s.GetDegraded()}, {"UNHEALTHY", s.GetUnhealthy()}, {"UNKNOWN", s.GetHealthUnknown()},
	})
	c.labelled(ch, c.nodesReach, []labelled{
		{"ONLINE", s.GetOnline()}, {"STALE", s.GetStale()}, {"OFFLINE", s.GetOffline()}, {"UNKNOWN", s.GetReachabilityUnknown()},
	})
	gpusKnown := s.GetGpusHealthy() + s.GetGpusDegraded() + s.GetGpusUnhealthy()
	c.labelled(ch, c.gpusHealth, []labelled{
		{"HEALTHY", s.GetGpusHealthy()}, {"DEGRADED", s.GetGpusDegraded()}, {"UNHEALTHY", s.GetGpusUnhealthy()},
		{"UNKNOWN", s.GetGpus() - min(gpusKnown, s.GetGpus())},
	})
	c.labelled(ch, c.faults, faultSeries(g.Faults))

	b := g.Breaker
	tripped := 0.0
	if b.GetTripped() {
		tripped = 1
	}
	ch <- prometheus.MustNewConstMetric(c.breakerTripped, prometheus.GaugeValue, tripped)
	ch <- prometheus.MustNewConstMetric(c.breakerRecent, prometheus.GaugeValue, float64(b.GetRecentAutoCordons()))
	ch <- prometheus.MustNewConstMetric(c.breakerWindow, prometheus.GaugeValue, float64(b.GetWindowSeconds()))
	ch <- prometheus.MustNewConstMetric(c.breakerSuppressed, prometheus.GaugeValue, float64(b.GetSuppressedCordons()))
	ch <- prometheus.MustNewConstMetric(c.watchers, prometheus.GaugeValue, float64(g.Watchers))
	ch <- prometheus.MustNewConstMetric(c.queueDepth, prometheus.GaugeValue, float64(g.DeepestQueue))
	ch <- prometheus.MustNewConstMetric(c.revision, prometheus.GaugeValue, float64(g.Revision))
}

func (c *fleetCollector) labelled(ch chan<- prometheus.Metric, d *prometheus.Desc, series []labelled) {
	for _, s := range series {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(s.value), s.label)
	}
}

// faultSeries is one series per known remedy, zero where no fault asks
// for it, and one for each other remedy a fault has.
func faultSeries(byRemedy map[fleetv1.Remedy]uint32) []labelled {
	out := make([]labelled, 0, len(remedies)+len(byRemedy))
	for r, w := range remedies {
		out = append(out, labelled{w, byRemedy[r]})
	}
	for r, n := range byRemedy {
		if _, known := remedies[r]; !known {
			out = append(out, labelled{remedyWord(r), n})
		}
	}
	return out
}
