package policy

import (
	"strings"
	"testing"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestXIDsOfNote checks the XIDs the docs and the issue single out, beside
// the catalog walk in catalog_test.go.
func TestXIDsOfNote(t *testing.T) {
	p := Default()
	rows := []struct {
		name   string
		codes  []uint32
		health fleetv1.HealthStatus
		remedy fleetv1.Remedy
		cause  string
	}{
		{"restart-app", []uint32{8, 11, 13, 25, 31, 32, 39, 60, 68, 80, 94, 96, 126, 139}, healthy, fleetv1.Remedy_REMEDY_RESTART_APPLICATION, ""},
		{"ignore", []uint32{14, 43, 63, 92, 106, 107}, healthy, fleetv1.Remedy_REMEDY_NONE, ""},
		{"double-bit-ecc", []uint32{48}, unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "double-bit"},
		{"reset-class", []uint32{46, 62, 64, 95, 109, 110, 119, 120, 136, 140, 143, 155, 156, 158}, unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, ""},
		{"nvlink-error", []uint32{74}, unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "NVLink"},
		{"nvlink5-code-alone", []uint32{144, 150}, unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "NVLink"},
		{"fell-off-bus", []uint32{79}, unhealthy, fleetv1.Remedy_REMEDY_REBOOT_NODE, "fallen off the bus"},
		{"check-mechanics", []uint32{54}, unhealthy, fleetv1.Remedy_REMEDY_INSPECT_HARDWARE, "auxiliary power"},
		{"key-rotation", []uint32{151}, unhealthy, fleetv1.Remedy_REMEDY_RESTART_VM, "key rotation"},
		{"recovery-action-code-alone", []uint32{154}, healthy, fleetv1.Remedy_REMEDY_NONE, ""},
		{"unknown-xid", []uint32{999, 1, 61}, degraded, fleetv1.Remedy_REMEDY_CONTACT_SUPPORT, "unknown"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			for _, code := range row.codes {
				g := newGPU()
				ev := xid(code)
				p.Judge(g, ev, &Repeats{}, t0)
				if ev.GetHealth() != row.health || ev.GetRemedy() != row.remedy {
					t.Errorf("XID %d: event judged %s/%s, want %s/%s", code, ev.GetHealth(), ev.GetRemedy(), row.health, row.remedy)
				}
				if g.GetHealth() != row.health {
					t.Errorf("XID %d: GPU health %s, want %s", code, g.GetHealth(), row.health)
				}
				if row.cause != "" && !strings.Contains(ev.GetCause(), row.cause) {
					t.Errorf("XID %d: cause %q does not mention %q", code, ev.GetCause(), row.cause)
				}
				if row.health == healthy && len(g.GetFaults()) != 0 {
					t.Errorf("XID %d: an XID judged HEALTHY raised a fault: %v", code, g.GetFaults())
				}
			}
		})
	}
}

// TestApplicationXIDStorm: application XIDs never quarantine on their own,
// but a storm on one GPU degrades it.
func TestApplicationXIDStorm(t *testing.T) {
	p := Default()
	g := newGPU()
	rep := &Repeats{}
	for i := range 9 {
		ev := xid(13)
		p.Judge(g, ev, rep, t0.Add(time.Duration(i)*10*time.Second))
		if ev.GetHealth() != healthy {
			t.Fatalf("event %d judged %s", i+1, ev.GetHealth())
		}
	}
	ev := xid(13)
	p.Judge(g, ev, rep, t0.Add(90*time.Second))
	if ev.GetHealth() != degraded || !ev.GetEscalated() || ev.GetRepeatCount() != 10 {
		t.Fatalf("10th XID 13 in the window: %s escalated=%t repeats=%d", ev.GetHealth(), ev.GetEscalated(), ev.GetRepeatCount())
	}
	if g.GetHealth() != degraded {
		t.Fatalf("GPU health %s, want DEGRADED", g.GetHealth())
	}
	// Spread out beyond the window, the same count stays healthy.
	g2, rep2 := newGPU(), &Repeats{}
	for i := range 20 {
		ev := xid(13)
		p.Judge(g2, ev, rep2, t0.Add(time.Duration(i)*2*time.Minute))
		if ev.GetHealth() != healthy {
			t.Fatalf("XID 13 every 2m judged %s at %d", ev.GetHealth(), i)
		}
	}
	// A burst is one incident: a hundred XID 13s within a second, as one
	// faulting kernel logs them, are not a storm.
	g4, rep4 := newGPU(), &Repeats{}
	for i := range 100 {
		ev := xid(13)
		p.Judge(g4, ev, rep4, t0.Add(time.Duration(i)*10*time.Millisecond))
		if ev.GetHealth() != healthy || ev.GetRepeatCount() != 1 {
			t.Fatalf("XID 13 #%d of one burst: %s, %d incidents", i+1, ev.GetHealth(), ev.GetRepeatCount())
		}
	}
	// XID 45 in the volume of the public report never takes a GPU past
	// DEGRADED.
	g3, rep3 := newGPU(), &Repeats{}
	for i := range 5000 {
		p.Judge(g3, xid(45), rep3, t0.Add(time.Duration(i)*time.Second))
	}
	if g3.GetHealth() == unhealthy {
		t.Fatal("XID 45 storm made the GPU UNHEALTHY")
	}
}

func TestDegradedXIDExpires(t *testing.T) {
	p := Default()
	g := newGPU()
	p.Judge(g, xid(999), &Repeats{}, t0)
	if got := p.Expire(g, t0.Add(30*time.Minute)); len(got) != 0 || g.GetHealth() != degraded {
		t.Fatalf("expired too early: %v %s", got, g.GetHealth())
	}
	got := p.Expire(g, t0.Add(time.Hour))
	if len(got) != 1 || got[0].GetKind() != fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED || g.GetHealth() != healthy {
		t.Fatalf("after the hold: events %v, health %s", got, g.GetHealth())
	}
	// UNHEALTHY faults never expire on their own.
	p.Judge(g, xid(79), &Repeats{}, t0)
	p.Expire(g, t0.Add(30*24*time.Hour))
	if g.GetHealth() != unhealthy {
		t.Fatalf("XID 79 fault expired: %s", g.GetHealth())
	}
	ev := p.ClearAfterReboot(g, t0.Add(31*24*time.Hour))
	if ev == nil || g.GetHealth() != healthy {
		t.Fatalf("reboot did not clear XID 79: %s", g.GetHealth())
	}
	if ev.GetKind() != fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED || !strings.Contains(ev.GetCause(), "cleared by reboot") {
		t.Fatalf("reboot event %v", ev)
	}
	if p.ClearAfterReboot(g, t0) != nil {
		t.Fatal("a second reboot with nothing to clear returned an event")
	}
}

// TestEscalation: the same reset remedy recurring on one GPU after two
// remedies escalates to hardware inspection.
func TestEscalation(t *testing.T) {
	p := Default()
	g := newGPU()
	for episode := 1; episode <= 3; episode++ {
		ev := xid(48)
		p.Judge(g, ev, &Repeats{}, t0)
		if episode < 3 && (ev.GetRemedy() != fleetv1.Remedy_REMEDY_RESET_GPU || ev.GetEscalated()) {
			t.Fatalf("episode %d: remedy %s escalated=%t", episode, ev.GetRemedy(), ev.GetEscalated())
		}
		if episode == 3 {
			if ev.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE || !ev.GetEscalated() || g.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE {
				t.Fatalf("third episode: remedy %s escalated=%t GPU remedy %s", ev.GetRemedy(), ev.GetEscalated(), g.GetRemedy())
			}
		}
		// The remedy was applied: the node rebooted.
		if episode < 3 {
			p.ClearAfterReboot(g, t0)
		}
	}
	if g.GetRemedyEpisodes() != 3 {
		t.Fatalf("episodes %d, want 3", g.GetRemedyEpisodes())
	}
}

// TestEscalationCountsIncidentsNotFaults: the faults one incident raises
// together (XID 48 with its ECC count and pending remap; XID 79 with the
// lost GPU) wait for one remedy and count as one episode.
func TestEscalationCountsIncidentsNotFaults(t *testing.T) {
	p := Default()
	g := newGPU()
	p.Judge(g, xid(48), &Repeats{}, t0)
	evs := p.Observe(g, &fleetv1.GpuMetrics{
		Ecc:         &fleetv1.EccCounts{VolatileUncorrected: 1},
		RowRemap:    &fleetv1.RowRemapState{Pending: true},
		Unsupported: []string{"nvlink"},
	}, t0)
	if len(evs) != 2 || len(g.GetFaults()) != 3 {
		t.Fatalf("double-bit error raised %d events, %d faults; want 2 and 3", len(evs), len(g.GetFaults()))
	}
	for _, ev := range evs {
		if ev.GetEscalated() {
			t.Fatalf("first incident escalated: %v", ev)
		}
	}
	if g.GetRemedyEpisodes() != 1 {
		t.Fatalf("one incident counted %d episodes", g.GetRemedyEpisodes())
	}
	p.ClearAfterReboot(g, t0)
	p.Observe(g, &fleetv1.GpuMetrics{Ecc: &fleetv1.EccCounts{}, RowRemap: &fleetv1.RowRemapState{}, Unsupported: []string{"nvlink"}}, t0)

	// Second incident: the GPU falls off the bus.
	ev := xid(79)
	p.Judge(g, ev, &Repeats{}, t0)
	lost := &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_GPU_LOST}
	p.Judge(g, lost, &Repeats{}, t0)
	if ev.GetEscalated() || lost.GetEscalated() || g.GetRemedyEpisodes() != 2 {
		t.Fatalf("second incident: escalated %t/%t, episodes %d", ev.GetEscalated(), lost.GetEscalated(), g.GetRemedyEpisodes())
	}
	p.ClearAfterReboot(g, t0)

	// Third incident, after two remedies: inspect the hardware.
	ev = xid(79)
	p.Judge(g, ev, &Repeats{}, t0)
	if !ev.GetEscalated() || ev.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE {
		t.Fatalf("third incident: remedy %s escalated %t", ev.GetRemedy(), ev.GetEscalated())
	}
	// A fault joining the escalated incident is escalated with it.
	lost = &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_GPU_LOST}
	p.Judge(g, lost, &Repeats{}, t0)
	if !lost.GetEscalated() || lost.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE || g.GetRemedyEpisodes() != 3 {
		t.Fatalf("joined fault: remedy %s escalated %t episodes %d", lost.GetRemedy(), lost.GetEscalated(), g.GetRemedyEpisodes())
	}
}

// TestEpisodesBesideOtherFaults: a link that stays down through reboots
// does not swallow later episodes, and a repeated application XID, whose
// remedy is inspection but never a reset, neither counts as an episode nor
// hides one.
func TestEpisodesBesideOtherFaults(t *testing.T) {
	p := Default()
	g := newGPU()
	down := &fleetv1.GpuMetrics{Nvlinks: []*fleetv1.NvLinkState{{Link: 0, Active: false}}, Ecc: &fleetv1.EccCounts{}, RowRemap: &fleetv1.RowRemapState{}}
	for i := range 17 {
		down.Nvlinks = append(down.Nvlinks, &fleetv1.NvLinkState{Link: uint32(i + 1), Active: true})
	}
	p.Observe(g, down, t0)
	var ev *fleetv1.HealthEvent
	for incident := 1; incident <= 3; incident++ {
		ev = xid(79)
		p.Judge(g, ev, &Repeats{}, t0)
		if incident < 3 {
			p.ClearAfterReboot(g, t0)
			p.Observe(g, down, t0) // the link is still down after the reboot
		}
	}
	if !ev.GetEscalated() || ev.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE || g.GetRemedyEpisodes() != 3 {
		t.Fatalf("third XID 79 beside a link that stays down: remedy %s escalated %t episodes %d", ev.GetRemedy(), ev.GetEscalated(), g.GetRemedyEpisodes())
	}

	g = newGPU()
	rep := &Repeats{}
	p.Judge(g, xid(32), rep, t0)
	p.Judge(g, xid(32), rep, t0.Add(time.Hour)) // repeated: inspect
	if g.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE {
		t.Fatalf("repeated XID 32: remedy %s", g.GetRemedy())
	}
	if g.GetRemedyEpisodes() != 0 || awaitingRemedy(g) {
		t.Fatalf("a repeated XID 32 counted as a reset episode: %d, awaiting %t", g.GetRemedyEpisodes(), awaitingRemedy(g))
	}
	ev = xid(48)
	p.Judge(g, ev, &Repeats{}, t0)
	if g.GetRemedyEpisodes() != 1 || ev.GetEscalated() {
		t.Fatalf("XID 48 beside a repeated XID 32: episodes %d, escalated %t", g.GetRemedyEpisodes(), ev.GetEscalated())
	}
}

// TestRepeatAskingForAResetJoinsTheEpisode: a rule whose repeat asks for a
// reset opens an episode from then on, and a fault that follows joins it
// rather than counting the same reset twice.
func TestRepeatAskingForAResetJoinsTheEpisode(t *testing.T) {
	p, err := Parse([]byte("xids:\n  - codes: [13]\n    meaning: graphics exception\n    health: HEALTHY\n    remedy: CHECK_APPLICATION\n    repeat: {count: 2, window: 1h, health: DEGRADED, remedy: RESET_GPU}\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := newGPU()
	rep := &Repeats{}
	p.Judge(g, xid(13), rep, t0)
	p.Judge(g, xid(13), rep, t0.Add(time.Minute))
	if g.GetRemedyEpisodes() != 1 || !awaitingRemedy(g) || g.GetRemedy() != fleetv1.Remedy_REMEDY_RESET_GPU {
		t.Fatalf("repeated XID 13: episodes %d, awaiting %t, remedy %s", g.GetRemedyEpisodes(), awaitingRemedy(g), g.GetRemedy())
	}
	p.Judge(g, xid(48), &Repeats{}, t0)
	if g.GetRemedyEpisodes() != 1 {
		t.Fatalf("XID 48 while a reset is awaited counted %d episodes", g.GetRemedyEpisodes())
	}
	// Three episodes: the cause says how many times a reset or reboot was
	// needed, not that remedies were applied.
	for range 2 {
		p.ClearAfterReboot(g, t0)
		p.Judge(g, xid(48), &Repeats{}, t0)
	}
	if c := g.GetHealthCause(); !strings.Contains(c, "needed a reset or reboot 3 times") {
		t.Fatalf("cause %q", c)
	}
}

// TestConditionAfterRebootHoldsNoEpisode: a link still down after the
// reboot that ended its episode does not keep the next one open: when an
// XID 63 of a later episode expires, the one after counts anew. (The
// default judges XID 63 HEALTHY, as the catalog does; a fleet may not.)
func TestConditionAfterRebootHoldsNoEpisode(t *testing.T) {
	p, err := Parse([]byte("xids:\n  - {codes: [63], meaning: row remapping event, health: DEGRADED, remedy: RESET_GPU}\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := newGPU()
	down := &fleetv1.GpuMetrics{Ecc: &fleetv1.EccCounts{}, RowRemap: &fleetv1.RowRemapState{}}
	for i := range 18 {
		down.Nvlinks = append(down.Nvlinks, &fleetv1.NvLinkState{Link: uint32(i), Active: i > 0})
	}
	p.Observe(g, down, t0) // episode 1
	p.ClearAfterReboot(g, t0)
	p.Judge(g, xid(63), &Repeats{}, t0) // episode 2
	p.Expire(g, t0.Add(p.DegradedHold()+time.Minute))
	if awaitingRemedy(g) {
		t.Fatal("the link down since before the reboot holds the episode open")
	}
	ev := xid(63)
	p.Judge(g, ev, &Repeats{}, t0.Add(2*p.DegradedHold()))
	if g.GetRemedyEpisodes() != 3 || !ev.GetEscalated() {
		t.Fatalf("episodes %d, escalated %t", g.GetRemedyEpisodes(), ev.GetEscalated())
	}
}

// TestWeightiestRemedyLeads: among equally bad faults the GPU shows the
// remedy that asks most: a storm of application XIDs does not hide a reset
// the GPU waits for.
func TestWeightiestRemedyLeads(t *testing.T) {
	p := Default()
	g := newGPU()
	p.Observe(g, &fleetv1.GpuMetrics{RowRemap: &fleetv1.RowRemapState{Pending: true}, Unsupported: []string{"nvlink"}}, t0)
	rep := &Repeats{}
	for i := range 10 {
		p.Judge(g, xid(13), rep, t0.Add(time.Duration(i)*time.Minute))
	}
	if g.GetHealth() != degraded || g.GetRemedy() != fleetv1.Remedy_REMEDY_RESET_GPU {
		t.Fatalf("health %s remedy %s (%s)", g.GetHealth(), g.GetRemedy(), g.GetHealthCause())
	}
}

// TestRepeatChangesRemedy: XID 32 and XID 74 suggest inspecting the
// hardware when they come back within a day: XID 32 after any quiet spell,
// XID 74 after the reset it asked for.
func TestRepeatChangesRemedy(t *testing.T) {
	p := Default()
	for _, tc := range []struct {
		code   uint32
		first  fleetv1.Remedy
		health fleetv1.HealthStatus
	}{
		{32, fleetv1.Remedy_REMEDY_RESTART_APPLICATION, degraded},
		{74, fleetv1.Remedy_REMEDY_RESET_GPU, unhealthy},
	} {
		g := newGPU()
		rep := &Repeats{}
		ev := xid(tc.code)
		p.Judge(g, ev, rep, t0)
		if ev.GetRemedy() != tc.first || ev.GetEscalated() {
			t.Fatalf("first XID %d: remedy %s escalated %t", tc.code, ev.GetRemedy(), ev.GetEscalated())
		}
		// The burst goes on: the same incident.
		ev = xid(tc.code)
		p.Judge(g, ev, rep, t0.Add(500*time.Millisecond))
		if ev.GetEscalated() || ev.GetRepeatCount() != 1 {
			t.Fatalf("XID %d half a second later: escalated %t, %d incidents", tc.code, ev.GetEscalated(), ev.GetRepeatCount())
		}
		p.ClearAfterReset(g, t0.Add(time.Hour))
		ev = xid(tc.code)
		p.Judge(g, ev, rep, t0.Add(6*time.Hour))
		if ev.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE || !ev.GetEscalated() || ev.GetHealth() != tc.health {
			t.Fatalf("repeated XID %d: remedy %s escalated %t health %s", tc.code, ev.GetRemedy(), ev.GetEscalated(), ev.GetHealth())
		}
		if g.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE || g.GetHealth() != tc.health {
			t.Fatalf("GPU after repeated XID %d: remedy %s health %s", tc.code, g.GetRemedy(), g.GetHealth())
		}
		// A day later the count starts again.
		g = newGPU()
		rep = &Repeats{}
		p.Judge(g, xid(tc.code), rep, t0)
		p.ClearAfterReset(g, t0.Add(time.Hour))
		ev = xid(tc.code)
		p.Judge(g, ev, rep, t0.Add(25*time.Hour))
		if ev.GetRemedy() != tc.first {
			t.Fatalf("XID %d a day apart: remedy %s", tc.code, ev.GetRemedy())
		}
	}
	if _, err := Parse([]byte("xids:\n  - codes: [32]\n    meaning: m\n    health: DEGRADED\n    remedy: WATCH\n    repeat: {count: 2, window: 1h}\n")); err == nil || !strings.Contains(err.Error(), "repeat") {
		t.Fatalf("repeat with neither health nor remedy: %v", err)
	}
}

func TestFoundClearsOnlyTheLoss(t *testing.T) {
	p := Default()
	g := newGPU()
	p.Judge(g, xid(48), &Repeats{}, t0)
	p.Judge(g, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_GPU_LOST}, nil, t0)
	if !g.GetLost() || len(g.GetFaults()) != 2 {
		t.Fatalf("lost=%t faults=%v", g.GetLost(), g.GetFaults())
	}
	ev := p.Found(g, t0.Add(time.Minute))
	if ev == nil || ev.GetKind() != fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED {
		t.Fatalf("found event %v", ev)
	}
	if g.GetLost() || len(g.GetFaults()) != 1 || g.GetFaults()[0].GetXid() != 48 {
		t.Fatalf("after found: lost=%t faults=%v", g.GetLost(), g.GetFaults())
	}
	if g.GetHealth() == healthy {
		t.Fatal("the XID 48 fault was cleared along with the loss")
	}
	if p.Found(g, t0) != nil {
		t.Fatal("a GPU that was not lost was found")
	}
}

func BenchmarkJudgeXID(b *testing.B) {
	p := Default()
	rep := &Repeats{}
	b.ReportAllocs()
	for i := range b.N {
		g := newGPU()
		p.Judge(g, xid(uint32([]int{13, 79, 48, 94}[i%4])), rep, t0)
	}
}
