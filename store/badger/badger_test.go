package badgerstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
	"github.com/navarch/navarch/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string, l store.Limits) store.Store {
		s, err := Open(Options{Dir: dir, Limits: l})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return s
	})
}

func TestOpenNeedsADirectory(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatal("opened without a directory")
	}
}

func TestInMemory(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Options{InMemory: true})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	w := store.Write{
		Nodes:    []*fleetv1.Node{{NodeId: "n"}},
		Commands: []*fleetv1.Command{{Id: "cmd-1", NodeId: "n", Status: fleetv1.CommandStatus_COMMAND_STATUS_PENDING}},
		Counters: map[string]uint64{"ids": 1},
	}
	if err := s.Apply(ctx, w); err != nil {
		t.Fatalf("apply: %v", err)
	}
	st, err := s.Load(ctx)
	if err != nil || len(st.Nodes) != 1 || st.Counters["ids"] != 1 {
		t.Fatalf("load: %v, %v", st, err)
	}
	if open, err := s.OpenCommands(ctx); err != nil || len(open) != 1 {
		t.Fatalf("open commands: %v, %v", open, err)
	}
}

// TestKeysSortBySequence: a node's keys sort by the number of the id, not
// its text, and one node's keys never fall under another's prefix.
func TestKeysSortBySequence(t *testing.T) {
	tests := []struct {
		name          string
		lower, higher []byte
	}{
		{"command-9-before-10", commandKey("n", 9), commandKey("n", 10)},
		{"command-255-before-256", commandKey("n", 255), commandKey("n", 256)},
		{"open-255-before-256", openKey("n", 255), openKey("n", 256)},
		{"node-event-255-before-256", nodeEventKey("n", 255), nodeEventKey("n", 256)},
		{"event-255-before-256", eventKey(255), eventKey(256)},
		{"audit-255-before-256", auditKey(255), auditKey(256)},
		{"node-audit-255-before-256", nodeAuditKey("n", 255), nodeAuditKey("n", 256)},
		{"last-before-seek-end", commandKey("n", 1<<64-1), seekEnd(nodePrefix(prefixCommand, "n"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Compare(tt.lower, tt.higher) >= 0 {
				t.Errorf("%x does not sort before %x", tt.lower, tt.higher)
			}
		})
	}
	if bytes.HasPrefix(commandKey("n2", 1), []byte(nodePrefix(prefixCommand, "n"))) {
		t.Error("node n2's command key is under node n's prefix")
	}
	k := openKey("gpu-7", 42)
	if node, seq := openKeyNode(k), keySeq(k); node != "gpu-7" || seq != 42 {
		t.Errorf("open key reads back as %s/%d", node, seq)
	}
}

// TestTokenRecordBeforeUseCounts: a token stored before tokens had a use
// limit and count reads back with neither: no limit, no uses.
func TestTokenRecordBeforeUseCounts(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	old := `{"role":2,"hash":"AAEC","created_at":"2025-01-02T03:04:05.000000006Z"}`
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(prefixToken+"old"), []byte(old))
	}); err != nil {
		t.Fatalf("write the old record: %v", err)
	}
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if len(st.Tokens) != 1 {
		t.Fatalf("tokens %v, want the old one", st.Tokens)
	}
	tok := st.Tokens[0]
	if tok.Name != "old" || tok.Role != controlplanev1.Role_ROLE_OPERATOR || !bytes.Equal(tok.Hash, []byte{0, 1, 2}) {
		t.Errorf("old token reads back as %+v", tok)
	}
	if tok.MaxUses != 0 || tok.Used != 0 {
		t.Errorf("old token used %d of %d times, want 0 of 0", tok.Used, tok.MaxUses)
	}
}

// killDirEnv names the data directory the child of TestAppliedWritesSurviveKill
// writes to.
const killDirEnv = "NAVARCH_STORE_KILL_DIR"

// TestAppliedWritesSurviveKill: every Apply that returned before the process
// was killed with SIGKILL is read back. The test runs itself as a child
// that applies writes and prints each acknowledged id until it is killed.
func TestAppliedWritesSurviveKill(t *testing.T) {
	if dir := os.Getenv(killDirEnv); dir != "" {
		writeUntilKilled(dir)
		return
	}
	dir := t.TempDir()
	child := exec.Command(os.Args[0], "-test.run=^TestAppliedWritesSurviveKill$")
	child.Env = append(os.Environ(), killDirEnv+"="+dir)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatalf("child output: %v", err)
	}
	if err := child.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	var acked []string
	lines := bufio.NewScanner(out)
	// The child keeps writing while it is killed, so the kill lands
	// during a write as often as not.
	for len(acked) < 20 && lines.Scan() {
		if line := lines.Text(); strings.HasPrefix(line, "ev-") {
			acked = append(acked, line)
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	_ = child.Wait()
	if len(acked) < 20 {
		t.Fatalf("child acknowledged only %v", acked)
	}

	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	last, err := store.ParseSeq(acked[len(acked)-1])
	if err != nil {
		t.Fatalf("acknowledged id: %v", err)
	}
	if st.Counters["ids"] < last {
		t.Errorf("counter %d, but %d was acknowledged", st.Counters["ids"], last)
	}
	evs, err := s.Events(ctx, store.EventQuery{NodeID: "n", Limit: 1000})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	var kept []string
	for _, e := range evs {
		kept = append(kept, e.GetId())
	}
	for _, id := range acked {
		if !slices.Contains(kept, id) {
			t.Errorf("acknowledged event %s lost; kept %v", id, kept)
		}
	}
}

// writeUntilKilled is the child's side: one event and counter per Apply,
// its id printed once Apply returns.
func writeUntilKilled(dir string) {
	s, err := Open(Options{Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(1)
	}
	for seq := uint64(1); ; seq++ {
		id := store.FormatSeq("ev", seq)
		w := store.Write{
			Nodes:    []*fleetv1.Node{{NodeId: "n"}},
			Events:   []*fleetv1.HealthEvent{{Id: id, NodeId: "n"}},
			Counters: map[string]uint64{"ids": seq},
		}
		if err := s.Apply(context.Background(), w); err != nil {
			fmt.Fprintln(os.Stderr, "apply:", err)
			os.Exit(1)
		}
		fmt.Println(id)
	}
}

func BenchmarkApplyEvent(b *testing.B) {
	ctx := context.Background()
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for i := range b.N {
		e := &fleetv1.HealthEvent{Id: store.FormatSeq("ev", uint64(i+1)), NodeId: fmt.Sprintf("node-%d", i%1000), Xid: 79}
		if err := s.Apply(ctx, store.Write{Events: []*fleetv1.HealthEvent{e}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyEventDuringLastSeenSave: an event written while a fleet's
// last-seen times are saved (100 000 nodes, the monitor's batch every
// 30 s) waits behind what of the batch was queued before it. Each
// iteration is one save with an event written every 5 ms through it; the
// metrics are the slowest of those writes and the median, against the
// writes' own time when nothing else is written (BenchmarkApplyEvent).
func BenchmarkApplyEventDuringLastSeenSave(b *testing.B) {
	ctx := context.Background()
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	seen := make(map[string]time.Time, 100000)
	for i := range 100000 {
		seen[fmt.Sprintf("node-%06d", i)] = time.Now()
	}
	var during []time.Duration
	seq := uint64(0)
	b.ResetTimer()
	for range b.N {
		done := make(chan error, 1)
		go func() { done <- s.SaveLastSeen(ctx, seen) }()
	writes:
		for {
			select {
			case err := <-done:
				if err != nil {
					b.Fatal(err)
				}
				break writes
			default:
			}
			seq++
			e := &fleetv1.HealthEvent{Id: store.FormatSeq("ev", seq), NodeId: "node-000001", Xid: 79}
			t0 := time.Now()
			if err := s.Apply(ctx, store.Write{Events: []*fleetv1.HealthEvent{e}}); err != nil {
				b.Fatal(err)
			}
			during = append(during, time.Since(t0))
			time.Sleep(5 * time.Millisecond)
		}
	}
	b.StopTimer()
	if len(during) == 0 {
		b.Fatal("no event was written during a save")
	}
	slices.Sort(during)
	b.ReportMetric(float64(during[len(during)-1])/float64(time.Millisecond), "slowest-event-ms")
	b.ReportMetric(float64(during[len(during)/2])/float64(time.Millisecond), "median-event-ms")
}
