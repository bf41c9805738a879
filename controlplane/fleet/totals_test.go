package fleet

import (
	"maps"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/providertest"
	"github.com/navarch/navarch/internal/fleettest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestShallowCopyCopiesEveryField sets every field of a Node and checks the
// copy has them all, so a field added to the API is not lost from views.
func TestShallowCopyCopiesEveryField(t *testing.T) {
	n := &fleetv1.Node{}
	m := n.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			m.Mutable(fd).Map().Set(protoreflect.ValueOfString("k").MapKey(), protoreflect.ValueOfString("v"))
		case fd.IsList():
			m.Mutable(fd).List().AppendMutable()
		case fd.Kind() == protoreflect.MessageKind:
			if fd.Message().FullName() == "google.protobuf.Timestamp" {
				m.Set(fd, protoreflect.ValueOfMessage(timestamppb.Now().ProtoReflect()))
			} else {
				m.Mutable(fd)
			}
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString("x"))
		case fd.Kind() == protoreflect.BoolKind:
			m.Set(fd, protoreflect.ValueOfBool(true))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(1))
		case fd.Kind() == protoreflect.Uint64Kind:
			m.Set(fd, protoreflect.ValueOfUint64(7))
		default:
			t.Fatalf("field %s of kind %s: teach this test to set it", fd.Name(), fd.Kind())
		}
	}
	if c := shallowCopy(n); !proto.Equal(c, n) {
		t.Fatalf("shallowCopy lost fields:\n got %v\nwant %v", c, n)
	}
}

// scanSummary counts the fleet the slow way, to check the kept totals.
func scanSummary(f *Fleet) *fleetv1.FleetSummary {
	s := &fleetv1.FleetSummary{}
	for _, ns := range f.all() {
		count(s, ns.node.Load(), ns.reachability(), 1)
	}
	return s
}

// scanFaults counts the active faults the slow way, without the zeros the
// kept counts may hold.
func scanFaults(f *Fleet) map[fleetv1.Remedy]uint32 {
	byRemedy := make(map[fleetv1.Remedy]uint32)
	for _, ns := range f.all() {
		countFaults(byRemedy, ns.node.Load(), 1)
	}
	return byRemedy
}

// TestTotalsStayRight checks the totals kept as nodes change against a
// full count after every kind of change, and after a restart.
func TestTotalsStayRight(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	p := &providertest.Recorder{}
	dir := t.TempDir()
	st := openStore(t, dir)
	o := Options{Store: st, Clock: clock, Providers: provider.NewRegistry(p)}
	f := newFleet(t, o)
	ctx := ctxT(t)
	check := func(step string) {
		t.Helper()
		if got, want := f.summary(), scanSummary(f); !proto.Equal(got, want) {
			t.Fatalf("%s: totals %v, counted %v", step, got, want)
		}
		if got, want := f.Gauges().Faults, scanFaults(f); !maps.Equal(got, want) {
			t.Fatalf("%s: faults by remedy %v, counted %v", step, got, want)
		}
	}
	check("empty")
	for _, id := range []string{"a", "b", "c", "d"} {
		register(t, f, id, 2)
	}
	check("registered")
	if _, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "a", GpuCount: 2, Metrics: []*fleetv1.GpuMetrics{fleettest.CleanMetrics(0), fleettest.CleanMetrics(1)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := xid(t, f, "b", 1, 79); err != nil {
		t.Fatal(err)
	}
	check("reports")
	if len(f.Gauges().Faults) == 0 {
		t.Fatal("no active fault counted after an XID")
	}
	if _, _, err := f.Drain(ctx, "c", "", time.Time{}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Provision(ctx, &controlplanev1.ProvisionNodesRequest{Provider: "test", Count: 2}); err != nil {
		t.Fatal(err)
	}
	check("actions")
	clock.Advance(40 * time.Second)
	f.Tick(ctx)
	check("stale")
	if _, err := f.Terminate(ctx, "d", "", true, 0); err != nil {
		t.Fatal(err)
	}
	clock.Advance(6 * time.Minute)
	f.Tick(ctx)
	check("offline, failed provisions")
	clock.Advance(2 * time.Hour)
	f.Tick(ctx)
	check("retention")
	f.Close()
	o.Store = st
	f = newFleet(t, o)
	check("restart")
	register(t, f, "a", 2)
	check("after restart")
}
