package fleet

import (
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu          sync.Mutex
	events      []*fleetv1.HealthEvent
	commands    []*fleetv1.Command
	autoCordons int
	lifecycles  []fleetv1.LifecycleState
	trips       int
}

func (r *recorder) Committed(events []*fleetv1.HealthEvent, commands []*fleetv1.Command, autoCordoned bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, events...)
	r.commands = append(r.commands, commands...)
	if autoCordoned {
		r.autoCordons++
	}
}

func (r *recorder) Resynced() {}

func (r *recorder) NodeChanged(prev, next *fleetv1.Node) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev.GetLifecycle() != next.GetLifecycle() {
		r.lifecycles = append(r.lifecycles, next.GetLifecycle())
	}
}

func (r *recorder) BreakerTripped(*fleetv1.BreakerStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trips++
}

func (r *recorder) xids() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.GetKind() == fleetv1.EventKind_EVENT_KIND_XID {
			n++
		}
	}
	return n
}

// TestObserverHearsOnlySavedChanges: an XID whose change the store refuses
// is not told to the observer, nor the cordon it would have caused; the
// same XID once the store recovers is, with the automatic cordon and its
// command.
func TestObserverHearsOnlySavedChanges(t *testing.T) {
	fs := &flakyStore{Store: openStore(t, t.TempDir())}
	rec := &recorder{}
	f := newFleet(t, Options{Store: fs, Observer: rec})
	register(t, f, "n1", 2)
	registered := len(rec.lifecycles)

	fs.failing.Store(true)
	if _, err := xid(t, f, "n1", 1, 79); err == nil {
		t.Fatal("report succeeded with a failing store")
	}
	if rec.xids() != 0 || rec.autoCordons != 0 || len(rec.lifecycles) != registered {
		t.Fatalf("after a failed save: %d XIDs, %d auto-cordons, lifecycles %v told", rec.xids(), rec.autoCordons, rec.lifecycles)
	}

	fs.failing.Store(false)
	if _, err := xid(t, f, "n1", 1, 79); err != nil {
		t.Fatal(err)
	}
	if rec.xids() != 1 || rec.autoCordons != 1 {
		t.Fatalf("after a saved report: %d XIDs, %d auto-cordons told, want 1 and 1", rec.xids(), rec.autoCordons)
	}
	if got := rec.lifecycles[len(rec.lifecycles)-1]; got != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED {
		t.Fatalf("last lifecycle told: %v, want CORDONED", got)
	}
	last := rec.commands[len(rec.commands)-1]
	if last.GetType() != fleetv1.CommandType_COMMAND_TYPE_CORDON || last.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_PENDING {
		t.Fatalf("last command told: %v", last)
	}
}

// TestNodeHealthLeavesOutTerminated: every node but the terminated is
// yielded with its health.
func TestNodeHealthLeavesOutTerminated(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	f := newFleet(t, Options{Clock: clock})
	for _, id := range []string{"a", "b", "c"} {
		register(t, f, id, 2)
	}
	if _, err := xid(t, f, "b", 0, 79); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Terminate(ctxT(t), "c", "", true, 0); err != nil {
		t.Fatal(err)
	}
	// Silent past the offline timeout, the terminating node is terminated.
	clock.Advance(2 * time.Minute)
	f.Tick(ctxT(t))
	if n := f.get("c").node.Load(); n.GetLifecycle() != terminated {
		t.Fatalf("node c is %s, want terminated", n.GetLifecycle())
	}
	got := maps.Collect(f.NodeHealth())
	want := map[string]fleetv1.HealthStatus{
		"a": fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN,
		"b": fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY,
	}
	if !maps.Equal(got, want) {
		t.Fatalf("node health %v, want %v", got, want)
	}
	want79 := map[fleetv1.Remedy]uint32{fleetv1.Remedy_REMEDY_REBOOT_NODE: 1}
	if g := f.Gauges(); !maps.Equal(g.Faults, want79) {
		t.Fatalf("active faults by remedy %v, want %v", g.Faults, want79)
	}
}

// TestObserverHearsEachCommandStatusOnce: a command handed out again,
// for want of an answer or because its agent registered again, and an
// acknowledgement repeated, are saved and published but not told to the
// observer again: it hears each status of a command once.
func TestObserverHearsEachCommandStatusOnce(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	rec := &recorder{}
	f := newFleet(t, Options{Clock: clock, Observer: rec})
	register(t, f, "n1", 1)
	ctx := ctxT(t)
	if _, err := f.Cordon(ctx, "n1", ""); err != nil {
		t.Fatal(err)
	}
	deliver := func(what string) *fleetv1.Command {
		t.Helper()
		got, err := f.NodeCommands(ctx, "n1", 0)
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: %v %v", what, got, err)
		}
		return got[0]
	}
	answer := func(id string, st fleetv1.CommandStatus) {
		t.Helper()
		if _, err := f.CommandResult(ctx, &nodev1.ReportCommandResultRequest{NodeId: "n1", CommandId: id, Status: st}); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	cmd := deliver("first delivery")
	// Unanswered: handed out again after the poll timeout and a slack.
	clock.Advance(testConfig().CommandPollTimeout + RedeliverSlack + time.Second)
	f.Tick(ctx)
	deliver("redelivery")
	answer(cmd.GetId(), fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED)
	answer(cmd.GetId(), fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED)
	// The agent restarts: what it had acknowledged goes out again.
	register(t, f, "n1", 1)
	deliver("delivery after registering again")
	answer(cmd.GetId(), fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED)
	answer(cmd.GetId(), fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var told []fleetv1.CommandStatus
	for _, c := range rec.commands {
		if c.GetId() == cmd.GetId() {
			told = append(told, c.GetStatus())
		}
	}
	want := []fleetv1.CommandStatus{
		fleetv1.CommandStatus_COMMAND_STATUS_PENDING, fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED,
		fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
	}
	if !slices.Equal(told, want) {
		t.Fatalf("told %v, want %v", told, want)
	}
	history, err := f.store.Commands(ctx, "n1", 0)
	if err != nil || len(history) != 1 || history[0].GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		t.Fatalf("saved: %v %v", history, err)
	}
}
