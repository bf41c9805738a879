package tui

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestFitColumnsMakesRoomForWhy: at 80 columns the other columns give way
// before the cause is cut; at 100 the data columns stay; with nothing
// wrong in sight nothing gives way for WHY.
func TestFitColumnsMakesRoomForWhy(t *testing.T) {
	fault := wants{id: 7, gpus: 8, why: 49, whyFull: 61}
	tests := []struct {
		name    string
		width   int
		w       wants
		shown   []column
		dropped []column
		whyW    int
	}{
		{"80-with-a-fault", 80, fault, []column{colNode, colHealth, colGPUs}, []column{colUtil, colHot, colSeen, colLabels}, 28},
		{"100-with-a-fault", 100, fault, []column{colUtil, colHot, colSeen}, []column{colLabels}, 31},
		{"200-with-a-fault", 200, fault, []column{colUtil, colHot, colSeen, colLabels}, nil, 61},
		{"80-all-healthy", 80, wants{id: 7, gpus: 8}, []column{colUtil, colHot, colSeen, colLabels}, []column{colWhy}, 0},
		{"200-all-healthy", 200, wants{id: 7, gpus: 8}, []column{colLabels}, nil, whyMin},
		{"80-pool-gives-way", 80, wants{id: 7, gpus: 8, pool: 5, why: 30, whyFull: 40}, nil, []column{colPool, colSeen}, 28},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := fitColumns(tt.width, tt.w)
			for _, c := range tt.shown {
				if l[c] == 0 {
					t.Errorf("%s dropped: %v", columnNames[c], l)
				}
			}
			for _, c := range tt.dropped {
				if l[c] != 0 {
					t.Errorf("%s kept: %v", columnNames[c], l)
				}
			}
			if l[colWhy] != tt.whyW {
				t.Errorf("WHY %d wide, want %d", l[colWhy], tt.whyW)
			}
			used := 2
			for _, w := range l {
				if w > 0 {
					used += w + 1
				}
			}
			if used-1 > tt.width {
				t.Errorf("row takes %d cells of %d: %v", used-1, tt.width, l)
			}
		})
	}
}

// TestOfflineMetricsBlank: an OFFLINE node's last metrics are not shown as
// today's, whether the control plane kept its samples or restarted without
// them, and whether it went OFFLINE in a snapshot or a heartbeat.
func TestOfflineMetricsBlank(t *testing.T) {
	// Colour on, so the GPU letters' colours count too.
	m := newTestModel(t, Options{Theme: NewTheme(true, true)})
	rowOf := func(id string) string {
		for _, l := range strings.Split(m.Frame(), "\n") {
			if strings.Contains(l, id) {
				return l
			}
		}
		t.Fatalf("no row for %s", id)
		return ""
	}
	before := rowOf("gpu-b02")
	mustContain(t, before, "OFFLINE", "-    -")
	if strings.Contains(before, "%") || strings.Contains(before, "°") {
		t.Fatalf("an OFFLINE node shows its last metrics: %q", before)
	}
	// A control plane that restarted has no samples for it.
	restarted := fixtureFleet()
	restarted[4].Samples = nil
	m.Apply(snapshot(41, restarted, fixtureEvents()))
	if after := rowOf("gpu-b02"); after != before {
		t.Errorf("after a restart the OFFLINE row reads\n%q\nbefore it\n%q", after, before)
	}
	// A node that goes OFFLINE by heartbeat blanks its metrics at once.
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 42, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: &controlplanev1.HeartbeatBatch{
		Heartbeats: []*controlplanev1.NodeHeartbeat{{NodeId: "gpu-a01", Reachability: fleetv1.Reachability_REACHABILITY_OFFLINE,
			LastHeartbeatAt: timestamppb.New(now.Add(-5 * time.Minute)), Samples: fixtureFleet()[0].GetSamples()}},
	}}})
	send(m, tickMsg(now))
	if a01 := rowOf("gpu-a01"); strings.Contains(a01, "67%") {
		t.Errorf("gpu-a01 went OFFLINE and still shows its metrics: %q", a01)
	}
}
