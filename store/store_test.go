package store

import (
	"testing"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func TestParseSeq(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want uint64
		ok   bool
	}{
		{"smallest", "cmd-1", 1, true},
		{"largest", "ev-18446744073709551615", 1<<64 - 1, true},
		{"formatted", FormatSeq("cmd", 1<<40), 1 << 40, true},
		{"dash-in-prefix", "node-a-cmd-7", 7, true},
		{"empty", "", 0, false},
		{"no-dash", "cmd", 0, false},
		{"no-number", "cmd-", 0, false},
		{"zero", "cmd-0", 0, false},
		{"letters", "cmd-x", 0, false},
		{"trailing-letter", "cmd-1x", 0, false},
		{"overflow", "ev-18446744073709551616", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSeq(tt.id)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("ParseSeq(%q) = %d, %v; want %d, ok %v", tt.id, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestFinished(t *testing.T) {
	tests := []struct {
		status fleetv1.CommandStatus
		want   bool
	}{
		{fleetv1.CommandStatus_COMMAND_STATUS_UNSPECIFIED, true},
		{fleetv1.CommandStatus_COMMAND_STATUS_PENDING, false},
		{fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED, false},
		{fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, false},
		{fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, true},
		{fleetv1.CommandStatus_COMMAND_STATUS_FAILED, true},
		{fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED, true},
	}
	if len(tests) != len(fleetv1.CommandStatus_name) {
		t.Fatalf("%d statuses tested, %d exist", len(tests), len(fleetv1.CommandStatus_name))
	}
	for _, tt := range tests {
		t.Run(tt.status.String(), func(t *testing.T) {
			if got := Finished(&fleetv1.Command{Status: tt.status}); got != tt.want {
				t.Errorf("Finished = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWriteEmpty(t *testing.T) {
	tests := []struct {
		name string
		w    Write
		want bool
	}{
		{"zero", Write{}, true},
		{"empty-slices", Write{Nodes: []*fleetv1.Node{}, Counters: map[string]uint64{}, Tokens: []*Token{}, NodeKeys: []*NodeKey{}, DeleteNodeKeys: []string{}, Audit: []*AuditEntry{}}, true},
		{"node", Write{Nodes: []*fleetv1.Node{{NodeId: "n"}}}, false},
		{"delete", Write{DeleteNodes: []string{"n"}}, false},
		{"command", Write{Commands: []*fleetv1.Command{{Id: "cmd-1"}}}, false},
		{"event", Write{Events: []*fleetv1.HealthEvent{{Id: "ev-1"}}}, false},
		{"counter", Write{Counters: map[string]uint64{"ids": 0}}, false},
		{"token", Write{Tokens: []*Token{{Name: "ops"}}}, false},
		{"audit", Write{Audit: []*AuditEntry{{ID: "au-1"}}}, false},
		{"node-key", Write{NodeKeys: []*NodeKey{{NodeID: "n"}}}, false},
		{"delete-node-key", Write{DeleteNodeKeys: []string{"n"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.w.Empty(); got != tt.want {
				t.Errorf("Empty() = %v, want %v", got, tt.want)
			}
		})
	}
}
