package display

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func TestNames(t *testing.T) {
	rows := []struct{ got, want string }{
		{Lifecycle(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED), "CORDONED"},
		{Lifecycle(0), "-"},
		{Health(fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED), "DEGRADED"},
		{Reachability(fleetv1.Reachability_REACHABILITY_STALE), "STALE"},
		{CommandType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), "DRAIN"},
		{CommandStatus(fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED), "SUCCEEDED"},
		{Remedy(fleetv1.Remedy_REMEDY_REBOOT_NODE), "drain, reboot node"},
		{Remedy(fleetv1.Remedy_REMEDY_UNSPECIFIED), ""},
		{EventKind(&fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79}), "XID 79"},
		{EventKind(&fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_ROW_REMAP_PENDING}), "row-remap-pending"},
		{GPU(3), "gpu3"},
		{GPU(-1), "node"},
		{Bytes(80 << 30), "80.0 GiB"},
		{Bytes(512), "512 B"},
		{Labels(map[string]string{"zone": "a", "pool": "b"}), "pool=b,zone=a"},
	}
	for _, r := range rows {
		if r.got != r.want {
			t.Errorf("got %q, want %q", r.got, r.want)
		}
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	rows := map[time.Duration]string{
		3 * time.Second: "3s", 90 * time.Second: "1m", 3 * time.Hour: "3h", 72 * time.Hour: "3d", -time.Second: "0s",
	}
	for ago, want := range rows {
		if got := Age(now.Add(-ago), now); got != want {
			t.Errorf("%s ago: %q, want %q", ago, got, want)
		}
	}
	if Age(time.Time{}, now) != "-" {
		t.Error("zero time is not -")
	}
	var never *timestamppb.Timestamp // a node that never sent a heartbeat
	if got := Age(never.AsTime(), now); got != "-" {
		t.Errorf("unset timestamp reads %q, want -", got)
	}
}

func TestParse(t *testing.T) {
	if l, ok := ParseLifecycle("provision-failed"); !ok || l != fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED {
		t.Errorf("lifecycle: %v %v", l, ok)
	}
	if _, ok := ParseLifecycle("unspecified"); ok {
		t.Error("unspecified parsed")
	}
	if h, ok := ParseHealth("Unhealthy"); !ok || h != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY {
		t.Errorf("health: %v %v", h, ok)
	}
	if r, ok := ParseReachability("offline"); !ok || r != fleetv1.Reachability_REACHABILITY_OFFLINE {
		t.Errorf("reachability: %v %v", r, ok)
	}
	samples := []*fleetv1.GpuSample{{UtilizationGpuPercent: 50, TemperatureCelsius: 60}, {UtilizationGpuPercent: 100, TemperatureCelsius: 80}}
	if u, ok := Utilization(samples); !ok || u != 75 {
		t.Errorf("utilization %d", u)
	}
	if h, ok := Hottest(samples); !ok || h != 80 {
		t.Errorf("hottest %d", h)
	}
	if _, ok := Utilization(nil); ok {
		t.Error("utilization of nothing")
	}
}

// TestShortRemedies: every remedy has a short name that fits its column, so
// a remedy added to the API is not cut short on narrow screens.
func TestShortRemedies(t *testing.T) {
	for v, name := range fleetv1.Remedy_name {
		r := fleetv1.Remedy(v)
		s, ok := shortRemedies[r]
		if !ok {
			t.Errorf("%s has no short name", name)
		}
		if len(s) > ShortRemedyWidth || (r != fleetv1.Remedy_REMEDY_UNSPECIFIED && s == "") {
			t.Errorf("%s: short name %q does not fit %d cells", name, s, ShortRemedyWidth)
		}
	}
}

func TestText(t *testing.T) {
	tests := []struct {
		name      string
		got, want string
	}{
		{"or-dash-empty", OrDash(""), "-"},
		{"or-dash-text", OrDash("550.54"), "550.54"},
		{"first-line", FirstLine("drained\nno processes left"), "drained"},
		{"first-line-single", FirstLine("drained"), "drained"},
		{"headline-cut", Headline("diagnostics: 1 failed\nFAIL gpu1 ecc"), "diagnostics: 1 failed …"},
		{"headline-single", Headline("cordoned"), "cordoned"},
		{"duration-hours", Duration(time.Hour), "1h"},
		{"duration-week", Duration(7 * 24 * time.Hour), "168h"},
		{"duration-minutes", Duration(10 * time.Minute), "10m"},
		{"duration-mixed", Duration(90 * time.Second), "1m30s"},
		{"duration-hours-and-minutes", Duration(90 * time.Minute), "1h30m"},
		{"duration-seconds", Duration(time.Second), "1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestLifecycleBy(t *testing.T) {
	tests := []struct {
		node *fleetv1.Node
		want string
	}{
		{&fleetv1.Node{LifecycleBy: "oncall"}, "oncall"},
		{&fleetv1.Node{LifecycleBy: "policy", CordonedByPolicy: true}, "policy"},
		{&fleetv1.Node{LifecycleBy: "control plane"}, ""},
		{&fleetv1.Node{CordonedByPolicy: true}, "policy"}, // stored before lifecycle_by
		{&fleetv1.Node{}, ""},
	}
	for _, tt := range tests {
		if got := LifecycleBy(tt.node); got != tt.want {
			t.Errorf("LifecycleBy(%v) = %q, want %q", tt.node, got, tt.want)
		}
	}
}

func TestCleanTextAndCut(t *testing.T) {
	if got := CleanText("a\x1b[31mb\xffc\n\td", "\n"); got != "a?[31mb?c\n?d" {
		t.Errorf("CleanText = %q", got)
	}
	for _, tc := range []struct {
		s    string
		n    int
		mark string
		want string
	}{
		{"short", 10, "…", "short"},
		{"abcdef", 4, "", "abcd"},
		{"abcdef", 4, "…", "a…"},
		{"héllo", 2, "", "h"}, // é is two bytes: never cut inside it
		{"abc", 0, "", ""},
	} {
		if got := Cut(tc.s, tc.n, tc.mark); got != tc.want || len(got) > max(tc.n, len(tc.s)) {
			t.Errorf("Cut(%q, %d, %q) = %q, want %q", tc.s, tc.n, tc.mark, got, tc.want)
		}
	}
}

func TestOneLine(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"fan\tnoise\r\n  again", 100, "fan noise again"},
		{"bell\a and \x1b[2J", 100, "bell? and ?[2J"},
		{"  ", 100, ""},
		{"abcdef", 6, "abcdef"},
		{"abcdefg", 6, "abc…"},
	} {
		if got := OneLine(tc.s, tc.n); got != tc.want {
			t.Errorf("OneLine(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

func TestScheduler(t *testing.T) {
	tests := []struct {
		name string
		s    *fleetv1.SchedulerState
		want string
	}{
		{"none", nil, ""},
		{"idle", &fleetv1.SchedulerState{Scheduler: "slurm", NodeName: "gpu7", State: "IDLE"}, "slurm gpu7: IDLE"},
		{"busy", &fleetv1.SchedulerState{Scheduler: "slurm", NodeName: "gpu7", State: "ALLOCATED", Jobs: 1}, "slurm gpu7: ALLOCATED · 1 job"},
		{"draining-ours", &fleetv1.SchedulerState{Scheduler: "slurm", NodeName: "gpu7", State: "MIXED+DRAIN", Drain: true, ByNavarch: true, Jobs: 2, Reason: "navarch: xid 79"},
			"slurm gpu7: MIXED+DRAIN · draining by Navarch, 2 jobs left · reason: navarch: xid 79"},
		{"drained-by-hand", &fleetv1.SchedulerState{Scheduler: "slurm", NodeName: "gpu7", State: "IDLE+DRAIN", Drain: true, Drained: true, Reason: "fan noise"},
			"slurm gpu7: IDLE+DRAIN · drained by hand (Navarch won't resume) · reason: fan noise"},
		{"unreachable", &fleetv1.SchedulerState{Scheduler: "slurm", NodeName: "gpu7", Error: "Unable to contact slurm controller"},
			"slurm gpu7: - · cannot reach it: Unable to contact slurm controller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Scheduler(tt.s); got != tt.want {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}
