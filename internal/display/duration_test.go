package display

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr string
	}{
		{name: "days", in: "9d", want: 9 * day},
		{name: "days-and-hours", in: "1d12h", want: day + 12*time.Hour},
		{name: "fraction-of-a-day", in: "1.5d", want: 36 * time.Hour},
		{name: "go-units", in: "1h30m", want: 90 * time.Minute},
		{name: "milliseconds", in: "250ms", want: 250 * time.Millisecond},
		{name: "zero", in: "0", want: 0},
		{name: "negative", in: "-2d", want: -2 * day},
		{name: "spaces", in: " 30m ", want: 30 * time.Minute},
		{name: "empty", in: "", wantErr: `"" is not a duration such as 90s, 30m, 2h or 9d: it is empty`},
		{name: "no-unit", in: "9", wantErr: `"9" is not a duration such as 90s, 30m, 2h or 9d: 9 has no unit (ms, s, m, h or d)`},
		{name: "unknown-unit", in: "2w", wantErr: `"w" is not a unit (ms, s, m, h or d)`},
		{name: "doubled-unit", in: "5dd", wantErr: `"dd" is not a unit`},
		{name: "no-number", in: "d", wantErr: `"d" has no number before it`},
		{name: "bad-number", in: "1..5d", wantErr: `1..5d is not a number of days`},
		{name: "too-long", in: "200000d", wantErr: "it is too long"},
		{name: "sum-too-long", in: "100000d100000d", wantErr: "it is too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}
