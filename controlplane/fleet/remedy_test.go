package fleet

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/fleettest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// commandStatus is the stored status of node n1's command id.
func commandStatus(t *testing.T, f *Fleet, id string) fleetv1.CommandStatus {
	t.Helper()
	resp, err := f.NodeDetail(ctxT(t), "n1", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.GetCommands() {
		if c.GetId() == id {
			return c.GetStatus()
		}
	}
	t.Fatalf("no command %s", id)
	return 0
}

func result(t *testing.T, f *Fleet, id string, st fleetv1.CommandStatus) {
	t.Helper()
	if _, err := f.CommandResult(ctxT(t), &nodev1.ReportCommandResultRequest{NodeId: "n1", CommandId: id, Status: st, Message: "from the agent"}); err != nil {
		t.Fatalf("report %s %s: %v", id, st, err)
	}
}

// TestResetClearsWhatAResetRemedies: an XID 48 raised through the normal
// report path makes the GPU UNHEALTHY with a reset as its remedy; the
// reset, reported SUCCEEDED, clears it, records a GPU_RECOVERED event and
// brings the node back to HEALTHY. A failed reset clears nothing.
func TestResetClearsWhatAResetRemedies(t *testing.T) {
	for _, tt := range []struct {
		name   string
		result fleetv1.CommandStatus
		health fleetv1.HealthStatus
	}{
		{"succeeded-clears", fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY},
		{"failed-keeps", fleetv1.CommandStatus_COMMAND_STATUS_FAILED, fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, Options{})
			t.Cleanup(f.Close)
			ctx := ctxT(t)
			register(t, f, "n1", 2)
			if _, err := f.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: "n1", Metrics: []*fleetv1.GpuMetrics{fleettest.CleanMetrics(0), fleettest.CleanMetrics(1)}}); err != nil {
				t.Fatal(err)
			}
			if _, err := xid(t, f, "n1", 1, 48); err != nil {
				t.Fatal(err)
			}
			g := f.get("n1").node.Load().GetGpus()[1]
			if g.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY || g.GetRemedy() != fleetv1.Remedy_REMEDY_RESET_GPU {
				t.Fatalf("after XID 48: GPU 1 %s, remedy %s", g.GetHealth(), g.GetRemedy())
			}
			cmd, err := f.ResetGPU(ctx, "n1", 1, "", false)
			if err != nil {
				t.Fatal(err)
			}
			if cmd.GetType() != fleetv1.CommandType_COMMAND_TYPE_RESET_GPU || cmd.GetGpuIndex() != 1 {
				t.Fatalf("queued %v", cmd)
			}
			before := eventCount(t, f)
			result(t, f, cmd.GetId(), fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED)
			result(t, f, cmd.GetId(), tt.result)
			n := f.get("n1").node.Load()
			if n.GetGpus()[1].GetHealth() != tt.health || n.GetHealth() != tt.health {
				t.Fatalf("GPU 1 %s, node %s; want both %s", n.GetGpus()[1].GetHealth(), n.GetHealth(), tt.health)
			}
			evs, err := f.Events(ctx, "n1", fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED, "", 1)
			if err != nil {
				t.Fatal(err)
			}
			recovered := len(evs) == 1 && evs[0].GetKind() == fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED && evs[0].GetGpuIndex() == 1
			if wantRecovered := tt.health == fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY; recovered != wantRecovered || (eventCount(t, f) > before) != wantRecovered {
				t.Fatalf("latest event %v; want a GPU_RECOVERED on GPU 1: %t", evs, wantRecovered)
			}
		})
	}
}

// TestRebootIsConfirmedByANewBootID: an agent's word does not finish a
// reboot; a registration from the same boot leaves it acknowledged, and
// one from another boot makes it SUCCEEDED. An agent that says it failed
// fails it.
func TestRebootIsConfirmedByANewBootID(t *testing.T) {
	f := newFleet(t, Options{})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	register(t, f, "n1", 2)
	again := func(boot string) {
		t.Helper()
		if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Hostname: "n1", Gpus: fleettest.GPUs(2), BootId: boot}); err != nil {
			t.Fatal(err)
		}
	}
	acked := fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED

	cmd, err := f.Reboot(ctx, "n1", "", true)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.GetBootId() != "boot-1" || !cmd.GetForce() {
		t.Fatalf("queued %v; want boot id boot-1 and force", cmd)
	}
	result(t, f, cmd.GetId(), acked)
	result(t, f, cmd.GetId(), fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED)
	if got := commandStatus(t, f, cmd.GetId()); got != acked {
		t.Fatalf("after the agent said it succeeded: %s, want %s", got, acked)
	}
	again("boot-1")
	if got := commandStatus(t, f, cmd.GetId()); got != acked {
		t.Fatalf("after a registration from the same boot: %s, want %s", got, acked)
	}
	again("boot-2")
	if got := commandStatus(t, f, cmd.GetId()); got != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		t.Fatalf("after a registration from a new boot: %s", got)
	}

	failed, err := f.Reboot(ctx, "n1", "", true)
	if err != nil {
		t.Fatal(err)
	}
	result(t, f, failed.GetId(), fleetv1.CommandStatus_COMMAND_STATUS_FAILED)
	if got := commandStatus(t, f, failed.GetId()); got != fleetv1.CommandStatus_COMMAND_STATUS_FAILED {
		t.Fatalf("a reboot the agent failed: %s", got)
	}
}

// TestRemedyRefusals: each refusal with its code and what it names.
func TestRemedyRefusals(t *testing.T) {
	f := newFleet(t, Options{})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	register(t, f, "n1", 2)
	if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "locked", Gpus: fleettest.GPUs(1), RemediesDisabled: true}); err != nil {
		t.Fatal(err)
	}
	register(t, f, "gone", 1)
	if _, err := f.Terminate(ctx, "gone", "", true, 0); err != nil {
		t.Fatal(err)
	}
	reset := func(id string, gpu uint32) func() error {
		return func() error { _, err := f.ResetGPU(ctx, id, gpu, "", true); return err }
	}
	reboot := func(id string, force bool) func() error {
		return func() error { _, err := f.Reboot(ctx, id, "", force); return err }
	}
	tests := []struct {
		name      string
		call      func() error
		code      codes.Code
		field     string // for InvalidArgument
		lifecycle string // for a lifecycle refusal
		says      string
	}{
		{"reset-unknown-node", reset("nope", 0), codes.NotFound, "", "", ""},
		{"reset-no-such-gpu", reset("n1", 5), codes.InvalidArgument, "gpu_index", "", ""},
		{"reset-terminating", reset("gone", 0), codes.FailedPrecondition, "", "TERMINATING", ""},
		{"reset-remedies-disabled", reset("locked", 0), codes.FailedPrecondition, "", "", "agent forbids remedies"},
		{"reboot-unknown-node", reboot("nope", true), codes.NotFound, "", "", ""},
		{"reboot-not-drained", reboot("n1", false), codes.FailedPrecondition, "", "ACTIVE", "until it is drained"},
		{"reboot-terminating", reboot("gone", true), codes.FailedPrecondition, "", "TERMINATING", ""},
		{"reboot-remedies-disabled", reboot("locked", true), codes.FailedPrecondition, "", "", "agent forbids remedies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
			if field, _ := apierr.Field(err); field != tt.field {
				t.Fatalf("names field %q, want %q (%v)", field, tt.field, err)
			}
			info, _ := apierr.Info(err)
			if info.GetMetadata()["lifecycle"] != tt.lifecycle {
				t.Fatalf("names lifecycle %q, want %q (%v)", info.GetMetadata()["lifecycle"], tt.lifecycle, err)
			}
			if !strings.Contains(status.Convert(err).Message(), tt.says) {
				t.Fatalf("message %q does not say %q", status.Convert(err).Message(), tt.says)
			}
		})
	}
}

// TestResetRepeats: asking again for a GPU's open reset is a harmless
// repeat, unless it adds force, which replaces the open one; another GPU's
// reset is a command of its own.
func TestResetRepeats(t *testing.T) {
	f := newFleet(t, Options{})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	register(t, f, "n1", 2)
	first, err := f.ResetGPU(ctx, "n1", 0, "", false)
	if err != nil {
		t.Fatal(err)
	}
	repeat, err := f.ResetGPU(ctx, "n1", 0, "", false)
	if err != nil || repeat.GetId() != first.GetId() {
		t.Fatalf("repeat: %v %v, want %s again", repeat, err, first.GetId())
	}
	other, err := f.ResetGPU(ctx, "n1", 1, "", false)
	if err != nil || other.GetId() == first.GetId() {
		t.Fatalf("another GPU: %v %v", other, err)
	}
	forced, err := f.ResetGPU(ctx, "n1", 0, "", true)
	if err != nil || forced.GetId() == first.GetId() || !forced.GetForce() {
		t.Fatalf("forced: %v %v", forced, err)
	}
	if got := commandStatus(t, f, first.GetId()); got != fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED {
		t.Fatalf("the reset the forced one replaced is %s", got)
	}
	if again, _ := f.ResetGPU(ctx, "n1", 0, "", false); again.GetId() != forced.GetId() {
		t.Fatalf("a reset without force after a forced one queued %s", again.GetId())
	}
	// A reset the agent has begun is not replaced, even by force: a second
	// one would run beside it.
	if _, err := f.CommandResult(ctx, &nodev1.ReportCommandResultRequest{NodeId: "n1", CommandId: other.GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED}); err != nil {
		t.Fatal(err)
	}
	if again, err := f.ResetGPU(ctx, "n1", 1, "", true); err != nil || again.GetId() != other.GetId() {
		t.Fatalf("a forced reset of a GPU whose reset is under way: %v %v, want %s", again, err, other.GetId())
	}
}

// TestRebootNeedsABootID: a node whose agent reports no boot id cannot be
// rebooted, since the reboot could never be confirmed.
func TestRebootNeedsABootID(t *testing.T) {
	f := newFleet(t, Options{})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Hostname: "n1", Gpus: fleettest.GPUs(1)}); err != nil {
		t.Fatal(err)
	}
	_, err := f.Reboot(ctx, "n1", "", true)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "no boot id") {
		t.Fatalf("reboot of a node without a boot id: %v", err)
	}
}
