package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

type fakePools []*fleetv1.Pool

func (p fakePools) List() []*fleetv1.Pool { return p }

// TestPoolCollector: one series per pool for each of its sizes.
func TestPoolCollector(t *testing.T) {
	m := New(Options{})
	m.ReadPools(fakePools{
		{Name: "train", Wanted: 4, Spec: &fleetv1.PoolSpec{Min: 2, Max: 8}, Status: &fleetv1.PoolStatus{Nodes: 3, Provisioning: 1, Unhealthy: 1, Utilization: 87}},
		{Name: "infer", Wanted: 1, Spec: &fleetv1.PoolSpec{Max: 1}},
	})
	want := `
# HELP navarch_pool_nodes Nodes that count towards the pool's size.
# TYPE navarch_pool_nodes gauge
navarch_pool_nodes{pool="infer"} 0
navarch_pool_nodes{pool="train"} 3
# HELP navarch_pool_wanted_nodes The size the pool is kept at.
# TYPE navarch_pool_wanted_nodes gauge
navarch_pool_wanted_nodes{pool="infer"} 1
navarch_pool_wanted_nodes{pool="train"} 4
# HELP navarch_pool_utilization_percent Mean GPU utilisation of the pool's active nodes, in percent.
# TYPE navarch_pool_utilization_percent gauge
navarch_pool_utilization_percent{pool="infer"} 0
navarch_pool_utilization_percent{pool="train"} 87
# HELP navarch_pool_unhealthy_nodes The pool's UNHEALTHY nodes.
# TYPE navarch_pool_unhealthy_nodes gauge
navarch_pool_unhealthy_nodes{pool="infer"} 0
navarch_pool_unhealthy_nodes{pool="train"} 1
`
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want),
		"navarch_pool_nodes", "navarch_pool_wanted_nodes", "navarch_pool_utilization_percent", "navarch_pool_unhealthy_nodes"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(m.Gatherer()); err != nil || n < 18 {
		t.Fatalf("%d series, %v", n, err)
	}
}
