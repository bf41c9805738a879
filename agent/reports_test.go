package agent

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/internal/healthdelta"
	"github.com/navarch/navarch/internal/testutil"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// kind says what metrics a report carried: "full", "delta" or "" (events
// only).
func kind(r *nodev1.ReportHealthRequest) string {
	switch {
	case len(r.GetMetrics()) > 0:
		return "full"
	case len(r.GetMetricChanges()) > 0:
		return "delta"
	}
	return ""
}

// metricReports returns the reports that carried metrics.
func (f *fakeCP) metricReports() []*nodev1.ReportHealthRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*nodev1.ReportHealthRequest
	for _, r := range f.reports {
		if kind(r) != "" {
			out = append(out, r)
		}
	}
	return out
}

// waitReports waits for n reports with metrics.
func waitReports(t *testing.T, cp *fakeCP, n int) []*nodev1.ReportHealthRequest {
	t.Helper()
	testutil.EventuallyWithin(t, 20*time.Second, "reports", func() bool { return len(cp.metricReports()) >= n })
	return cp.metricReports()
}

func TestReportsAreDeltasOnTheAcknowledgedSnapshot(t *testing.T) {
	cp := newFakeCP(t)
	cp.report = 100 * time.Millisecond
	startAgent(t, cp, simnvml.Options{GPUs: 4})
	rs := waitReports(t, cp, 4)
	if kind(rs[0]) != "full" || rs[0].GetSequence() == 0 {
		t.Fatalf("first report is %q at sequence %d, want a full snapshot", kind(rs[0]), rs[0].GetSequence())
	}
	for i, r := range rs[1:4] {
		if kind(r) != "delta" || r.GetBaseSequence() != rs[i].GetSequence() || r.GetSequence() != rs[i].GetSequence()+1 {
			t.Fatalf("report %d is %q, sequence %d on %d; want a delta on %d", i+1, kind(r), r.GetSequence(), r.GetBaseSequence(), rs[i].GetSequence())
		}
		if len(r.GetMetricChanges()) != 4 {
			t.Fatalf("delta has %d GPUs, want 4", len(r.GetMetricChanges()))
		}
		if full, delta := proto.Size(rs[0]), proto.Size(r); delta*2 > full {
			t.Errorf("a delta of quiet GPUs is %d bytes, the full snapshot %d", delta, full)
		}
	}
	cp.mu.Lock()
	held := cp.metrics.Metrics()
	cp.mu.Unlock()
	if len(held) != 4 || len(held[0].GetNvlinks()) != 18 || held[0].GetEcc() == nil {
		t.Fatalf("the control plane holds %d GPUs, the first %v", len(held), held[0])
	}
}

// TestLostReportsAreRepaired: a report lost on its way is not a base, so
// the next delta builds on the one before, which the control plane still
// holds; a report taken but whose answer was lost leaves the two sides on
// different bases, which the control plane sees and repairs by asking
// for a full snapshot.
func TestLostReportsAreRepaired(t *testing.T) {
	tests := []struct {
		name string
		lose func(cp *fakeCP)
		want []string
	}{
		{name: "report-lost", lose: func(cp *fakeCP) { cp.unreachable = true }, want: []string{"delta", "delta"}},
		{name: "answer-lost", lose: func(cp *fakeCP) { cp.loseAnswers = 1 }, want: []string{"delta", "delta", "full"}},
		{name: "control-plane-restarted", lose: func(cp *fakeCP) { cp.metrics = nil }, want: []string{"delta", "full"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cp := newFakeCP(t)
			cp.report = 200 * time.Millisecond
			startAgent(t, cp, simnvml.Options{GPUs: 2})
			before := len(waitReports(t, cp, 2))
			cp.mu.Lock()
			tt.lose(cp)
			cp.mu.Unlock()
			if tt.name == "report-lost" {
				testutil.Eventually(t, "a refused report", func() bool { _, n := cp.refused(); return n > 0 })
				cp.setUnreachable(false)
			}
			rs := waitReports(t, cp, before+len(tt.want))[before:]
			var got []string
			for _, r := range rs[:len(tt.want)] {
				got = append(got, kind(r))
			}
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Fatalf("reports after the loss are %v, want %v", got, tt.want)
				}
			}
			last := rs[len(tt.want)-1]
			// And deltas resume on the repaired base.
			next := waitReports(t, cp, before+len(tt.want)+1)[before+len(tt.want)]
			if kind(next) != "delta" || next.GetBaseSequence() != last.GetSequence() {
				t.Fatalf("after the repair: %q on %d, want a delta on %d", kind(next), next.GetBaseSequence(), last.GetSequence())
			}
		})
	}
}

func TestFullSnapshotEveryFullEvery(t *testing.T) {
	cp := newFakeCP(t)
	cp.report = time.Minute
	clock := clockwork.NewFakeClock()
	startAgent(t, cp, simnvml.Options{GPUs: 2}, func(o *Options) { o.Clock = clock })
	waitReports(t, cp, 1)
	reports := int(healthdelta.FullEvery / time.Minute)
	for n := 2; n <= reports+1; n++ {
		testutil.Eventually(t, "the next report", func() bool {
			if len(cp.metricReports()) >= n {
				return true
			}
			clock.Advance(time.Second)
			return false
		})
	}
	rs := cp.metricReports()
	for i, r := range rs[:reports+1] {
		want := "delta"
		if i == 0 || i == reports {
			want = "full"
		}
		if kind(r) != want {
			t.Fatalf("report %d is %q, want %q", i, kind(r), want)
		}
	}
}

// TestFullSnapshotAskedOfAFullOneDoesNotLoop: a control plane that asks for
// a full snapshot in answer to a full one gets the next at the next
// report, not at once and again and again.
func TestFullSnapshotAskedOfAFullOneDoesNotLoop(t *testing.T) {
	cp := newFakeCP(t)
	cp.report = time.Hour
	cp.mu.Lock()
	cp.wantFull = true
	cp.mu.Unlock()
	startAgent(t, cp, simnvml.Options{GPUs: 2})
	waitReports(t, cp, 1)
	time.Sleep(500 * time.Millisecond)
	if rs := cp.metricReports(); len(rs) != 1 {
		t.Fatalf("%d reports with metrics in half a second, want the first alone", len(rs))
	}
}
