package store

import (
	"bytes"
	"testing"
	"time"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// TestStoredForm pins the bytes every backend stores for the records that
// are not protobuf messages: data written by one release must read back in
// the next, so a change here is a change of the stored format.
func TestStoredForm(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	hash := bytes.Repeat([]byte{1}, 32)
	tests := []struct {
		name   string
		encode func() ([]byte, error)
		want   string
	}{
		{"token", func() ([]byte, error) {
			return EncodeToken(&Token{Name: "ops", Role: controlplanev1.Role_ROLE_ADMIN, Hash: []byte{1, 2}, CreatedAt: at, MaxUses: 2, NodeID: "n"})
		}, `{"role":3,"hash":"AQI=","created_at":"2025-03-01T11:00:00.123456789Z","max_uses":2,"node_id":"n"}`},
		{"node-key", func() ([]byte, error) {
			return EncodeNodeKey(&NodeKey{NodeID: "n", KeyHash: hash, BoundAt: at})
		}, `{"key_hash":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=","bound_at":"2025-03-01T11:00:00.123456789Z"}`},
		{"audit", func() ([]byte, error) {
			v, _, err := EncodeAudit(&AuditEntry{ID: "au-7", Time: at, Who: "ops", Role: controlplanev1.Role_ROLE_OPERATOR, RPC: "CordonNode", NodeID: "n", Code: "OK"})
			return v, err
		}, `{"id":"au-7","time":"2025-03-01T11:00:00.123456789Z","who":"ops","role":2,"rpc":"CordonNode","node_id":"n","code":"OK"}`},
		{"breaker", func() ([]byte, error) {
			return EncodeBreaker(&BreakerState{Recent: []time.Time{at, {}}, Suppressed: 1})
		}, `{"recent":["2025-03-01T11:00:00.123456789Z","0001-01-01T00:00:00Z"],"suppressed":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.encode()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("stored as\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestStoredFormRefused: what could not be read back is refused on
// encoding.
func TestStoredFormRefused(t *testing.T) {
	late := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		encode func() error
	}{
		{"token-without-name", func() error { _, err := EncodeToken(&Token{}); return err }},
		{"token-late", func() error { _, err := EncodeToken(&Token{Name: "x", RevokedAt: late}); return err }},
		{"node-key-short-hash", func() error { _, err := EncodeNodeKey(&NodeKey{NodeID: "n", KeyHash: []byte{1}}); return err }},
		{"audit-bad-id", func() error { _, _, err := EncodeAudit(&AuditEntry{ID: "au-0"}); return err }},
		{"breaker-late", func() error { _, err := EncodeBreaker(&BreakerState{TrippedAt: late}); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.encode(); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// TestLimitsWithDefaults: a zero or negative limit takes its default, a
// set one stays.
func TestLimitsWithDefaults(t *testing.T) {
	got := Limits{EventRetention: -time.Second, EventsPerNode: 3}.WithDefaults()
	want := Limits{EventRetention: DefaultEventRetention, EventsPerNode: 3,
		CommandsPerNode: DefaultCommandsPerNode, AuditRetention: DefaultAuditRetention}
	if got != want {
		t.Fatalf("WithDefaults = %+v, want %+v", got, want)
	}
	set := Limits{EventRetention: time.Hour, EventsPerNode: 1, CommandsPerNode: 2, AuditRetention: time.Minute}
	if got := set.WithDefaults(); got != set {
		t.Fatalf("WithDefaults changed set limits: %+v", got)
	}
}
