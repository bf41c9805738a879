package gcp

import (
	"strings"
	"testing"
)

func TestLabelValue(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"kept", "train-a100_2", "train-a100_2"},
		{"lowercased", "Train", "train"},
		{"replaced", "gpu pool.a/β", "gpu-pool-a--"},
		{"shortened", strings.Repeat("x", 70), strings.Repeat("x", 63)},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := labelValue(tt.in); got != tt.want || !labelValueRE.MatchString(got) {
				t.Errorf("labelValue(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	a := requestID("insert", zoneA, "train-00000001")
	if !uuidRE.MatchString(a) {
		t.Fatalf("requestID = %q, want a UUID", a)
	}
	if requestID("insert", zoneA, "train-00000001") != a {
		t.Error("the same call got two request ids")
	}
	for _, other := range []string{
		requestID("insert", zoneB, "train-00000001"),
		requestID("delete", zoneA, "train-00000001"),
		requestID("insert", zoneA, "train-00000002"),
	} {
		if other == a {
			t.Errorf("another call has the same request id %s", a)
		}
	}
}
