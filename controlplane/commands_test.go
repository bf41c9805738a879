package controlplane_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestLongPollReturnsWhenCommandQueued: a poll waiting for up to a minute
// returns as soon as an operator queues a command.
func TestLongPollReturnsWhenCommandQueued(t *testing.T) {
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.CommandPollTimeout = controlplane.Duration{Duration: time.Minute} }))
	ctx := ctxT(t)
	h.register("n1", 1)
	got := make(chan *nodev1.GetNodeCommandsResponse, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1", Wait: durationpb.New(time.Minute)})
		if err != nil {
			errc <- err
			return
		}
		got <- resp
	}()
	// The poll is waiting: nothing comes back before a command exists.
	select {
	case r := <-got:
		t.Fatalf("poll returned before any command: %v", r)
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1", Reason: "rack work"}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if len(r.GetCommands()) != 1 || r.GetCommands()[0].GetType() != fleetv1.CommandType_COMMAND_TYPE_CORDON || r.GetCommands()[0].GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED {
			t.Fatalf("poll returned %v", r)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(10 * time.Second):
		t.Fatal("poll did not return when the command was queued")
	}
	// Delivered commands are not handed out twice.
	again, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(again.GetCommands()) != 0 {
		t.Fatalf("second poll: %v %v", again, err)
	}
}

func TestLongPollEndsEmptyAtItsBound(t *testing.T) {
	clock := clockwork.NewFakeClock()
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("n1", 1)
	done := make(chan *nodev1.GetNodeCommandsResponse, 1)
	go func() {
		resp, _ := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1", Wait: durationpb.New(20 * time.Second)})
		done <- resp
	}()
	// Wait for the poll's timer, then move past the bound (which the
	// server caps at its own poll timeout, 5s in the harness).
	testutil.Eventually(t, "poll to wait", func() bool {
		clock.Advance(6 * time.Second)
		select {
		case r := <-done:
			done <- r
			return true
		default:
			return false
		}
	})
	if r := <-done; r == nil || len(r.GetCommands()) != 0 {
		t.Fatalf("poll ended with %v", r)
	}
}

func TestCommandResults(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 2)
	diag, err := h.ops.RunDiagnostics(ctx, &controlplanev1.RunDiagnosticsRequest{NodeId: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	id := diag.GetCommand().GetId()
	if _, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	report := func(st fleetv1.CommandStatus, msg string) error {
		_, err := h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{NodeId: "n1", CommandId: id, Status: st, Message: msg})
		return err
	}
	if err := report(fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, "running"); err != nil {
		t.Fatal(err)
	}
	if got := h.get("n1").GetCommands()[0]; got.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED {
		t.Fatalf("after ack: %s", got.GetStatus())
	}
	if err := report(fleetv1.CommandStatus_COMMAND_STATUS_FAILED, "diagnostics: 1 of 12 checks failed\nFAIL gpu1 ecc volatile uncorrected 2"); err != nil {
		t.Fatal(err)
	}
	got := h.get("n1").GetCommands()[0]
	if got.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED || got.GetMessage() == "" {
		t.Fatalf("after failure: %v", got)
	}
	// A result for a finished command, an unknown one, and malformed ones.
	wantCode(t, report(fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, ""), codes.FailedPrecondition, "command_id")
	_, err = h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{NodeId: "n1", CommandId: "cmd-999999", Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED})
	wantCode(t, err, codes.NotFound, "command_id")
	_, err = h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{NodeId: "n1", Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED})
	wantCode(t, err, codes.InvalidArgument, "command_id")
	_, err = h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{NodeId: "n1", CommandId: id, Status: fleetv1.CommandStatus_COMMAND_STATUS_PENDING})
	wantCode(t, err, codes.InvalidArgument, "status")
	_, err = h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1", Wait: durationpb.New(-time.Second)})
	wantCode(t, err, codes.InvalidArgument, "wait")
}

// TestHeartbeatDelivery: with command_delivery heartbeat, registration says
// so and heartbeats say how many commands wait.
func TestHeartbeatDelivery(t *testing.T) {
	h := newHarness(t, withConfig(func(c *controlplane.Config) { c.CommandDelivery = "heartbeat" }))
	ctx := ctxT(t)
	resp := h.register("n1", 1)
	if resp.GetCommandDelivery() != nodev1.CommandDelivery_COMMAND_DELIVERY_HEARTBEAT {
		t.Fatalf("delivery %s", resp.GetCommandDelivery())
	}
	hb, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"})
	if err != nil || hb.GetPendingCommands() != 0 {
		t.Fatalf("idle heartbeat: %v %v", hb, err)
	}
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ops.RunDiagnostics(ctx, &controlplanev1.RunDiagnosticsRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	if hb, _ := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); hb.GetPendingCommands() != 2 {
		t.Fatalf("pending %d, want 2", hb.GetPendingCommands())
	}
	got, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(got.GetCommands()) != 2 {
		t.Fatalf("fetch: %v %v", got, err)
	}
	if hb, _ := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1"}); hb.GetPendingCommands() != 0 {
		t.Fatalf("pending %d after the fetch", hb.GetPendingCommands())
	}
	if h2 := newHarness(t); h2.register("n1", 1).GetCommandDelivery() != nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM {
		t.Fatal("default delivery is not the command stream")
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
	clock.Advance(h.cfg.CommandPollTimeout.Duration + fleet.RedeliverSlack + time.Second)
	h.fleet().Tick(ctx)
	again, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(again.GetCommands()) != 1 || again.GetCommands()[0].GetId() != first.GetCommands()[0].GetId() {
		t.Fatalf("not delivered again: %v %v", again, err)
	}
	// An agent that never answers, however often it gets the command:
	// after a few deliveries the command fails instead of cycling.
	for i := 1; ; i++ {
		clock.Advance(h.cfg.CommandPollTimeout.Duration + fleet.RedeliverSlack + time.Second)
		h.fleet().Tick(ctx)
		got, _ := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
		if len(got.GetCommands()) == 0 {
			if i != fleet.MaxRedeliveries {
				t.Fatalf("gave up after %d redeliveries, want %d", i, fleet.MaxRedeliveries)
			}
			break
		}
		if i > fleet.MaxRedeliveries {
			t.Fatal("the command is handed out for ever")
		}
	}
	cmd := h.get("n1").GetCommands()[0]
	if cmd.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED || !strings.Contains(cmd.GetMessage(), "did not answer") {
		t.Fatalf("unanswered command ended as %v", cmd)
	}
}
