package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Pools is what the metrics read of the pools.
type Pools interface {
	List() []*fleetv1.Pool
}

// ReadPools serves the pools' sizes at each scrape.
func (m *Metrics) ReadPools(p Pools) {
	m.reg.MustRegister(newPoolCollector(p))
}

// poolCollector turns each pool's spec, wanted size and status into
// series, one per pool, at each scrape.
type poolCollector struct {
	pools  Pools
	series []poolSeries
}

type poolSeries struct {
	desc  *prometheus.Desc
	value func(p *fleetv1.Pool) float64
}

func newPoolCollector(p Pools) *poolCollector {
	gauge := func(name, help string, value func(p *fleetv1.Pool) float64) poolSeries {
		return poolSeries{desc: prometheus.NewDesc(name, help, []string{"pool"}, nil), value: value}
	}
	return &poolCollector{pools: p, series: []poolSeries{
		gauge("navarch_pool_nodes", "Nodes that count towards the pool's size.", func(p *fleetv1.Pool) float64 { return float64(p.GetStatus().GetNodes()) }),
		gauge("navarch_pool_wanted_nodes", "The size the pool is kept at.", func(p *fleetv1.Pool) float64 { return float64(p.GetWanted()) }),
		gauge("navarch_pool_min_nodes", "The pool's min.", func(p *fleetv1.Pool) float64 { return float64(p.GetSpec().GetMin()) }),
		gauge("navarch_pool_max_nodes", "The pool's max.", func(p *fleetv1.Pool) float64 { return float64(p.GetSpec().GetMax()) }),
		gauge("navarch_pool_provisioning_nodes", "The pool's nodes whose agents have not registered yet.", func(p *fleetv1.Pool) float64 { return float64(p.GetStatus().GetProvisioning()) }),
		gauge("navarch_pool_unhealthy_nodes", "The pool's UNHEALTHY nodes.", func(p *fleetv1.Pool) float64 { return float64(p.GetStatus().GetUnhealthy()) }),
		gauge("navarch_pool_offline_nodes", "The pool's nodes whose agents are OFFLINE.", func(p *fleetv1.Pool) float64 { return float64(p.GetStatus().GetOffline()) }),
		gauge("navarch_pool_removing_nodes", "The pool's nodes being drained and terminated to leave it.", func(p *fleetv1.Pool) float64 { return float64(p.GetStatus().GetRemoving()) }),
		gauge("navarch_pool_utilization_percent", "Mean GPU utilisation of the pool's active nodes, in percent.", func(p *fleetv1.Pool) float64 { return p.GetStatus().GetUtilization() }),
	}}
}

// Describe sends every series' description.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, s := range c.series {
		ch <- s.desc
	}
}

// Collect reads every pool.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.pools.List() {
		for _, s := range c.series {
			ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, s.value(p), p.GetName())
		}
	}
}
