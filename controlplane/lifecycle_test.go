package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/controlplane/provider/providertest"
	"github.com/navarch/navarch/internal/display"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

const (
	provisioning    = fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING
	active          = fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE
	cordoned        = fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED
	draining        = fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING
	drained         = fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED
	terminating     = fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING
	terminated      = fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED
	provisionFailed = fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED
)

// toState drives a fresh registered node into the given lifecycle state.
func (h *harness) toState(id string, want fleetv1.LifecycleState) {
	h.t.Helper()
	ctx := ctxT(h.t)
	h.register(id, 1)
	var err error
	switch want {
	case active:
	case cordoned:
		_, err = h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: id})
	case draining:
		_, err = h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: id})
	case drained:
		var resp *controlplanev1.DrainNodeResponse
		resp, err = h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: id})
		if err == nil {
			_, err = h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
				NodeId: id, CommandId: resp.GetCommand().GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, Message: "no GPU processes left",
			})
		}
	case terminating:
		_, err = h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: id})
	default:
		h.t.Fatalf("toState %s not supported", want)
	}
	if err != nil {
		h.t.Fatal(err)
	}
	if got := h.lifecycle(id); got != want {
		h.t.Fatalf("%s is %s, want %s", id, got, want)
	}
}

// TestLifecycleTransitions covers every operator action from every state an
// agent-backed node can be in: allowed ones move it, harmless repeats
// change nothing, and forbidden ones are FailedPrecondition.
func TestLifecycleTransitions(t *testing.T) {
	type action struct {
		name string
		do   func(h *harness, id string) error
	}
	ctx := context.Background()
	cordon := action{"cordon", func(h *harness, id string) error {
		_, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: id})
		return err
	}}
	uncordon := action{"uncordon", func(h *harness, id string) error {
		_, err := h.ops.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: id})
		return err
	}}
	drain := action{"drain", func(h *harness, id string) error {
		_, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: id})
		return err
	}}
	terminate := action{"terminate", func(h *harness, id string) error {
		_, err := h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: id})
		return err
	}}
	rows := []struct {
		from fleetv1.LifecycleState
		act  action
		want fleetv1.LifecycleState
		code codes.Code
	}{
		{active, cordon, cordoned, codes.OK},
		{active, uncordon, active, codes.OK},
		{active, drain, draining, codes.OK},
		{active, terminate, terminating, codes.OK},
		{cordoned, cordon, cordoned, codes.OK},
		{cordoned, uncordon, active, codes.OK},
		{cordoned, drain, draining, codes.OK},
		{cordoned, terminate, terminating, codes.OK},
		{draining, cordon, draining, codes.OK},
		{draining, uncordon, active, codes.OK},
		{draining, drain, draining, codes.OK},
		{draining, terminate, terminating, codes.OK},
		{drained, cordon, drained, codes.OK},
		{drained, uncordon, active, codes.OK},
		{drained, drain, drained, codes.OK},
		{drained, terminate, terminating, codes.OK},
		{terminating, cordon, terminating, codes.FailedPrecondition},
		{terminating, uncordon, terminating, codes.FailedPrecondition},
		{terminating, drain, terminating, codes.FailedPrecondition},
		{terminating, terminate, terminating, codes.OK},
	}
	h := newHarness(t)
	for i, row := range rows {
		name := fmt.Sprintf("%s-%s", display.Lifecycle(row.from), row.act.name)
		t.Run(name, func(t *testing.T) {
			h.t = t
			id := fmt.Sprintf("node-%d", i)
			h.toState(id, row.from)
			err := row.act.do(h, id)
			if row.code == codes.OK && err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if row.code != codes.OK {
				wantCode(t, err, row.code, "")
			}
			if got := h.lifecycle(id); got != row.want {
				t.Fatalf("after %s: %s, want %s", row.act.name, got, row.want)
			}
		})
	}
}

func TestUncordonDuringDrainCancelsIt(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.toState("n1", draining)
	if _, err := h.ops.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	cmds := h.get("n1").GetCommands()
	byType := map[fleetv1.CommandType]fleetv1.CommandStatus{}
	for _, c := range cmds {
		byType[c.GetType()] = c.GetStatus()
	}
	if byType[fleetv1.CommandType_COMMAND_TYPE_DRAIN] != fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED {
		t.Fatalf("drain command: %s", byType[fleetv1.CommandType_COMMAND_TYPE_DRAIN])
	}
	if byType[fleetv1.CommandType_COMMAND_TYPE_UNCORDON] != fleetv1.CommandStatus_COMMAND_STATUS_PENDING {
		t.Fatalf("uncordon command: %s", byType[fleetv1.CommandType_COMMAND_TYPE_UNCORDON])
	}
}

func TestDrainValidationAndSpec(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 1)
	_, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1", Deadline: timestamppb.New(time.Now().Add(-time.Minute))})
	wantCode(t, err, codes.InvalidArgument, "deadline")
	_, err = h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1", Deadline: timestamppb.New(time.Now().Add(30 * 24 * time.Hour))})
	wantCode(t, err, codes.InvalidArgument, "deadline")
	_, err = h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1", Reason: string(make([]byte, 2000))})
	wantCode(t, err, codes.InvalidArgument, "reason")
	if h.lifecycle("n1") != active {
		t.Fatal("a rejected drain changed the node")
	}
	deadline := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	resp, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1", Reason: "kernel upgrade", Deadline: timestamppb.New(deadline), Force: true})
	if err != nil {
		t.Fatal(err)
	}
	c := resp.GetCommand()
	if c.GetType() != fleetv1.CommandType_COMMAND_TYPE_DRAIN || !c.GetDrain().GetForce() || !c.GetDrain().GetDeadline().AsTime().Equal(deadline) || c.GetReason() != "kernel upgrade" {
		t.Fatalf("drain command %v", c)
	}
	polled, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(polled.GetCommands()) != 1 || !polled.GetCommands()[0].GetDrain().GetForce() {
		t.Fatalf("agent got %v %v", polled, err)
	}
	// The agent reports what it killed; the node is drained and operators
	// see the pids.
	_, err = h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
		NodeId: "n1", CommandId: c.GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
		Message: "deadline passed; signalled 2 GPU processes", SignalledPids: []uint32{4242, 4243},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := h.get("n1")
	if d.GetNode().GetLifecycle() != drained {
		t.Fatalf("lifecycle %s", d.GetNode().GetLifecycle())
	}
	if got := d.GetCommands()[0]; got.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || len(got.GetSignalledPids()) != 2 {
		t.Fatalf("command history: %v", got)
	}
}

// TestDrainAgainWithForceReplacesTheDrain: repeating a drain changes
// nothing, but a drain with force or another deadline replaces the one
// under way, so an operator hurrying a stuck drain is not told "OK" for
// nothing.
func TestDrainAgainWithForceReplacesTheDrain(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 1)
	first, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1", Reason: "kernel upgrade"})
	if err != nil {
		t.Fatal(err)
	}
	// Repeats change nothing: without a deadline, or as the CLI and the
	// console send them, "now plus the timeout", which is later.
	for _, d := range []*timestamppb.Timestamp{nil, timestamppb.New(time.Now().Add(2 * time.Hour))} {
		again, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1", Deadline: d})
		if err != nil || again.GetCommand().GetId() != first.GetCommand().GetId() {
			t.Fatalf("a repeat (deadline %v) queued %v (%v), want the drain under way", d, again.GetCommand(), err)
		}
	}
	deadline := time.Now().Add(2 * time.Minute).Truncate(time.Second)
	forced, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1", Force: true, Deadline: timestamppb.New(deadline)})
	if err != nil {
		t.Fatal(err)
	}
	c := forced.GetCommand()
	if c.GetId() == first.GetCommand().GetId() || !c.GetDrain().GetForce() || !c.GetDrain().GetDeadline().AsTime().Equal(deadline) || c.GetReason() != "kernel upgrade" {
		t.Fatalf("forced drain command %v", c)
	}
	d := h.get("n1")
	n := d.GetNode()
	if n.GetLifecycle() != draining || !n.GetDrain().GetForce() || !n.GetDrain().GetDeadline().AsTime().Equal(deadline) {
		t.Fatalf("node %s drain %v", n.GetLifecycle(), n.GetDrain())
	}
	status := map[string]fleetv1.CommandStatus{}
	for _, cmd := range d.GetCommands() {
		status[cmd.GetId()] = cmd.GetStatus()
	}
	if status[first.GetCommand().GetId()] != fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED || status[c.GetId()] != fleetv1.CommandStatus_COMMAND_STATUS_PENDING {
		t.Fatalf("commands %v", status)
	}
	// The agent is handed only the new drain.
	polled, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(polled.GetCommands()) != 1 || polled.GetCommands()[0].GetId() != c.GetId() {
		t.Fatalf("agent got %v %v", polled, err)
	}
	// A repeat without force does not take the force away; an earlier
	// deadline hurries the drain again and keeps it.
	if again, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1"}); err != nil || again.GetCommand().GetId() != c.GetId() {
		t.Fatalf("repeat without force: %v %v", again.GetCommand(), err)
	}
	sooner, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1", Deadline: timestamppb.New(deadline.Add(-time.Minute))})
	if err != nil || sooner.GetCommand().GetId() == c.GetId() || !sooner.GetCommand().GetDrain().GetForce() {
		t.Fatalf("earlier deadline: %v %v", sooner.GetCommand(), err)
	}
}

// TestTimedOutProvisionStopIsRetried: a provider that cannot stop the
// instance of a provision that timed out is asked again on every monitor
// pass, the node says the stop is still under way, and an agent that
// registers late on the dying instance is refused.
func TestTimedOutProvisionStopIsRetried(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	p := &providertest.Recorder{}
	p.FailStops(errors.New("cloud API unavailable"))
	h := newHarness(t, withFakeClock(clock), withProviders(p))
	ctx := ctxT(t)
	resp, err := h.ops.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{Provider: "test", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetNodes()[0].GetNodeId()
	clock.Advance(h.cfg.ProvisionTimeout.Duration + time.Second)
	h.fleet().Tick(ctx)
	n := h.get(id).GetNode()
	if n.GetLifecycle() != provisionFailed || !strings.Contains(n.GetLifecycleReason(), "stopping its instance i-1") {
		t.Fatalf("%s: %q", n.GetLifecycle(), n.GetLifecycleReason())
	}
	_, err = h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: fleettest.GPUs(1), InstanceId: "i-1"})
	wantCode(t, err, codes.FailedPrecondition, "node_id")

	testutil.Eventually(t, "a failed attempt", func() bool { return p.Attempts() > 0 })
	// The control plane restarts before the stop succeeded: it takes the
	// work up again.
	h.restart()
	ctx = ctxT(t)
	_, err = h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: fleettest.GPUs(1), InstanceId: "i-1"})
	wantCode(t, err, codes.FailedPrecondition, "node_id")
	p.FailStops(nil)
	testutil.Eventually(t, "the stop retried", func() bool {
		h.fleet().Tick(ctx)
		return len(p.Stopped()) == 1
	})
	testutil.Eventually(t, "reason updated", func() bool {
		return strings.Contains(h.get(id).GetNode().GetLifecycleReason(), "instance i-1 stopped")
	})
	h.fleet().Tick(ctx)
	time.Sleep(50 * time.Millisecond)
	if got := len(p.Stopped()); got != 1 {
		t.Fatalf("instance stopped %d times", got)
	}
}

func TestDrainDeadlinePassesWithoutReport(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock))
	ctx := ctxT(t)
	h.register("n1", 1)
	if _, err := h.ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "n1", Deadline: timestamppb.New(clock.Now().Add(time.Minute))}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	h.fleet().Tick(ctx)
	if h.lifecycle("n1") != draining {
		t.Fatal("drained before the grace for the agent's report")
	}
	clock.Advance(fleet.DrainGrace + time.Second)
	h.fleet().Tick(ctx)
	d := h.get("n1")
	if d.GetNode().GetLifecycle() != drained || d.GetNode().GetLifecycleReason() != "drain deadline passed" {
		t.Fatalf("%s: %s", d.GetNode().GetLifecycle(), d.GetNode().GetLifecycleReason())
	}
	if d.GetCommands()[0].GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_FAILED {
		t.Fatalf("drain command left %s", d.GetCommands()[0].GetStatus())
	}
}

func TestProvisionAndTerminateThroughProvider(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	p := &providertest.Recorder{}
	h := newHarness(t, withFakeClock(clock), withProviders(p))
	ctx := ctxT(t)

	_, err := h.ops.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{Provider: "nope", Count: 1})
	wantCode(t, err, codes.InvalidArgument, "provider")
	_, err = h.ops.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{Provider: "test", Count: 0})
	wantCode(t, err, codes.InvalidArgument, "count")
	_, err = h.ops.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{Provider: "test", Count: 1, SimFaults: []string{"xid=79@gpu2+zz"}})
	wantCode(t, err, codes.InvalidArgument, "sim_faults[0]")

	resp, err := h.ops.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{
		Provider: "test", Count: 3, GpusPerNode: 4, Labels: map[string]string{"pool": "train"},
		SimFaults: []string{"xid=79@gpu2+3s"}, ChaosInterval: durationpb.New(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetNodes()) != 3 || !strings.HasPrefix(resp.GetNodes()[0].GetNodeId(), "test-") || resp.GetNodes()[0].GetLifecycle() != provisioning || resp.GetNodes()[0].GetLabels()["pool"] != "train" {
		t.Fatalf("provisioned %v", resp.GetNodes())
	}
	if spec := p.Spec(); spec.GPUsPerNode != 4 || spec.Request.GetChaosInterval().AsDuration() != time.Minute || len(spec.Request.GetSimFaults()) != 1 {
		t.Fatalf("provider got %+v", spec)
	}
	// The provider was asked for the nodes the fleet recorded, in order.
	var ids []string
	for _, n := range resp.GetNodes() {
		ids = append(ids, n.GetNodeId())
	}
	if !slices.Equal(p.Spec().NodeIDs, ids) {
		t.Fatalf("provider asked for %v, fleet recorded %v", p.Spec().NodeIDs, ids)
	}
	st, err := h.ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if err != nil || st.GetSummary().GetProvisioning() != 3 || len(st.GetProviders()) != 1 || st.GetProviders()[0].GetName() != "test" {
		t.Fatalf("status %v %v", st, err)
	}

	// test-1 registers; test-2 fails to start; test-3 never registers.
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: ids[0], Gpus: fleettest.GPUs(4), InstanceId: "i-1"}); err != nil {
		t.Fatal(err)
	}
	p.Spec().Failed(ids[1], "agent exited with status 1: no such file")
	clock.Advance(h.cfg.ProvisionTimeout.Duration + time.Second)
	h.fleet().Tick(ctx)
	for id, want := range map[string]fleetv1.LifecycleState{ids[0]: active, ids[1]: provisionFailed, ids[2]: provisionFailed} {
		if got := h.lifecycle(id); got != want {
			t.Errorf("%s is %s, want %s", id, got, want)
		}
	}
	if r := h.get(ids[1]).GetNode().GetLifecycleReason(); r != "agent exited with status 1: no such file" {
		t.Errorf("failure reason %q", r)
	}
	// The instance whose agent never registered is stopped, not left to
	// run unseen.
	testutil.Eventually(t, "test-3 stopped", func() bool { return len(p.Stopped()) == 1 })
	if got := p.Stopped()[0]; got.NodeID != ids[2] {
		t.Fatalf("stopped %+v, want test-3's instance", got)
	}
	testutil.Eventually(t, "test-3's reason says its instance stopped", func() bool {
		r := h.get(ids[2]).GetNode().GetLifecycleReason()
		return strings.Contains(r, "did not register") && strings.Contains(r, "instance i-3 stopped")
	})

	// Terminate test-1 (online again): it drains first, then the provider
	// stops it.
	if _, err := h.node.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: ids[0]}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: ids[0], DrainTimeout: durationpb.New(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	polled, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: ids[0]})
	if err != nil || len(polled.GetCommands()) != 1 || polled.GetCommands()[0].GetType() != fleetv1.CommandType_COMMAND_TYPE_DRAIN {
		t.Fatalf("terminate did not drain first: %v %v", polled, err)
	}
	h.fleet().Tick(ctx)
	if len(p.Stopped()) != 1 {
		t.Fatal("stopped before the drain finished")
	}
	if _, err := h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
		NodeId: ids[0], CommandId: polled.GetCommands()[0].GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED,
	}); err != nil {
		t.Fatal(err)
	}
	h.fleet().Tick(ctx)
	testutil.Eventually(t, "provider stop", func() bool { return len(p.Stopped()) == 2 })
	testutil.Eventually(t, "TERMINATED", func() bool { return h.lifecycle(ids[0]) == terminated })
	if got := p.Stopped()[1]; got.InstanceID != "i-1" {
		t.Fatalf("stopped %+v", got)
	}

	// A failed provision is cleaned up at once by terminate.
	if _, err := h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: ids[1], Force: true}); err != nil {
		t.Fatal(err)
	}
	h.fleet().Tick(ctx)
	testutil.Eventually(t, "test-2 TERMINATED", func() bool { return h.lifecycle(ids[1]) == terminated })

	// Terminated nodes leave the fleet after the retention.
	clock.Advance(h.cfg.TerminatedRetention.Duration + time.Second)
	h.fleet().Tick(ctx)
	_, err = h.ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: ids[0]})
	wantCode(t, err, codes.NotFound, "node_id")
}

func TestTerminateSelfRegisteredNode(t *testing.T) {
	h := newHarness(t)
	ctx := ctxT(t)
	h.register("n1", 1)
	polled := h.forceTerminate("n1")
	if len(polled) != 1 || polled[0].GetType() != fleetv1.CommandType_COMMAND_TYPE_TERMINATE {
		t.Fatalf("forced terminate should ask the agent to stop: %v", polled)
	}
	if _, err := h.node.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
		NodeId: "n1", CommandId: polled[0].GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, Message: "agent stopping",
	}); err != nil {
		t.Fatal(err)
	}
	if got := h.lifecycle("n1"); got != terminated {
		t.Fatalf("lifecycle %s", got)
	}
	// A terminated node's id can come back as a new node.
	resp := h.register("n1", 1)
	if resp.GetLifecycle() != active {
		t.Fatalf("re-registered terminated node is %s", resp.GetLifecycle())
	}
}
