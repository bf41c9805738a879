package policy

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// catalogRow is one row of testdata/xid-catalog.tsv.
type catalogRow struct {
	code    uint32
	applies string
	bucket  string
}

func readCatalog(t *testing.T) []catalogRow {
	t.Helper()
	f, err := os.Open("testdata/xid-catalog.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []catalogRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) != 5 {
			t.Fatalf("catalog line %q: %d columns, want 5", line, len(cols))
		}
		code, err := strconv.ParseUint(cols[0], 10, 32)
		if err != nil {
			t.Fatalf("catalog line %q: %v", line, err)
		}
		rows = append(rows, catalogRow{code: uint32(code), applies: cols[3], bucket: cols[4]})
	}
	if len(rows) < 100 {
		t.Fatalf("catalog has %d rows; the testdata was cut short", len(rows))
	}
	return rows
}

// docsTable returns the rows of the Markdown table under heading in
// docs/fault-policy.md, each as its trimmed cells with backquotes removed.
func docsTable(t *testing.T, heading string) [][]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/fault-policy.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/fault-policy.md has no %q", heading)
	}
	var rows [][]string
	inTable := false
	for _, line := range strings.Split(after, "\n") {
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break
			}
			continue
		}
		inTable = true
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(strings.TrimSpace(c), "`", "")
		}
		if strings.HasPrefix(cells[0], "---") {
			continue
		}
		rows = append(rows, cells)
	}
	return rows[1:] // the header
}

// repeatCell is a repeat rule as the docs' XID table writes it: "10 in
// 10m → DEGRADED, CHECK_APPLICATION", or "" for none.
func repeatCell(r *Repeat) string {
	if r == nil {
		return ""
	}
	var then []string
	if r.Health != fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED {
		then = append(then, healthName(r.Health))
	}
	if r.Remedy != fleetv1.Remedy_REMEDY_UNSPECIFIED {
		then = append(then, remedyName(r.Remedy))
	}
	return fmt.Sprintf("%d in %s → %s", r.Count, display.Duration(r.Window), strings.Join(then, ", "))
}

// TestEveryCataloguedXIDFollowsItsBucket walks NVIDIA's catalog: every XID
// that applies to an A100, H100, B100 or GB200 has its own default rule,
// naming the catalog's bucket, whose health and remedy are the bucket's in
// the docs' bucket table; the docs list every one of them as the policy
// judges it; and the default names no XID the catalog does not apply.
func TestEveryCataloguedXIDFollowsItsBucket(t *testing.T) {
	p := Default()
	byBucket := map[string][]string{}
	for _, row := range docsTable(t, "### Buckets") {
		byBucket[row[0]] = row
	}
	for _, b := range buckets {
		row, ok := byBucket[b.name]
		if !ok {
			t.Errorf("bucket %s is missing from the docs' bucket table", b.name)
			continue
		}
		if b.name != "NONE_GIVEN" && (row[2] != healthName(b.health) || row[3] != remedyName(b.remedy)) {
			t.Errorf("docs say bucket %s is %s/%s; the policy judges it %s/%s", b.name, row[2], row[3], healthName(b.health), remedyName(b.remedy))
		}
		if row[1] != b.means {
			t.Errorf("docs say bucket %s means %q; the policy says %q", b.name, row[1], b.means)
		}
	}
	if len(byBucket) != len(buckets) {
		t.Errorf("docs list %d buckets, the policy %d", len(byBucket), len(buckets))
	}

	docs := map[string][]string{}
	for _, row := range docsTable(t, "### Every catalogued XID") {
		docs[row[0]] = row
	}
	catalogued := map[uint32]bool{}
	for _, c := range readCatalog(t) {
		catalogued[c.code] = true
		if !strings.Contains(c.applies, "Y") {
			t.Errorf("XID %d: the catalog testdata holds a row that applies to none of the GPUs", c.code)
			continue
		}
		want := c.bucket
		if want == "-" {
			want = "NONE_GIVEN"
		}
		rule, ok := p.xids[c.code]
		if !ok {
			t.Errorf("XID %d (%s) has no rule of its own; it falls to the unknown-XID rule", c.code, want)
			continue
		}
		if rule.Bucket != want {
			t.Errorf("XID %d: rule names bucket %q, the catalog %q", c.code, rule.Bucket, want)
		}
		ev := xid(c.code)
		g := newGPU()
		p.Judge(g, ev, &Repeats{}, t0)
		if b := bucketNamed(want); want != "NONE_GIVEN" && (ev.GetHealth() != b.health || ev.GetRemedy() != b.remedy) {
			t.Errorf("XID %d (%s): judged %s/%s, the bucket asks %s/%s", c.code, want, ev.GetHealth(), ev.GetRemedy(), b.health, b.remedy)
		}
		if (want == "RESTART_APP" || want == "IGNORE") && len(g.GetFaults()) != 0 {
			t.Errorf("XID %d (%s) took the GPU out of service on its own: %v", c.code, want, g.GetFaults())
		}
		row, ok := docs[strconv.Itoa(int(c.code))]
		switch {
		case !ok:
			t.Errorf("XID %d is missing from docs/fault-policy.md", c.code)
		case row[1] != want || row[2] != rule.Meaning || row[3] != healthName(ev.GetHealth()) || row[4] != remedyName(ev.GetRemedy()):
			t.Errorf("docs row for XID %d reads %v; the policy says %s, %q, %s/%s", c.code, row, want, rule.Meaning, healthName(ev.GetHealth()), remedyName(ev.GetRemedy()))
		case row[5] != repeatCell(rule.Repeat):
			t.Errorf("docs row for XID %d has repeat %q; the policy says %q", c.code, row[5], repeatCell(rule.Repeat))
		}
	}
	for _, code := range p.KnownXIDs() {
		if !catalogued[code] {
			t.Errorf("the default policy has a rule for XID %d, which the catalog does not apply to these GPUs", code)
		}
	}
	if len(docs) != len(catalogued)+1 {
		t.Errorf("docs list %d XID rows, want the %d catalogued and 'any other'", len(docs), len(catalogued))
	}
}

func TestDecodeNVLink5(t *testing.T) {
	p := Default()
	for _, tc := range []struct {
		name   string
		code   uint32
		text   string
		health fleetv1.HealthStatus
		remedy fleetv1.Remedy
		cause  string
	}{
		{"link-down-fatal", 149, "NETIR_LINK_EVT Fatal XC0 i0 Link 02 (0x004505c6 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "NETIR_LINK_EVT"},
		{"ber-event-ignored", 149, "NETIR_BER_EVENT Nonfatal XC0 i0 Link 10 (0x00000013 0x00000002 0x00000000 0x00000000 0x00000000 0x00000000)", healthy, fleetv1.Remedy_REMEDY_NONE, ""},
		{"saw-status-2-fatal", 144, "SAW_MVB Fatal XC0 i0 Link -1 (0x00000001 0x00000002 0x00000000 0x00000000 0x00000000 0x00000000)", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "status 0x2"},
		{"saw-status-4-ignored", 144, "SAW_MVB Nonfatal XC0 i0 Link -1 (0x00000001 0x00000004 0x00000000 0x00000000 0x00000000 0x00000000)", healthy, fleetv1.Remedy_REMEDY_NONE, ""},
		{"remap-154-eval", 145, "pid=1234, name=python, RLW_REMAP Nonfatal XC0 i0 Link 03 (0x00000004 0x00000008 0x00000000 0x00000000 0x00000000 0x00000000)", healthy, fleetv1.Remedy_REMEDY_RESTART_APPLICATION, ""},
		{"tlw-v1-name", 146, "TLW_RX/TLW_RX_PIPE0 Fatal XC0 i0 Link 05 (0x00000143 0x00000004 0x00000000 0x00000000 0x00000000 0x00000000)", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, ""},
		{"trex-ignored", 147, "TREX Nonfatal XC0 i0 Link -1 (0x0000000e 0x00000001 0x00000000 0x00000000 0x00000000 0x00000000)", healthy, fleetv1.Remedy_REMEDY_NONE, ""},
		{"mse-fatal", 150, "MSE_WATCHDOG Fatal XC0 i0 Link -1 (0x00000000 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, ""},
		{"unknown-status-by-severity", 146, "TLW_CTRL Nonfatal XC0 i0 Link 01 (0x00000009 0x00000040 0x0 0x0 0x0 0x0)", healthy, fleetv1.Remedy_REMEDY_NONE, ""},
		{"unreadable-line-by-code", 150, "something else entirely", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "NVLink MSE error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := xid(tc.code)
			ev.Message = tc.text
			g := newGPU()
			p.Judge(g, ev, &Repeats{}, t0)
			if ev.GetHealth() != tc.health || ev.GetRemedy() != tc.remedy || g.GetHealth() != tc.health {
				t.Fatalf("judged %s/%s (GPU %s), want %s/%s", ev.GetHealth(), ev.GetRemedy(), g.GetHealth(), tc.health, tc.remedy)
			}
			if !strings.Contains(ev.GetCause(), tc.cause) {
				t.Fatalf("cause %q does not mention %q", ev.GetCause(), tc.cause)
			}
		})
	}
}

func TestDecodeRecoveryAction(t *testing.T) {
	p := Default()
	line := func(to string) *fleetv1.HealthEvent {
		ev := xid(154)
		ev.Message = "pid='<unknown>', name=<unknown>, GPU recovery action changed from 0x0 (None) to " + to
		return ev
	}
	for _, tc := range []struct {
		to     string
		health fleetv1.HealthStatus
		remedy fleetv1.Remedy
	}{
		{"0x1 (GPU Reset Required)", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU},
		{"0x2 (Node Reboot Required)", unhealthy, fleetv1.Remedy_REMEDY_REBOOT_NODE},
		{"0x3 (Drain P2P)", degraded, fleetv1.Remedy_REMEDY_RESTART_APPLICATION},
		{"0x4 (Drain and Reset)", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU},
	} {
		t.Run(tc.to, func(t *testing.T) {
			g := newGPU()
			ev := line(tc.to)
			p.Judge(g, ev, &Repeats{}, t0)
			if ev.GetHealth() != tc.health || ev.GetRemedy() != tc.remedy || g.GetRemedy() != tc.remedy {
				t.Fatalf("judged %s/%s, GPU remedy %s; want %s/%s", ev.GetHealth(), ev.GetRemedy(), g.GetRemedy(), tc.health, tc.remedy)
			}
			if !strings.Contains(ev.GetCause(), strings.TrimSuffix(strings.SplitN(tc.to, "(", 2)[1], ")")) {
				t.Fatalf("cause %q does not say the driver's words", ev.GetCause())
			}
			// The driver's "none" afterwards ends the fault.
			none := line("0x0 (None)")
			if !p.Judge(g, none, &Repeats{}, t0.Add(time.Minute)) || g.GetHealth() != healthy || none.GetHealth() != healthy {
				t.Fatalf("recovery action back to none: GPU %s, event %s", g.GetHealth(), none.GetHealth())
			}
		})
	}
}

// TestClearAfterReset: a completed reset clears what a reset remedies and
// ends the episode; a reboot's fault, an inspection and a level condition
// stay.
func TestClearAfterReset(t *testing.T) {
	p := Default()
	g := newGPU()
	p.Judge(g, xid(48), &Repeats{}, t0)
	p.Judge(g, xid(79), &Repeats{}, t0)
	p.Observe(g, &fleetv1.GpuMetrics{RowRemap: &fleetv1.RowRemapState{Pending: true}, Unsupported: []string{"nvlink"}}, t0)
	ev := p.ClearAfterReset(g, t0.Add(time.Minute))
	if ev == nil || !strings.Contains(ev.GetCause(), "cleared by GPU reset") || !strings.Contains(ev.GetCause(), "double-bit") {
		t.Fatalf("reset event %v", ev)
	}
	var left []string
	for _, f := range g.GetFaults() {
		left = append(left, f.GetKind().String()+"/"+strconv.Itoa(int(f.GetXid())))
	}
	if strings.Join(left, ",") != "EVENT_KIND_XID/79,EVENT_KIND_ROW_REMAP_PENDING/0" {
		t.Fatalf("after the reset: %v", left)
	}
	// The XID 79 still awaits its reboot, so the episode stays open; the
	// remap the reset did not mend (yet) holds nothing open.
	for _, f := range g.GetFaults() {
		if f.GetAwaitsRemedy() != (f.GetXid() == 79) {
			t.Fatalf("after the reset, fault %s/%d awaits its remedy: %t", f.GetKind(), f.GetXid(), f.GetAwaitsRemedy())
		}
	}
	if p.ClearAfterReset(newGPU(), t0) != nil {
		t.Fatal("a reset with nothing to clear returned an event")
	}
}

// TestEpisodesCountWithinLookback: episodes older than the lookback no
// longer count toward escalation.
func TestEpisodesCountWithinLookback(t *testing.T) {
	p := Default()
	g := newGPU()
	at := t0
	for range 2 {
		p.Judge(g, xid(48), &Repeats{}, at)
		p.ClearAfterReset(g, at.Add(time.Minute))
		at = at.Add(24 * time.Hour)
	}
	// A week after the first: only the second still counts.
	at = t0.Add(p.lookback + time.Hour)
	ev := xid(48)
	p.Judge(g, ev, &Repeats{}, at)
	if ev.GetEscalated() || g.GetRemedyEpisodes() != 2 || len(g.GetRemedyEpisodeTimes()) != 2 {
		t.Fatalf("third reset a week on: escalated %t, episodes %d (%d times)", ev.GetEscalated(), g.GetRemedyEpisodes(), len(g.GetRemedyEpisodeTimes()))
	}
	p.ClearAfterReset(g, at.Add(time.Minute))
	ev = xid(48)
	p.Judge(g, ev, &Repeats{}, at.Add(time.Hour))
	if !ev.GetEscalated() || ev.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE || g.GetRemedyEpisodes() != 3 {
		t.Fatalf("three within the week: escalated %t, remedy %s, episodes %d", ev.GetEscalated(), ev.GetRemedy(), g.GetRemedyEpisodes())
	}
}

// TestReturnAfterRemedyIsANewIncident: an error that comes back right after
// its reset, inside what would be its burst, is the second incident all the
// same: the remedy ended the first.
func TestReturnAfterRemedyIsANewIncident(t *testing.T) {
	p := Default()
	g, rep := newGPU(), &Repeats{}
	p.Judge(g, xid(74), rep, t0)
	p.ClearAfterReset(g, t0.Add(time.Second))
	ev := xid(74)
	p.Judge(g, ev, rep, t0.Add(2*time.Second))
	if ev.GetEscalated() {
		t.Fatal("without Remedied the return inside the burst escalated; the test no longer tells the two apart")
	}
	g, rep = newGPU(), &Repeats{}
	p.Judge(g, xid(74), rep, t0)
	p.ClearAfterReset(g, t0.Add(time.Second))
	rep.Remedied()
	ev = xid(74)
	p.Judge(g, ev, rep, t0.Add(2*time.Second))
	if !ev.GetEscalated() || ev.GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE || ev.GetRepeatCount() != 2 {
		t.Fatalf("XID 74 right after its reset: escalated %t, remedy %s, %d incidents", ev.GetEscalated(), ev.GetRemedy(), ev.GetRepeatCount())
	}
}

// TestLaterRecoveryActionAsksMore: the driver's recovery action going from
// a reset to a reboot makes the fault ask for the reboot, so a reset does
// not clear it.
func TestLaterRecoveryActionAsksMore(t *testing.T) {
	p := Default()
	g := newGPU()
	line := func(text string) *fleetv1.HealthEvent {
		ev := xid(154)
		ev.Message = text
		return ev
	}
	p.Judge(g, line("GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)"), &Repeats{}, t0)
	p.Judge(g, line("GPU recovery action changed from 0x1 (GPU Reset Required) to 0x2 (Node Reboot Required)"), &Repeats{}, t0.Add(time.Second))
	if g.GetRemedy() != fleetv1.Remedy_REMEDY_REBOOT_NODE || g.GetRemedyEpisodes() != 1 {
		t.Fatalf("after the second line: remedy %s, %d episodes", g.GetRemedy(), g.GetRemedyEpisodes())
	}
	p.ClearAfterReset(g, t0.Add(time.Minute))
	if g.GetHealth() != unhealthy || g.GetRemedy() != fleetv1.Remedy_REMEDY_REBOOT_NODE {
		t.Fatalf("a reset cleared what needs a reboot: %s %s", g.GetHealth(), g.GetRemedy())
	}
}

// TestSteadyStreamIsAStorm: a burst is measured from its start, so an XID
// every 4 s is a storm, not one endless incident.
func TestSteadyStreamIsAStorm(t *testing.T) {
	p := Default()
	g, rep := newGPU(), &Repeats{}
	var ev *fleetv1.HealthEvent
	for i := range 25 {
		ev = xid(13)
		p.Judge(g, ev, rep, t0.Add(time.Duration(i)*4*time.Second))
	}
	if ev.GetRepeatCount() < 10 || g.GetHealth() != degraded {
		t.Fatalf("XID 13 every 4 s for 100 s: %d incidents, GPU %s", ev.GetRepeatCount(), g.GetHealth())
	}
}

// TestKernelLineOlderThanTheReset: a line read again from the kernel log
// that predates the GPU's last reset is recorded but raises nothing; one
// after it does.
func TestKernelLineOlderThanTheReset(t *testing.T) {
	p := Default()
	g := newGPU()
	p.Judge(g, xid(48), &Repeats{}, t0)
	p.ClearAfterReset(g, t0.Add(time.Hour))
	old := xid(48)
	old.KernelSeq, old.Time = 7, timestamppb.New(t0)
	if p.Judge(g, old, &Repeats{}, t0.Add(2*time.Hour)) || g.GetHealth() != healthy || !strings.Contains(old.GetCause(), "before the GPU's last reset") {
		t.Fatalf("an old line raised a fault: GPU %s, cause %q", g.GetHealth(), old.GetCause())
	}
	fresh := xid(48)
	fresh.KernelSeq, fresh.Time = 9, timestamppb.New(t0.Add(90*time.Minute))
	if !p.Judge(g, fresh, &Repeats{}, t0.Add(2*time.Hour)) || g.GetHealth() != unhealthy {
		t.Fatalf("a line after the reset raised nothing: GPU %s", g.GetHealth())
	}
}

// TestEpisodeTimesStayBounded: a condition that flaps all week keeps a
// bounded record.
func TestEpisodeTimesStayBounded(t *testing.T) {
	p := Default()
	g := newGPU()
	pending, clean := metrics(), metrics()
	pending.RowRemap.Pending = true
	for i := range 500 {
		p.Observe(g, pending, t0.Add(time.Duration(i)*time.Minute))
		p.Observe(g, clean, t0.Add(time.Duration(i)*time.Minute+time.Second))
	}
	if n := len(g.GetRemedyEpisodeTimes()); n != maxEpisodeTimes {
		t.Fatalf("%d episode times kept, want %d", n, maxEpisodeTimes)
	}
}

// TestOverriddenNVLink5RuleIsNotDecoded: a policy file's own rule for a
// decoded code, naming no decoding bucket, is taken as it stands.
func TestOverriddenNVLink5RuleIsNotDecoded(t *testing.T) {
	p, err := Parse([]byte("xids:\n  - {codes: [149], meaning: NVLink error on our fabric, health: DEGRADED, remedy: WATCH}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ev := xid(149)
	ev.Message = "NETIR_LINK_EVT Fatal XC0 i0 Link 02 (0x004505c6 0x00000000 0x0 0x0 0x0 0x0)"
	p.Judge(newGPU(), ev, &Repeats{}, t0)
	if ev.GetHealth() != degraded || ev.GetRemedy() != fleetv1.Remedy_REMEDY_WATCH {
		t.Fatalf("judged %s/%s, want the file's DEGRADED/WATCH", ev.GetHealth(), ev.GetRemedy())
	}
}

// TestRecordedDriverLinesDecode judges the NVLink5 and recovery-action
// lines recorded from real nodes (agent/kmsg/testdata, with their sources)
// as the catalog's decode table says.
func TestRecordedDriverLinesDecode(t *testing.T) {
	b, err := os.ReadFile("../../agent/kmsg/testdata/driver-xids.want")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		health fleetv1.HealthStatus
		remedy fleetv1.Remedy
	}{
		"1219": {unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU},         // 154: GPU Reset Required
		"1233": {healthy, fleetv1.Remedy_REMEDY_NONE},                // 144 SAW_MVB 0x8: IGNORE
		"1234": {healthy, fleetv1.Remedy_REMEDY_NONE},                // 145 RLW_RXPIPE 0x8: IGNORE
		"1235": {healthy, fleetv1.Remedy_REMEDY_RESTART_APPLICATION}, // 145 RLW_SRC_TRACK 0x8: XID_154_EVAL
		"1236": {healthy, fleetv1.Remedy_REMEDY_NONE},                // 149 NETIR_BER_EVENT: IGNORE
		"1237": {unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU},         // 149 NETIR: link fatal
		"1238": {unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU},         // 149 NETIR_LINK_EVT: link fatal
	}
	p := Default()
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		cols := strings.Split(line, "\t")
		w, ok := want[cols[0]]
		if !ok {
			continue
		}
		seen++
		code, _ := strconv.ParseUint(cols[1], 10, 32)
		ev := xid(uint32(code))
		ev.Message = cols[3]
		p.Judge(newGPU(), ev, &Repeats{}, t0)
		if ev.GetHealth() != w.health || ev.GetRemedy() != w.remedy {
			t.Errorf("line %s (XID %d %q): judged %s/%s, want %s/%s", cols[0], code, cols[3], ev.GetHealth(), ev.GetRemedy(), w.health, w.remedy)
		}
	}
	if seen != len(want) {
		t.Fatalf("found %d of the %d recorded lines", seen, len(want))
	}
}

// TestOtherSignalsRemediesAreTheConsoles: the remedies of the docs' table
// of other signals are written as the console and the command line say
// them, so an operator finds what the console told them (XID 63's pending
// remap: "drain, reset GPU").
func TestOtherSignalsRemediesAreTheConsoles(t *testing.T) {
	said := map[string]bool{}
	for r := range fleetv1.Remedy_name {
		said[display.Remedy(fleetv1.Remedy(r))] = true
	}
	rows := docsTable(t, "## Other signals")
	if len(rows) < 10 {
		t.Fatalf("docs' table of other signals has %d rows", len(rows))
	}
	for _, row := range rows {
		if !said[row[2]] {
			t.Errorf("docs give %q the remedy %q, which the console never says", row[0], row[2])
		}
	}
}
