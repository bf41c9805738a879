package metrics

import "github.com/prometheus/client_golang/prometheus"

// Election is what the metrics read of this control plane's part in the
// election of the leader among the control planes that share a fleet
// through etcd (ha.Election).
type Election interface {
	// Leading reports whether this control plane leads.
	Leading() bool
	// FailedOver reports whether it took the lead over from another
	// control plane.
	FailedOver() bool
}

// newElectionSeries registers navarch_controlplane_leader, which reads
// m.election at each scrape, and navarch_controlplane_failovers_total.
// Both exist on every control plane: a lone one (store badger) leads and
// took over from nobody, so sum(navarch_controlplane_leader) is the number
// of leaders whatever the store.
func (m *Metrics) newElectionSeries() {
	m.failovers = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "navarch_controlplane_failovers_total",
		Help: "Takeovers of the lead by this process: 1 once it took the lead over from another control plane, else 0; summed over every control plane, increase() counts the fleet's failovers.",
	})
	m.reg.MustRegister(m.failovers, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "navarch_controlplane_leader",
		Help: "1 while this control plane leads its fleet (always, for a lone control plane), else 0.",
	}, func() float64 {
		if m.election == nil || m.election.Leading() {
			return 1
		}
		return 0
	}))
}

// ReadElection has the metrics follow e: navarch_controlplane_leader reads
// whether it leads, and a takeover from another leader is counted. Call it
// once, before the registry is served, on a control plane that runs in an
// election: a standby's registry, which counts 0, and the leader's, built
// once it won, which counts the takeover it made.
func (m *Metrics) ReadElection(e Election) {
	m.election = e
	if e.FailedOver() {
		m.failovers.Inc()
	}
}
