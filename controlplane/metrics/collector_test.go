package metrics

import (
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/navarch/navarch/controlplane/fleet"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// fakeFleet is a fleet's gauges and node health as a scrape reads them.
type fakeFleet struct {
	gauges fleet.Gauges
	ids    []string
	health []fleetv1.HealthStatus
}

func (f *fakeFleet) Gauges() fleet.Gauges { return f.gauges }

func (f *fakeFleet) NodeHealth() iter.Seq2[string, fleetv1.HealthStatus] {
	return func(yield func(string, fleetv1.HealthStatus) bool) {
		for i, id := range f.ids {
			if !yield(id, f.health[i]) {
				return
			}
		}
	}
}

// smallFleet is five nodes: one terminated (left out of node health), one
// unhealthy with an XID awaiting a reboot, one degraded, one healthy, one
// not yet judged; the breaker tripped, two watchers open.
func smallFleet() *fakeFleet {
	return &fakeFleet{
		gauges: fleet.Gauges{
			Summary: &fleetv1.FleetSummary{
				Nodes: 5, Gpus: 32, Active: 2, Cordoned: 1, Draining: 1, Terminated: 1,
				Healthy: 1, Degraded: 1, Unhealthy: 1, HealthUnknown: 1,
				Online: 3, Stale: 1, ReachabilityUnknown: 0, Offline: 0,
				GpusHealthy: 22, GpusDegraded: 1, GpusUnhealthy: 1,
			},
			Faults: map[fleetv1.Remedy]uint32{
				fleetv1.Remedy_REMEDY_REBOOT_NODE: 1,
				fleetv1.Remedy_REMEDY_WATCH:       1,
				fleetv1.Remedy(99):                2,
			},
			Breaker:      &fleetv1.BreakerStatus{AutoCordonEnabled: true, Tripped: true, RecentAutoCordons: 2, WindowSeconds: 300, SuppressedCordons: 4},
			Revision:     1234,
			Watchers:     2,
			DeepestQueue: 17,
		},
		ids: []string{"node-a", "node-b", "node-c", "node-d"},
		health: []fleetv1.HealthStatus{
			fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED,
			fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN,
		},
	}
}

const smallFleetText = `
# HELP navarch_breaker_recent_auto_cordons Automatic cordons within the breaker's window.
# TYPE navarch_breaker_recent_auto_cordons gauge
navarch_breaker_recent_auto_cordons 2
# HELP navarch_breaker_suppressed_cordons Automatic cordons the breaker held back in its current trip.
# TYPE navarch_breaker_suppressed_cordons gauge
navarch_breaker_suppressed_cordons 4
# HELP navarch_breaker_tripped 1 while the auto-cordon circuit breaker is tripped, else 0.
# TYPE navarch_breaker_tripped gauge
navarch_breaker_tripped 1
# HELP navarch_breaker_window_seconds The auto-cordon breaker's sliding window, in seconds.
# TYPE navarch_breaker_window_seconds gauge
navarch_breaker_window_seconds 300
# HELP navarch_faults_active Active GPU faults on nodes not terminated, by suggested remedy.
# TYPE navarch_faults_active gauge
navarch_faults_active{remedy="99"} 2
navarch_faults_active{remedy="check_application"} 0
navarch_faults_active{remedy="check_cooling"} 0
navarch_faults_active{remedy="check_power"} 0
navarch_faults_active{remedy="contact_support"} 0
navarch_faults_active{remedy="inspect_hardware"} 0
navarch_faults_active{remedy="none"} 0
navarch_faults_active{remedy="reboot_node"} 1
navarch_faults_active{remedy="replace_gpu"} 0
navarch_faults_active{remedy="reset_gpu"} 0
navarch_faults_active{remedy="restart_application"} 0
navarch_faults_active{remedy="restart_vm"} 0
navarch_faults_active{remedy="update_software"} 0
navarch_faults_active{remedy="watch"} 1
# HELP navarch_fleet_revision The fleet's revision: the number of its latest change.
# TYPE navarch_fleet_revision gauge
navarch_fleet_revision 1234
# HELP navarch_gpus_health GPUs of the nodes not terminated, by health.
# TYPE navarch_gpus_health gauge
navarch_gpus_health{health="DEGRADED"} 1
navarch_gpus_health{health="HEALTHY"} 22
navarch_gpus_health{health="UNHEALTHY"} 1
navarch_gpus_health{health="UNKNOWN"} 8
# HELP navarch_node_health Each node's health, terminated nodes left out: 0 unknown, 1 healthy, 2 degraded, 3 unhealthy.
# TYPE navarch_node_health gauge
navarch_node_health{node="node-a"} 1
navarch_node_health{node="node-b"} 2
navarch_node_health{node="node-c"} 3
navarch_node_health{node="node-d"} 0
# HELP navarch_nodes Nodes in the fleet, by lifecycle state.
# TYPE navarch_nodes gauge
navarch_nodes{lifecycle="ACTIVE"} 2
navarch_nodes{lifecycle="CORDONED"} 1
navarch_nodes{lifecycle="DRAINED"} 0
navarch_nodes{lifecycle="DRAINING"} 1
navarch_nodes{lifecycle="PROVISIONING"} 0
navarch_nodes{lifecycle="PROVISION_FAILED"} 0
navarch_nodes{lifecycle="TERMINATED"} 1
navarch_nodes{lifecycle="TERMINATING"} 0
# HELP navarch_nodes_health Nodes not terminated, by health.
# TYPE navarch_nodes_health gauge
navarch_nodes_health{health="DEGRADED"} 1
navarch_nodes_health{health="HEALTHY"} 1
navarch_nodes_health{health="UNHEALTHY"} 1
navarch_nodes_health{health="UNKNOWN"} 1
# HELP navarch_nodes_reachability Nodes not terminated, by reachability.
# TYPE navarch_nodes_reachability gauge
navarch_nodes_reachability{reachability="OFFLINE"} 0
navarch_nodes_reachability{reachability="ONLINE"} 3
navarch_nodes_reachability{reachability="STALE"} 1
navarch_nodes_reachability{reachability="UNKNOWN"} 0
# HELP navarch_watch_queue_depth_max The most changes waiting for any one WatchFleet stream.
# TYPE navarch_watch_queue_depth_max gauge
navarch_watch_queue_depth_max 17
# HELP navarch_watchers Open WatchFleet streams.
# TYPE navarch_watchers gauge
navarch_watchers 2
`

// TestFleetCollector: every gauge the fleet's totals give, every lifecycle
// state, health, reachability and known remedy present even at zero, an
// unknown remedy by its number, GPUs of unknown health as those not
// counted healthy, degraded or unhealthy, and one health series per node.
func TestFleetCollector(t *testing.T) {
	m := New(Options{})
	m.ReadFleet(smallFleet())
	names := []string{
		"navarch_nodes", "navarch_nodes_health", "navarch_nodes_reachability", "navarch_gpus_health",
		"navarch_node_health", "navarch_faults_active", "navarch_breaker_tripped",
		"navarch_breaker_recent_auto_cordons", "navarch_breaker_window_seconds",
		"navarch_breaker_suppressed_cordons", "navarch_watchers", "navarch_watch_queue_depth_max",
		"navarch_fleet_revision",
	}
	if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(smallFleetText), names...); err != nil {
		t.Fatal(err)
	}
}

// TestEmptyFleet: a fleet with no node and no breaker status yet still
// has every labelled series, at zero, and no node series.
func TestEmptyFleet(t *testing.T) {
	m := New(Options{})
	m.ReadFleet(&fakeFleet{gauges: fleet.Gauges{Summary: &fleetv1.FleetSummary{}}})
	for _, tt := range []struct {
		name string
		want int
	}{
		{"navarch_nodes", 8}, {"navarch_nodes_health", 4}, {"navarch_nodes_reachability", 4},
		{"navarch_gpus_health", 4}, {"navarch_faults_active", len(remedies)}, {"navarch_node_health", 0},
		{"navarch_breaker_tripped", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n, err := testutil.GatherAndCount(m.Gatherer(), tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.want {
				t.Fatalf("%d series, want %d", n, tt.want)
			}
		})
	}
}

// TestLint: everything the registry serves, the Go, process and gRPC
// collectors' series included, passes Prometheus' own lint.
func TestLint(t *testing.T) {
	m := New(Options{})
	m.ReadFleet(smallFleet())
	m.Committed([]*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79}}, nil, true)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	m.InitializeGRPC(srv)
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if !slices.ContainsFunc(mfs, func(mf *dto.MetricFamily) bool { return mf.GetName() == "grpc_server_handled_total" }) {
		t.Fatal("no gRPC series were linted")
	}
}

// bigFleet is n nodes of mixed health, as a scrape of a large fleet reads.
func bigFleet(n int) *fakeFleet {
	f := smallFleet()
	f.ids, f.health = make([]string, n), make([]fleetv1.HealthStatus, n)
	for i := range n {
		f.ids[i] = fmt.Sprintf("sim-%06d", i)
		f.health[i] = fleetv1.HealthStatus(1 + i%4)
	}
	return f
}
