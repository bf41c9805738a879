package healthdelta

import (
	"errors"
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// reading is an 8-GPU node's snapshot with 18 links per GPU; change edits
// a copy of it.
func reading(t0 time.Time, change func(i int, m *fleetv1.GpuMetrics)) []*fleetv1.GpuMetrics {
	var out []*fleetv1.GpuMetrics
	for i := range 8 {
		m := &fleetv1.GpuMetrics{
			GpuIndex: uint32(i), Time: timestamppb.New(t0), TemperatureCelsius: 60, PowerUsageMilliwatts: 400_000,
			UtilizationGpuPercent: 90, MemoryUsedBytes: 40 << 30, SmClockMhz: 1980, MemoryClockMhz: 2619,
			Ecc: &fleetv1.EccCounts{}, RowRemap: &fleetv1.RowRemapState{}, Unsupported: []string{"retired_pages"},
			Processes: []*fleetv1.GpuProcess{{Pid: uint32(100 + i), UsedMemoryBytes: 1 << 30, Name: "python"}},
		}
		for l := range 18 {
			m.Nvlinks = append(m.Nvlinks, &fleetv1.NvLinkState{Link: uint32(l), Active: true})
		}
		if change != nil {
			change(i, m)
		}
		out = append(out, m)
	}
	return out
}

func TestDeltaAppliesToTheReading(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name   string
		change func(i int, m *fleetv1.GpuMetrics)
		// parts is how many parts the delta replaces in all, links is how
		// many links it sends.
		parts, links int
	}{
		{name: "scalars-only", change: func(_ int, m *fleetv1.GpuMetrics) {
			m.TemperatureCelsius = 70
			m.Time = timestamppb.New(t0.Add(time.Minute))
		}},
		{name: "one-link-down", change: func(i int, m *fleetv1.GpuMetrics) {
			if i == 3 {
				m.Nvlinks[7] = &fleetv1.NvLinkState{Link: 7, CrcErrors: 12}
			}
		}, links: 1},
		{name: "links-gone", change: func(i int, m *fleetv1.GpuMetrics) {
			if i == 2 {
				m.Nvlinks = m.Nvlinks[:16]
			}
		}, parts: 1},
		{name: "ecc-now-unread", change: func(i int, m *fleetv1.GpuMetrics) {
			if i == 0 {
				m.Ecc = nil
				m.Unsupported = append(m.Unsupported, "ecc")
			}
		}, parts: 2},
		{name: "processes-ended", change: func(_ int, m *fleetv1.GpuMetrics) { m.Processes = nil }, parts: 8},
		{name: "gpu-lost", change: nil},
		{name: "row-remap-and-recovery", change: func(i int, m *fleetv1.GpuMetrics) {
			if i == 5 {
				m.RowRemap = &fleetv1.RowRemapState{Pending: true, CorrectedRows: 2}
				m.RecoveryAction = fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET
				m.RetiredPages = &fleetv1.RetiredPages{}
			}
		}, parts: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := Full(7, reading(t0, nil))
			cur := reading(t0, tt.change)
			if tt.name == "gpu-lost" {
				cur = cur[1:]
			}
			changes := Diff(base, cur)
			parts, links := 0, 0
			for _, c := range changes {
				parts += len(c.GetReplaced())
				if !hasPart(c, nodev1.GpuMetricsPart_GPU_METRICS_PART_NVLINKS) {
					links += len(c.GetMetrics().GetNvlinks())
				}
			}
			if parts != tt.parts || links != tt.links {
				t.Errorf("delta replaces %d parts and sends %d links, want %d and %d", parts, links, tt.parts, tt.links)
			}
			sent := cloneChanges(changes)
			next, readings, err := base.Apply(8, sent)
			if err != nil {
				t.Fatal(err)
			}
			sameReadings(t, "readings", cur, readings)
			sameReadings(t, "held state", cur, next.Metrics())
			sameReadings(t, "held state against a full's", Full(8, cur).Metrics(), next.Metrics())
			if next.Sequence() != 8 {
				t.Errorf("sequence %d, want 8", next.Sequence())
			}
		})
	}
}

func TestDeltaThatDoesNotFitItsBase(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	base := Full(1, reading(t0, nil)[:4])
	tests := []struct {
		name  string
		delta *nodev1.GpuMetricsDelta
		field string
	}{
		{name: "gpu-not-in-base", delta: &nodev1.GpuMetricsDelta{Metrics: &fleetv1.GpuMetrics{GpuIndex: 6}}, field: "metric_changes[0].replaced"},
		{name: "link-not-in-base", delta: &nodev1.GpuMetricsDelta{Metrics: &fleetv1.GpuMetrics{GpuIndex: 1, Nvlinks: []*fleetv1.NvLinkState{{Link: 3}, {Link: 30}}}}, field: "metric_changes[0].metrics.nvlinks[1].link"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := base.Apply(2, []*nodev1.GpuMetricsDelta{tt.delta})
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("error %v, want one on %s", err, tt.field)
			}
		})
	}
}

func TestEqualPartsAreShared(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	a, b := Full(1, reading(t0, nil)), Full(1, reading(t0.Add(time.Second), nil))
	for i := range a.gpus {
		if a.gpus[i].parts != b.gpus[i].parts || a.gpus[i].parts != a.gpus[0].parts {
			t.Fatalf("GPU %d's parts are not shared", i)
		}
	}
}

// TestUnequalNamesAreNotShared: two lists of unsupported groups share a
// set only when they are equal, whatever bytes the names hold.
func TestUnequalNamesAreNotShared(t *testing.T) {
	tests := []struct {
		name string
		a, b []string
	}{
		{name: "split-at-nul", a: []string{"ecc\x00nvlink"}, b: []string{"ecc", "nvlink"}},
		{name: "empty-name", a: []string{""}, b: []string{"", ""}},
		{name: "order", a: []string{"ecc", "nvlink"}, b: []string{"nvlink", "ecc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := internNames(tt.a), internNames(tt.b)
			if !slices.Equal(a.names, tt.a) || !slices.Equal(b.names, tt.b) {
				t.Fatalf("%q and %q are held as %q and %q", tt.a, tt.b, a.names, b.names)
			}
		})
	}
}

func TestMetricsAreTheCallersOwn(t *testing.T) {
	h := Full(1, reading(time.Unix(1_700_000_000, 0), nil))
	m := h.Metrics()
	m[0].Nvlinks[0].Active = false
	m[0].Processes[0].Pid = 1
	if again := h.Metrics(); !again[0].Nvlinks[0].Active || again[0].Processes[0].Pid != 100 {
		t.Fatal("changing a returned message changed the held state")
	}
}

// TestScalarsOfCopiesEveryScalar fails when GpuMetrics gains a field that
// scalarsOf neither copies nor treats as a part.
func TestScalarsOfCopiesEveryScalar(t *testing.T) {
	m := &fleetv1.GpuMetrics{}
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.StringKind:
			r.Set(fd, protoreflect.ValueOfList(r.Mutable(fd).List()))
			r.Mutable(fd).List().Append(protoreflect.ValueOfString("x"))
		case fd.IsList():
			r.Mutable(fd).List().Append(r.Mutable(fd).List().NewElement())
		case fd.Kind() == protoreflect.MessageKind:
			r.Mutable(fd)
		case fd.Kind() == protoreflect.EnumKind:
			r.Set(fd, protoreflect.ValueOfEnum(1))
		case fd.Kind() == protoreflect.Uint64Kind:
			r.Set(fd, protoreflect.ValueOfUint64(1))
		default:
			r.Set(fd, protoreflect.ValueOfUint32(1))
		}
	}
	s := scalarsOf(m)
	rebuilt := proto.CloneOf(s)
	proto.Merge(rebuilt, partsOf(m).message(m.Processes))
	if !proto.Equal(rebuilt, m) {
		t.Fatalf("scalars and parts do not make the whole message:\n%v\nwant\n%v", rebuilt, m)
	}
	for _, fd := range []protoreflect.Name{"ecc", "row_remap", "retired_pages", "nvlinks", "processes", "unsupported"} {
		if s.ProtoReflect().Has(fields.ByName(fd)) {
			t.Errorf("scalarsOf copied the part %s", fd)
		}
	}
}

func TestSender(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := NewSender()
	send := func(at time.Time, resp func(req *nodev1.ReportHealthRequest) *nodev1.ReportHealthResponse) *nodev1.ReportHealthRequest {
		req := &nodev1.ReportHealthRequest{}
		s.Fill(req, reading(at, nil), at)
		s.Answered(req, resp(req))
		return req
	}
	ack := func(req *nodev1.ReportHealthRequest) *nodev1.ReportHealthResponse {
		return &nodev1.ReportHealthResponse{HeldSequence: req.GetSequence()}
	}
	first := send(t0, ack)
	if len(first.GetMetrics()) != 8 || first.GetSequence() == 0 {
		t.Fatalf("first report: %d GPUs at sequence %d, want a full snapshot", len(first.GetMetrics()), first.GetSequence())
	}
	second := send(t0.Add(30*time.Second), ack)
	if second.GetBaseSequence() != first.GetSequence() || len(second.GetMetricChanges()) != 8 || second.GetSequence() != first.GetSequence()+1 {
		t.Fatalf("second report: base %d, %d changes, sequence %d; want a delta on %d", second.GetBaseSequence(), len(second.GetMetricChanges()), second.GetSequence(), first.GetSequence())
	}
	lost := send(t0.Add(time.Minute), func(*nodev1.ReportHealthRequest) *nodev1.ReportHealthResponse {
		return &nodev1.ReportHealthResponse{HeldSequence: second.GetSequence()}
	})
	if lost.GetBaseSequence() != second.GetSequence() {
		t.Fatalf("third report based on %d, want %d", lost.GetBaseSequence(), second.GetSequence())
	}
	afterLost := send(t0.Add(90*time.Second), func(*nodev1.ReportHealthRequest) *nodev1.ReportHealthResponse {
		return &nodev1.ReportHealthResponse{FullSnapshotWanted: true}
	})
	if afterLost.GetBaseSequence() != second.GetSequence() {
		t.Fatalf("a report after one not acknowledged is based on %d, want %d", afterLost.GetBaseSequence(), second.GetSequence())
	}
	repair := send(t0.Add(91*time.Second), ack)
	if len(repair.GetMetrics()) != 8 {
		t.Fatal("after a refused delta the next report is not a full snapshot")
	}
	if d := send(t0.Add(91*time.Second+FullEvery-time.Second), ack); len(d.GetMetricChanges()) != 8 {
		t.Fatal("a report within FullEvery of the last full is not a delta")
	}
	if f := send(t0.Add(91*time.Second+FullEvery), ack); len(f.GetMetrics()) != 8 {
		t.Fatal("no full snapshot FullEvery after the last one")
	}
	s.Forget()
	if f := send(t0.Add(FullEvery+2*time.Minute), ack); len(f.GetMetrics()) != 8 {
		t.Fatal("no full snapshot after Forget")
	}
}

func hasPart(c *nodev1.GpuMetricsDelta, p nodev1.GpuMetricsPart) bool {
	for _, q := range c.GetReplaced() {
		if q == p {
			return true
		}
	}
	return false
}

// cloneChanges is the delta as the control plane decodes it: messages of
// its own.
func cloneChanges(in []*nodev1.GpuMetricsDelta) []*nodev1.GpuMetricsDelta {
	b, err := proto.Marshal(&nodev1.ReportHealthRequest{MetricChanges: in})
	if err != nil {
		panic(err)
	}
	var req nodev1.ReportHealthRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		panic(err)
	}
	return req.GetMetricChanges()
}

func sameReadings(t *testing.T, what string, want, got []*fleetv1.GpuMetrics) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d GPUs, want %d", what, len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(want[i], got[i]) {
			t.Errorf("%s: GPU %d is\n%v\nwant\n%v", what, i, got[i], want[i])
		}
	}
}

// TestInternedPartsAreForgotten: once nothing holds an interned part, its
// entry leaves the table, so parts that no GPU reports any more do not
// pile up; one still held stays.
func TestInternedPartsAreForgotten(t *testing.T) {
	key := func(name string) string { return string(protowire.AppendString([]byte{kindNames}, name)) }
	held := internNames([]string{"kept-group"})
	internNames([]string{"dropped-group"})
	present := func(k string) bool {
		interned.mu.Lock()
		defer interned.mu.Unlock()
		_, ok := interned.byKey[k]
		return ok
	}
	testutil.Eventually(t, "the unused part's entry to go", func() bool {
		runtime.GC()
		return !present(key("dropped-group"))
	})
	if !present(key("kept-group")) {
		t.Fatal("the entry of a part still held went")
	}
	runtime.KeepAlive(held)
}

// TestLinkSetsShareWhatIsEqual: equal link sets are one set, found again
// with one allocation (the key's buffer) and no link interned again; a
// set that differs in one link is its own, and shares the links it has in
// common.
func TestLinkSetsShareWhatIsEqual(t *testing.T) {
	links := func(down uint32) []*fleetv1.NvLinkState {
		var out []*fleetv1.NvLinkState
		for l := range uint32(18) {
			out = append(out, &fleetv1.NvLinkState{Link: l, Active: l != down, ReplayErrors: uint64(l) * 7})
		}
		return out
	}
	up, again, oneDown := internLinks(links(99)), internLinks(links(99)), internLinks(links(3))
	if up != again {
		t.Fatal("equal link sets are not shared")
	}
	if oneDown == up {
		t.Fatal("a set with a link down shares the set with every link up")
	}
	for i := range up.links {
		if shared := up.links[i] == oneDown.links[i]; shared != (i != 3) {
			t.Errorf("link %d: shared = %v between the two sets", i, shared)
		}
		if !proto.Equal(oneDown.links[i], links(3)[i]) {
			t.Errorf("link %d held as %v", i, oneDown.links[i])
		}
	}
	in := links(99)
	if n := testing.AllocsPerRun(100, func() { internLinks(in) }); n > 1 {
		t.Errorf("finding a link set in use took %v allocations, want 1", n)
	}
	runtime.KeepAlive(up)
	runtime.KeepAlive(oneDown)
}
