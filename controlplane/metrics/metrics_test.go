package metrics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/controlplane/policy"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// TestSeriesFromTheStart: before anything happens, every XID code the
// policy names, "other", every other event kind and every reason the gate
// refuses for has its series at zero, so that increase() and the alerts
// see the first one; a code the policy does not name waits for its first
// event.
func TestSeriesFromTheStart(t *testing.T) {
	known := policy.Default().KnownXIDs()
	if len(known) < 50 {
		t.Fatalf("the default policy names %d XID codes", len(known))
	}
	m := New(Options{KnownXIDs: append(known, 4000)})
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := map[string]map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			if series[mf.GetName()] == nil {
				series[mf.GetName()] = map[string]float64{}
			}
			series[mf.GetName()][strings.Join(labels, ",")] = s.GetCounter().GetValue()
		}
	}
	events := series["navarch_health_events_total"]
	var want []string
	for _, code := range known {
		want = append(want, fmt.Sprintf("kind=xid,xid=%d", code))
	}
	want = append(want, "kind=xid,xid=other")
	for k, word := range eventKinds {
		if k != fleetv1.EventKind_EVENT_KIND_XID {
			want = append(want, "kind="+word+",xid=")
		}
	}
	for _, r := range auth.Refusals {
		if v, ok := series["navarch_auth_refused_total"]["reason="+string(r)]; !ok || v != 0 {
			t.Errorf("navarch_auth_refused_total{reason=%q}: %g, present %t; want 0", r, v, ok)
		}
	}
	for _, w := range want {
		if v, ok := events[w]; !ok || v != 0 {
			t.Errorf("navarch_health_events_total{%s}: %g, present %t; want 0", w, v, ok)
		}
	}
	if len(events) != len(want) {
		t.Errorf("%d health event series, want %d: %v", len(events), len(want), events)
	}
}

// TestAuthRefused: each refusal the gate tells of counts under its reason.
func TestAuthRefused(t *testing.T) {
	m := New(Options{})
	m.AuthRefused(auth.RefusedRoleTooLow)
	m.AuthRefused(auth.RefusedRateLimited)
	m.AuthRefused(auth.RefusedRateLimited)
	for _, tt := range []struct {
		name   string
		reason auth.Refusal
		want   float64
	}{
		{"role-too-low", auth.RefusedRoleTooLow, 1},
		{"rate-limited", auth.RefusedRateLimited, 2},
		{"unauthenticated-none", auth.RefusedUnauthenticated, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := testutil.ToFloat64(m.authRefused.WithLabelValues(string(tt.reason))); got != tt.want {
				t.Fatalf("navarch_auth_refused_total{reason=%q} = %g, want %g", tt.reason, got, tt.want)
			}
		})
	}
}

// TestCommitted: each saved event counts under its kind and XID code, each
// command status under its type, a finished command's time from queued to
// its end goes into the histogram, and an automatic cordon counts once.
func TestCommitted(t *testing.T) {
	queued := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	cmd := func(typ fleetv1.CommandType, st fleetv1.CommandStatus, took time.Duration) *fleetv1.Command {
		return &fleetv1.Command{Type: typ, Status: st, CreatedAt: timestamppb.New(queued), UpdatedAt: timestamppb.New(queued.Add(took))}
	}
	xid := func(code uint32) *fleetv1.HealthEvent {
		return &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: code}
	}
	m := New(Options{})
	m.Committed([]*fleetv1.HealthEvent{xid(79), xid(79), xid(48), xid(4000)}, []*fleetv1.Command{
		cmd(fleetv1.CommandType_COMMAND_TYPE_CORDON, fleetv1.CommandStatus_COMMAND_STATUS_PENDING, 0),
	}, true)
	m.Committed([]*fleetv1.HealthEvent{{Kind: fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED, GpuIndex: 2}}, []*fleetv1.Command{
		cmd(fleetv1.CommandType_COMMAND_TYPE_DRAIN, fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED, time.Second),
		cmd(fleetv1.CommandType_COMMAND_TYPE_RESET_GPU, fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, 40*time.Second),
		cmd(fleetv1.CommandType_COMMAND_TYPE_DRAIN, fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED, 2*time.Second),
	}, false)

	counters := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"xid-79", []string{"xid", "79"}, 2},
		{"xid-48", []string{"xid", "48"}, 1},
		{"xid-made-up", []string{"xid", "other"}, 1},
		{"ecc-uncorrected", []string{"ecc-uncorrected", ""}, 1},
		{"gpu-lost-none-yet", []string{"gpu-lost", ""}, 0},
	}
	for _, tt := range counters {
		t.Run("events-"+tt.name, func(t *testing.T) {
			if got := testutil.ToFloat64(m.events.WithLabelValues(tt.labels...)); got != tt.want {
				t.Fatalf("navarch_health_events_total%v = %g, want %g", tt.labels, got, tt.want)
			}
		})
	}
	commands := []struct {
		name        string
		typ, status string
		want        float64
	}{
		{"cordon-pending", "cordon", "pending", 1},
		{"drain-delivered", "drain", "delivered", 1},
		{"drain-cancelled", "drain", "cancelled", 1},
		{"reset-succeeded", "reset_gpu", "succeeded", 1},
		{"reboot-none", "reboot", "failed", 0},
	}
	for _, tt := range commands {
		t.Run("commands-"+tt.name, func(t *testing.T) {
			if got := testutil.ToFloat64(m.commands.WithLabelValues(tt.typ, tt.status)); got != tt.want {
				t.Fatalf("navarch_commands_total{%s,%s} = %g, want %g", tt.typ, tt.status, got, tt.want)
			}
		})
	}
	durations := []struct {
		typ   string
		count uint64
		sum   float64
	}{
		{"drain", 1, 2}, {"reset_gpu", 1, 40}, {"cordon", 0, 0},
	}
	for _, tt := range durations {
		t.Run("duration-"+tt.typ, func(t *testing.T) {
			h := histogram(t, m, "navarch_command_duration_seconds", "type", tt.typ)
			if h.GetSampleCount() != tt.count || h.GetSampleSum() != tt.sum {
				t.Fatalf("%d commands, %g s in all; want %d and %g", h.GetSampleCount(), h.GetSampleSum(), tt.count, tt.sum)
			}
		})
	}
	if got := testutil.ToFloat64(m.autoCordons); got != 1 {
		t.Fatalf("navarch_auto_cordons_total = %g, want 1", got)
	}
	m.Resynced()
	if got := testutil.ToFloat64(m.resyncs); got != 1 {
		t.Fatalf("navarch_watch_resyncs_total = %g, want 1", got)
	}
}

// histogram is the one series of a histogram family with the label given,
// or the family's only series when the label is empty.
func histogram(t *testing.T, m *Metrics, name, label, value string) *dto.Histogram {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if label == "" || slices.ContainsFunc(s.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == label && l.GetValue() == value }) {
				return s.GetHistogram()
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return nil
}

// failingStore is a store whose writes fail while failing is set.
type failingStore struct {
	store.Store
	failing bool
	writes  int
}

func (s *failingStore) Apply(_ context.Context, w store.Write) error {
	if w.Empty() {
		return nil
	}
	s.writes++
	if s.failing {
		return errors.New("disk full")
	}
	return nil
}

// TestStoreWrites: each write that succeeds is timed, each that fails is
// counted and passed on, and an empty one is neither.
func TestStoreWrites(t *testing.T) {
	m := New(Options{})
	under := &failingStore{}
	st := m.Store(under)
	ctx := context.Background()
	write := store.Write{Counters: map[string]uint64{"ids": 1}}
	for range 3 {
		if err := st.Apply(ctx, write); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Apply(ctx, store.Write{}); err != nil {
		t.Fatal(err)
	}
	under.failing = true
	if err := st.Apply(ctx, write); err == nil {
		t.Fatal("a failed write was not reported")
	}
	if under.writes != 4 {
		t.Fatalf("%d writes reached the store, want 4", under.writes)
	}
	if h := histogram(t, m, "navarch_store_write_duration_seconds", "", ""); h.GetSampleCount() != 3 {
		t.Fatalf("%d writes timed, want 3", h.GetSampleCount())
	}
	if got := testutil.ToFloat64(m.writeFailures); got != 1 {
		t.Fatalf("navarch_store_write_failures_total = %g, want 1", got)
	}
}

// TestFamiliesSorted: the node health family goes where its name sorts
// among the registry's, as Prometheus' own gatherers order them.
func TestFamiliesSorted(t *testing.T) {
	m := New(Options{})
	m.ReadFleet(smallFleet())
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !slices.IsSorted(names) || !slices.Contains(names, nodeHealthName) {
		t.Fatalf("families %v: not sorted, or without %s", names, nodeHealthName)
	}
}

// TestWebhookDrops: the counter reads what the webhooks dropped, at each
// scrape.
func TestWebhookDrops(t *testing.T) {
	m := New(Options{})
	var dropped uint64 = 7
	m.WebhookDrops(func() uint64 { return dropped })
	read := func() float64 {
		fams, err := m.Gatherer().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "navarch_webhook_dropped_total" {
				return f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no navarch_webhook_dropped_total")
		return 0
	}
	if got := read(); got != 7 {
		t.Fatalf("dropped %v, want 7", got)
	}
	dropped = 9
	if got := read(); got != 9 {
		t.Fatalf("dropped %v after more drops, want 9", got)
	}
}
