package controlplane_test

import (
	"bytes"
	"context"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// commandStream is an agent's open WatchNodeCommands stream: what it
// receives arrives on msgs, and how it ended on ended.
type commandStream struct {
	cancel context.CancelFunc
	msgs   chan *nodev1.WatchNodeCommandsResponse
	ended  chan error
}

// watchCommands opens the node's command stream and waits until the
// control plane has taken it.
func (h *harness) watchCommands(id string) *commandStream {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.t.Cleanup(cancel)
	stream, err := h.node.WatchNodeCommands(ctx, &nodev1.WatchNodeCommandsRequest{NodeId: id})
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		h.t.Fatalf("open the command stream of %s: %v", id, err)
	}
	s := &commandStream{cancel: cancel, msgs: make(chan *nodev1.WatchNodeCommandsResponse, 16), ended: make(chan error, 1)}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				s.ended <- err
				return
			}
			s.msgs <- m
		}
	}()
	return s
}

// next is the next message on the stream.
func (s *commandStream) next(t *testing.T) []*fleetv1.Command {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m.GetCommands()
	case err := <-s.ended:
		t.Fatalf("the command stream ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing arrived on the command stream")
	}
	return nil
}

// TestCommandStreamDelivers: a stream gets what was pending when it
// opened at once, and a command queued while it waits, marked delivered
// and not handed out again.
func TestCommandStreamDelivers(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	if got := h.register("n1", 1).GetCommandDelivery(); got != nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM {
		t.Fatalf("default delivery %s, want stream", got)
	}
	if _, err := h.ops.RunDiagnostics(ctx, &controlplanev1.RunDiagnosticsRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	s := h.watchCommands("n1")
	if got := s.next(t); len(got) != 1 || got[0].GetType() != fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS {
		t.Fatalf("pending at open: %v", got)
	}
	select {
	case m := <-s.msgs:
		t.Fatalf("sent before any new command: %v", m)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1", Reason: "rack work"}); err != nil {
		t.Fatal(err)
	}
	got := s.next(t)
	if len(got) != 1 || got[0].GetType() != fleetv1.CommandType_COMMAND_TYPE_CORDON || got[0].GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED {
		t.Fatalf("queued while waiting: %v", got)
	}
	if again, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"}); err != nil || len(again.GetCommands()) != 0 {
		t.Fatalf("a poll after the stream delivered: %v %v", again, err)
	}
}

// TestCommandStreamOfTerminatedAndRemovedNode: a stream whose node is
// terminated gets the TERMINATE command; once the node leaves the fleet
// the stream ends at once with NotFound, which sends the agent to
// register again, and so does a long poll waiting then.
func TestCommandStreamOfTerminatedAndRemovedNode(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("n1", 1)
	s := h.watchCommands("n1")
	if _, err := h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: "n1", Force: true}); err != nil {
		t.Fatal(err)
	}
	h.fleet().Tick(ctx)
	got := s.next(t)
	if len(got) != 1 || got[0].GetType() != fleetv1.CommandType_COMMAND_TYPE_TERMINATE {
		t.Fatalf("terminating: %v", got)
	}
	if _, err := h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
		NodeId: "n1", CommandId: got[0].GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
	}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "TERMINATED", func() bool { return h.lifecycle("n1") == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED })
	// Up to just before the retention ends, then a long poll waiting
	// beside the stream, as an agent of the long-poll era would.
	clock.Advance(h.cfg.TerminatedRetention.Duration - 2*time.Second)
	h.fleet().Tick(ctx)
	if h.lifecycle("n1") != fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED {
		t.Fatal("removed before its retention ended")
	}
	polled := make(chan error, 1)
	go func() {
		_, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1", Wait: durationpb.New(time.Hour)})
		polled <- err
	}()
	testutil.Eventually(t, "the long poll to wait", func() bool {
		select {
		case err := <-polled:
			t.Fatalf("the long poll answered before the removal: %v", err)
		default:
		}
		return goroutinesIn("fleet.(*Fleet).NodeCommands(") == 1
	})
	// Three seconds, less than the harness's 5 s poll timeout, at which a
	// timer would have looked: the node is removed.
	clock.Advance(3 * time.Second)
	h.fleet().Tick(ctx)
	// No time passes after the removal: the removal itself wakes both.
	for name, ch := range map[string]chan error{"stream": s.ended, "long poll": polled} {
		select {
		case err := <-ch:
			if status.Code(err) != codes.NotFound {
				t.Fatalf("the %s of a removed node ended with %v, want NotFound", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the %s of a removed node did not end", name)
		}
	}
}

// TestCommandStreamLeavesNothingBehind: a stream the agent cancels, or
// whose connection goes as the control plane stops, leaves no goroutine
// waiting on the control plane.
func TestCommandStreamLeavesNothingBehind(t *testing.T) {
	h := newHarness(t)
	h.register("n1", 1)
	h.register("n2", 1)
	waiting := func() int { return goroutinesIn("fleet.(*Fleet).WatchCommands(") }
	s1 := h.watchCommands("n1")
	s2 := h.watchCommands("n2")
	testutil.Eventually(t, "two streams waiting", func() bool { return waiting() == 2 })
	s1.cancel()
	testutil.Eventually(t, "one stream waiting after a cancel", func() bool { return waiting() == 1 })
	// The harness closes the agents' connection, then stops the server.
	h.Stop()
	select {
	case <-s2.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the stream outlived its connection and the control plane")
	}
	testutil.Eventually(t, "no stream waiting after shutdown", func() bool { return waiting() == 0 })
}

// goroutinesIn counts the goroutines whose stack holds a call to fn.
func goroutinesIn(fn string) int {
	var b bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return bytes.Count(b.Bytes(), []byte(fn))
}

// TestLongPollDeliveryStillServed: with command_delivery long_poll the
// agents are told to long-poll, as before streams.
func TestLongPollDeliveryStillServed(t *testing.T) {
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.CommandDelivery = "long_poll" }))
	if got := h.register("n1", 1).GetCommandDelivery(); got != nodev1.CommandDelivery_COMMAND_DELIVERY_LONG_POLL {
		t.Fatalf("delivery %s, want long poll", got)
	}
}
