package slurm

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The files under testdata/ are what Slurm 22.05.8 (Debian bookworm)
// printed for a node named vm, captured from a real cluster with
// SLURM_TIME_FORMAT=standard.

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func at(clock string) time.Time {
	tm, err := time.ParseInLocation(time.DateTime, "2026-11-29 "+clock, time.Local)
	if err != nil {
		panic(err)
	}
	return tm
}

func TestParseNode(t *testing.T) {
	tests := []struct {
		name string
		file string
		want Node
	}{
		{"idle", "idle.txt", Node{State: "IDLE"}},
		{"mixed", "mixed.txt", Node{State: "MIXED"}},
		{
			"ours-draining-reason-with-quotes-and-equals", "mixed-drain-ours.txt",
			Node{State: "MIXED+DRAIN", Reason: `navarch: xid 79 on gpu 0: fell off the bus, state="lost" "`,
				ReasonUser: "root", ReasonTime: at("17:30:05"), Drain: true, Ours: true},
		},
		{
			"by-hand-draining-allocated", "allocated-drain-by-hand.txt",
			Node{State: "ALLOCATED+DRAIN", Reason: "fan", ReasonUser: "root", ReasonTime: at("17:30:09"), Drain: true},
		},
		{
			"by-hand-draining-completing", "completing-drain.txt",
			Node{State: "IDLE+COMPLETING+DRAIN", Reason: "fan", ReasonUser: "root", ReasonTime: at("17:30:09"), Drain: true},
		},
		{
			"by-hand-drained", "idle-drain-by-hand.txt",
			Node{State: "IDLE+DRAIN", Reason: "fan", ReasonUser: "root", ReasonTime: at("17:30:09"), Drain: true, Drained: true},
		},
		{
			"comment-after-reason", "idle-drain-comment.txt",
			Node{State: "IDLE+DRAIN", Reason: "fan", ReasonUser: "root", ReasonTime: at("17:30:09"), Drain: true, Drained: true},
		},
		{
			"reason-of-two-lines", "idle-drain-two-lines.txt",
			Node{State: "IDLE+DRAIN", Reason: "fan", ReasonUser: "root", ReasonTime: at("17:30:16"), Drain: true, Drained: true},
		},
		{
			"down", "down-not-responding.txt",
			Node{State: "DOWN+NOT_RESPONDING", Reason: "Not responding", ReasonUser: "root", ReasonTime: at("17:30:37")},
		},
		{
			"ours-down-drained", "down-drain-ours.txt",
			Node{State: "DOWN+DRAIN+NOT_RESPONDING", Reason: "navarch: node lost", ReasonUser: "root", ReasonTime: at("17:30:38"),
				Drain: true, Drained: true, Ours: true},
		},
		{
			"ours-drained-after-down", "idle-drain-ours-after-down.txt",
			Node{State: "IDLE+DRAIN", Reason: "navarch: node lost", ReasonUser: "root", ReasonTime: at("17:30:38"),
				Drain: true, Drained: true, Ours: true},
		},
		{"resumed-not-registered-yet", "idle-not-responding.txt", Node{State: "IDLE+NOT_RESPONDING"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNode(readTestdata(t, filepath.Join("scontrol", tt.file)), "vm")
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseNode =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseNodeFails(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		node    string
		wantErr string
	}{
		{"not-found", readTestdata(t, "scontrol/not-found.txt"), "nosuch", "printed no node nosuch"},
		{"other-node", readTestdata(t, "scontrol/idle.txt"), "v", "printed no node v"},
		{"no-state", "NodeName=vm Arch=x86_64\n", "vm", "no State"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseNode(tt.out, tt.node)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseNode error = %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseJobs(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want []Job
	}{
		{"none", "", nil},
		{"running", readTestdata(t, "squeue/running.txt"), []Job{{ID: "1", State: "RUNNING"}, {ID: "2", State: "RUNNING"}}},
		{"completing", readTestdata(t, "squeue/completing.txt"), []Job{{ID: "1", State: "COMPLETING"}, {ID: "2", State: "COMPLETING"}}},
		{"array-and-het", "7_2|RUNNING\n8+1|SUSPENDED\n", []Job{{ID: "7_2", State: "RUNNING"}, {ID: "8+1", State: "SUSPENDED"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseJobs(tt.out)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseJobs =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"squeue: error: something\n", "1|RUNNING|extra\n", "-v|RUNNING\n", "1|running\n", "1 2|RUNNING\n"} {
		if jobs, err := parseJobs(bad); err == nil {
			t.Errorf("parseJobs(%q) = %+v, want an error", bad, jobs)
		}
	}
}

func TestDrainReason(t *testing.T) {
	long := strings.Repeat("é", 300)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"prefixed", "xid 79 on gpu 0", "navarch: xid 79 on gpu 0"},
		{"prefix-kept", "navarch: xid 79", "navarch: xid 79"},
		{"quotes-and-equals-kept", `fan="off" state=bad "x"`, `navarch: fan="off" state=bad "x"`},
		{"one-line", "fan\n\tand\r\nPSU  ", "navarch: fan and PSU"},
		{"control-characters", "fan\x00\x1b[31m", "navarch: fan??[31m"},
		{"empty", " \n", "navarch: no reason given"},
		{"cut-at-a-character", long, "navarch: " + strings.Repeat("é", 122) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := drainReason(tt.in)
			if got != tt.want {
				t.Errorf("drainReason(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(got) > maxReason {
				t.Errorf("drainReason is %d bytes, over %d", len(got), maxReason)
			}
		})
	}
}
