package controlplane

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
	badgerstore "github.com/navarch/navarch/store/badger"
)

// flakyStore is the real store whose writes can be made to fail, as a full
// or broken disk would make them.
type flakyStore struct {
	*badgerstore.Store
	failing atomic.Bool
}

func (s *flakyStore) Apply(ctx context.Context, w store.Write) error {
	if s.failing.Load() {
		return errors.New("disk full")
	}
	return s.Store.Apply(ctx, w)
}

func newFlakyFleet(t *testing.T) (*Fleet, *flakyStore) {
	t.Helper()
	st, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	fs := &flakyStore{Store: st}
	f, err := NewFleet(context.Background(), FleetOptions{Config: Defaults(), Store: fs})
	if err != nil {
		t.Fatal(err)
	}
	return f, fs
}

func openCommands(f *Fleet, id string) []*fleetv1.Command {
	ns := f.get(id)
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return append([]*fleetv1.Command(nil), ns.open...)
}

// TestFailedWriteKeepsOpenCommands: an action whose change cannot be saved
// leaves the node's queued commands exactly as they were, so nothing is
// handed to the agent that the store does not know, and nothing queued is
// lost.
func TestFailedWriteKeepsOpenCommands(t *testing.T) {
	ctx := ctxT(t)
	f, fs := newFlakyFleet(t)
	if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: gpus(1)}); err != nil {
		t.Fatal(err)
	}
	_, drain, err := f.Drain(ctx, "n1", "upgrade", time.Time{}, false)
	if err != nil {
		t.Fatal(err)
	}
	before := openCommands(f, "n1")

	fs.failing.Store(true)
	if _, err := f.Uncordon(ctx, "n1", ""); err == nil {
		t.Fatal("uncordon succeeded with a failing store")
	}
	if _, err := f.Terminate(ctx, "n1", "", false, 0); err == nil {
		t.Fatal("terminate succeeded with a failing store")
	}
	if got := openCommands(f, "n1"); len(got) != len(before) || !proto.Equal(got[0], before[0]) {
		t.Fatalf("open commands after failed writes: %v, want %v", got, before)
	}
	if _, err := f.NodeCommands(ctx, "n1", 0); err == nil {
		t.Fatal("delivery succeeded with a failing store")
	}

	fs.failing.Store(false)
	got, err := f.NodeCommands(ctx, "n1", 0)
	if err != nil || len(got) != 1 || got[0].GetId() != drain.GetId() {
		t.Fatalf("after the store recovered: %v %v", got, err)
	}
	if n := f.get("n1").node.Load(); n.GetLifecycle() != draining {
		t.Fatalf("lifecycle %s", n.GetLifecycle())
	}
}

// TestRegistrationRacingRemovalCreatesANewNode: a registration that found a
// node just before retention removed it must not write into the removed
// one; it registers a new node.
func TestRegistrationRacingRemovalCreatesANewNode(t *testing.T) {
	ctx := ctxT(t)
	f, _ := newFlakyFleet(t)
	if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: gpus(1)}); err != nil {
		t.Fatal(err)
	}
	old := f.get("n1")
	old.mu.Lock()
	done := make(chan error, 1)
	go func() {
		_, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: gpus(2)})
		done <- err
	}()
	// Wait until the registration has found the node and waits for its lock.
	eventually(t, "the registration waiting for the node", func() bool {
		buf := make([]byte, 1<<20)
		return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("controlplane.(*Fleet).withNode"))
	})
	if err := f.commit(ctx, old, &change{remove: true}); err != nil {
		t.Fatal(err)
	}
	old.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cur := f.get("n1")
	if cur == nil || cur == old || len(cur.node.Load().GetGpus()) != 2 {
		t.Fatalf("registration after removal: %v", cur)
	}
	f.setReachability(old, fleetv1.Reachability_REACHABILITY_STALE)
	if got, want := f.summary(), scanSummary(f); !proto.Equal(got, want) {
		t.Fatalf("totals %v, counted %v", got, want)
	}
	if _, err := f.Cordon(ctx, "gone", ""); err == nil {
		t.Fatal("cordon of an unknown node succeeded")
	}
}

// TestTerminateAfterRestartDrainsFirst: after a restart every node is
// UNKNOWN; terminating one must still drain it, and it counts as
// terminated only once it is OFFLINE.
func TestTerminateAfterRestartDrainsFirst(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("n1", 1)
	h.restart()
	n, err := h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if n.GetNode().GetReachability() != fleetv1.Reachability_REACHABILITY_UNKNOWN || n.GetNode().GetDrain() == nil {
		t.Fatalf("terminate of an UNKNOWN node: reach %s drain %v", n.GetNode().GetReachability(), n.GetNode().GetDrain())
	}
	h.fleet().Tick(ctx)
	if got := h.lifecycle("n1"); got != terminating {
		t.Fatalf("UNKNOWN node became %s", got)
	}
	// The node never comes back: once it is OFFLINE nobody is left to
	// drain it, and it counts as terminated.
	clock.Advance(h.cfg.OfflineAfter.Duration)
	h.fleet().Tick(ctx)
	h.fleet().Tick(ctx)
	d := h.get("n1")
	if d.GetNode().GetLifecycle() != terminated || d.GetNode().GetDrain() != nil {
		t.Fatalf("offline: %s drain %v", d.GetNode().GetLifecycle(), d.GetNode().GetDrain())
	}
	for _, c := range d.GetCommands() {
		if c.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_PENDING || c.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED {
			t.Fatalf("terminated node kept an open command: %v", c)
		}
	}
}

// TestTerminatedNodeStaysTerminated: entering TERMINATED cancels every
// unfinished command; heartbeats and reports from the old agent neither
// bring it ONLINE nor judge its GPUs; a new registration starts afresh.
func TestTerminatedNodeStaysTerminated(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 2)
	h.healthyReport("n1", 2)
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	polled := h.forceTerminate("n1")
	if len(polled) != 2 {
		t.Fatalf("poll: %v", polled)
	}
	var term *fleetv1.Command
	for _, c := range polled {
		if c.GetType() == fleetv1.CommandType_COMMAND_TYPE_TERMINATE {
			term = c
		}
	}
	if _, err := h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
		NodeId: "n1", CommandId: term.GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
	}); err != nil {
		t.Fatal(err)
	}
	d := h.get("n1")
	if d.GetNode().GetLifecycle() != terminated {
		t.Fatalf("lifecycle %s", d.GetNode().GetLifecycle())
	}
	for _, c := range d.GetCommands() {
		if c.GetType() == fleetv1.CommandType_COMMAND_TYPE_CORDON && c.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED {
			t.Fatalf("cordon command left %s at termination", c.GetStatus())
		}
	}
	h.fleet().Tick(ctx)
	hb, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1", Samples: []*fleetv1.GpuSample{{GpuIndex: 0, UtilizationGpuPercent: 90}}})
	if err != nil || hb.GetLifecycle() != terminated {
		t.Fatalf("heartbeat: %v %v", hb, err)
	}
	health := h.get("n1").GetNode().GetHealth()
	h.xid("n1", 0, 79)
	n := h.get("n1").GetNode()
	if n.GetReachability() != fleetv1.Reachability_REACHABILITY_OFFLINE || len(n.GetSamples()) != 0 {
		t.Fatalf("terminated node after a heartbeat: %s samples %v", n.GetReachability(), n.GetSamples())
	}
	if n.GetHealth() != health || len(h.get("n1").GetEvents()) != 0 {
		t.Fatalf("terminated node's report was judged: %s, events %v", n.GetHealth(), h.get("n1").GetEvents())
	}
	if resp := h.register("n1", 2); resp.GetLifecycle() != active {
		t.Fatalf("new registration: %s", resp.GetLifecycle())
	}
}

// TestUnansweredCommandIsDeliveredAgain: a delivered command the agent
// never answered (the answer was lost, or the agent died with it) goes out
// again after the poll timeout and a slack.
func TestUnansweredCommandIsDeliveredAgain(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("n1", 1)
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	first, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(first.GetCommands()) != 1 {
		t.Fatalf("first poll: %v %v", first, err)
	}
	h.fleet().Tick(ctx)
	if again, _ := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"}); len(again.GetCommands()) != 0 {
		t.Fatalf("delivered again at once: %v", again)
	}
	clock.Advance(h.cfg.CommandPollTimeout.Duration + redeliverSlack + time.Second)
	h.fleet().Tick(ctx)
	again, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(again.GetCommands()) != 1 || again.GetCommands()[0].GetId() != first.GetCommands()[0].GetId() {
		t.Fatalf("not delivered again: %v %v", again, err)
	}
	// An agent that never answers, however often it gets the command:
	// after a few deliveries the command fails instead of cycling.
	for i := 1; ; i++ {
		clock.Advance(h.cfg.CommandPollTimeout.Duration + redeliverSlack + time.Second)
		h.fleet().Tick(ctx)
		got, _ := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
		if len(got.GetCommands()) == 0 {
			if i != maxRedeliveries {
				t.Fatalf("gave up after %d redeliveries, want %d", i, maxRedeliveries)
			}
			break
		}
		if i > maxRedeliveries {
			t.Fatal("the command is handed out for ever")
		}
	}
	cmd := h.get("n1").GetCommands()[0]
	if cmd.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED || !strings.Contains(cmd.GetMessage(), "did not answer") {
		t.Fatalf("unanswered command ended as %v", cmd)
	}
}

// TestFailedTerminateIsRetriedSlowly: an agent that fails to stop is asked
// again after a minute, not on every monitor pass.
func TestFailedTerminateIsRetriedSlowly(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("n1", 1)
	polled := h.forceTerminate("n1")
	if len(polled) != 1 {
		t.Fatalf("poll: %v", polled)
	}
	if _, err := h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
		NodeId: "n1", CommandId: polled[0].GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_FAILED, Message: "systemctl: permission denied",
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clock.Advance(10 * time.Second)
		if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); err != nil {
			t.Fatal(err)
		}
		h.fleet().Tick(ctx)
	}
	if got, _ := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"}); len(got.GetCommands()) != 0 {
		t.Fatalf("asked again within the minute: %v", got)
	}
	clock.Advance(terminateRetry)
	if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	h.fleet().Tick(ctx)
	if got, _ := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"}); len(got.GetCommands()) != 1 {
		t.Fatalf("not asked again after the minute: %v", got)
	}
}

// TestLostGPUComesBack: a GPU lost from the snapshots is cleared by a
// GPU_RECOVERED event for its index; one that comes back at a registration
// without a reboot keeps its other faults.
func TestLostGPUComesBack(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 2)
	h.healthyReport("n1", 2)
	if _, err := h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Metrics: []*fleetv1.GpuMetrics{cleanMetrics(0)}, GpuCount: 1}); err != nil {
		t.Fatal(err)
	}
	if g := h.get("n1").GetNode().GetGpus()[1]; !g.GetLost() {
		t.Fatalf("GPU 1 not lost: %v", g)
	}
	if _, err := h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED, GpuIndex: 1, Message: "device readable again"},
	}}); err != nil {
		t.Fatal(err)
	}
	if g := h.get("n1").GetNode().GetGpus()[1]; g.GetLost() || len(g.GetFaults()) != 0 {
		t.Fatalf("GPU 1 after GPU_RECOVERED: lost=%t faults=%v", g.GetLost(), g.GetFaults())
	}

	// XID 79 on GPU 1, which then drops out of the inventory and comes back
	// on the same boot: the loss clears, the XID does not.
	h.xid("n1", 1, 79)
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: gpus(1), BootId: "boot-1"}); err != nil {
		t.Fatal(err)
	}
	h.register("n1", 2)
	d := h.get("n1")
	g := d.GetNode().GetGpus()[1]
	if g.GetLost() || len(g.GetFaults()) != 1 || g.GetFaults()[0].GetXid() != 79 {
		t.Fatalf("GPU 1 back without a reboot: lost=%t faults=%v", g.GetLost(), g.GetFaults())
	}
	if d.GetEvents()[0].GetKind() != fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED {
		t.Fatalf("newest event %v", d.GetEvents()[0])
	}
}

// TestResumeFromBeforeRestartGetsSnapshot: reachability resets at a
// restart, so a watcher resuming from the previous run's last revision
// must start from a snapshot, even when that revision was the last of the
// block the previous run reserved.
func TestResumeFromBeforeRestartGetsSnapshot(t *testing.T) {
	h := newHarness(t)
	h.register("a", 1)
	f := h.fleet()
	for f.hub.revs.current() < f.hub.revs.ceiling {
		f.hub.publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeRemoved{NodeRemoved: &controlplanev1.NodeRemoved{NodeId: "x"}}})
		})
	}
	rev := f.hub.revision()
	h.restart()
	w := h.watch(rev)
	if m := w.until("first", func(*controlplanev1.WatchFleetResponse) bool { return true }); m.GetSnapshot() == nil {
		t.Fatalf("resume across a restart got %v, want a snapshot", m)
	}
}

// TestBreakerRecoveryReachesWatchers: the breaker closes as its window
// passes, with no other change; watchers are told.
func TestBreakerRecoveryReachesWatchers(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	for _, id := range []string{"n0", "n1", "n2"} {
		h.register(id, 1)
	}
	for _, id := range []string{"n0", "n1", "n2"} {
		h.xid(id, 0, 79)
	}
	w := h.watch(0)
	w.until("snapshot", isSnapshotEnd)
	f := h.fleet()
	f.hub.flush(f)
	w.until("tripped breaker", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetTotals().GetBreaker().GetTripped() })
	clock.Advance(h.cfg.AutoCordon.Window.Duration + time.Second)
	f.hub.flush(f)
	w.until("closed breaker", func(m *controlplanev1.WatchFleetResponse) bool {
		return m.GetTotals() != nil && !m.GetTotals().GetBreaker().GetTripped()
	})
}

func TestReportFieldLimits(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 1)
	_, err := h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED, GpuIndex: 0, Cause: strings.Repeat("x", MaxShortText+1)},
	}})
	wantCode(t, err, codes.InvalidArgument, "events[0].cause")
	m := cleanMetrics(0)
	for range maxUnsupported + 1 {
		m.Unsupported = append(m.Unsupported, "ecc")
	}
	_, err = h.node.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Metrics: []*fleetv1.GpuMetrics{m}})
	wantCode(t, err, codes.InvalidArgument, "metrics[0].unsupported")
}
