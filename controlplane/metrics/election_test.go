package metrics

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// election is a control plane's part in an election, as a test sets it.
type election struct {
	leading    atomic.Bool
	failedOver bool
}

func (e *election) Leading() bool    { return e.leading.Load() }
func (e *election) FailedOver() bool { return e.failedOver }

// electionExposition is the two series as /metrics shows them.
func electionExposition(failovers, leader int) string {
	return fmt.Sprintf(`# HELP navarch_controlplane_failovers_total Takeovers of the lead by this process: 1 once it took the lead over from another control plane, else 0; summed over every control plane, increase() counts the fleet's failovers.
# TYPE navarch_controlplane_failovers_total counter
navarch_controlplane_failovers_total %d
# HELP navarch_controlplane_leader 1 while this control plane leads its fleet (always, for a lone control plane), else 0.
# TYPE navarch_controlplane_leader gauge
navarch_controlplane_leader %d
`, failovers, leader)
}

// TestElectionSeries: a lone control plane leads and took over from
// nobody; one in an election shows whether it leads, read at each scrape,
// and counts its takeover of another's lead.
func TestElectionSeries(t *testing.T) {
	tests := []struct {
		name          string
		election      *election
		stepDown      bool
		wantFailovers int
		wantLeader    int
	}{
		{"lone", nil, false, 0, 1},
		{"first-leader", &election{failedOver: false}, false, 0, 1},
		{"took-over", &election{failedOver: true}, false, 1, 1},
		{"lost-the-lead", &election{failedOver: true}, true, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{})
			if tt.election != nil {
				tt.election.leading.Store(true)
				m.ReadElection(tt.election)
				if tt.stepDown {
					tt.election.leading.Store(false)
				}
			}
			want := electionExposition(tt.wantFailovers, tt.wantLeader)
			if err := testutil.GatherAndCompare(m.Gatherer(), strings.NewReader(want),
				"navarch_controlplane_failovers_total", "navarch_controlplane_leader"); err != nil {
				t.Fatal(err)
			}
			// Prometheus can ingest a 0 at the counter's creation, so that
			// increase() counts the 1 it starts at.
			mfs, err := m.Gatherer().Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == "navarch_controlplane_failovers_total" && mf.GetMetric()[0].GetCounter().GetCreatedTimestamp() == nil {
					t.Fatal("navarch_controlplane_failovers_total has no created timestamp")
				}
			}
		})
	}
}
