package fleet

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestEventTimesFromTheFuture: an event up to MaxEventClockSkew ahead of
// the control plane's clock is taken (agents' clocks drift); one further
// ahead refuses the report, naming the event's time, and records nothing.
func TestEventTimesFromTheFuture(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
	f := newFleet(t, Options{Clock: clock})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	register(t, f, "n1", 2)
	tests := []struct {
		name  string
		ahead time.Duration
		field string // empty: taken
	}{
		{"past", -time.Hour, ""},
		{"at-the-skew", MaxEventClockSkew, ""},
		{"past-the-skew", MaxEventClockSkew + time.Second, "events[1].time"},
		{"next-year", 365 * 24 * time.Hour, "events[1].time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := eventCount(t, f)
			_, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{
				{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13, GpuIndex: 0},
				{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13, GpuIndex: 1, Time: timestamppb.New(clock.Now().Add(tt.ahead))},
			}})
			if tt.field == "" {
				if err != nil || eventCount(t, f) != before+2 {
					t.Fatalf("got %v, want both events taken", err)
				}
				return
			}
			if field, _ := apierr.Field(err); status.Code(err) != codes.InvalidArgument || field != tt.field {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, tt.field)
			}
			if eventCount(t, f) != before {
				t.Fatal("a refused report recorded events")
			}
		})
	}
}

func eventCount(t *testing.T, f *Fleet) int {
	t.Helper()
	evs, err := f.Events(ctxT(t), "n1", fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}
