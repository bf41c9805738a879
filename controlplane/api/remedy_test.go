package api_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/fleettest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestRemedyRequests walks ResetGpu and RebootNode through a real control
// plane: each refusal with its code and the field it names, and the
// commands queued, recorded with the node's boot id, and audited.
func TestRemedyRequests(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	register := func(id string, disabled bool) {
		t.Helper()
		req := &nodev1.RegisterNodeRequest{NodeId: id, Gpus: fleettest.GPUs(2), BootId: "boot-" + id, RemediesDisabled: disabled}
		if _, err := cp.Nodes.RegisterNode(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	register("n1", false)
	register("locked", true)
	register("gone", false)
	if _, err := cp.Ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: "gone", Force: true}); err != nil {
		t.Fatal(err)
	}
	reset := func(id string, gpu uint32, reason string) func() error {
		return func() error {
			_, err := cp.Ops.ResetGpu(ctx, &controlplanev1.ResetGpuRequest{NodeId: id, GpuIndex: gpu, Reason: reason})
			return err
		}
	}
	reboot := func(id string, force bool) func() error {
		return func() error {
			_, err := cp.Ops.RebootNode(ctx, &controlplanev1.RebootNodeRequest{NodeId: id, Force: force})
			return err
		}
	}
	tests := []struct {
		name  string
		call  func() error
		code  codes.Code
		field string // the field an InvalidArgument names
		says  string
	}{
		{"reset-bad-node-id", reset("bad/id", 0, ""), codes.InvalidArgument, "node_id", ""},
		{"reset-reason-too-long", reset("n1", 0, strings.Repeat("x", 1025)), codes.InvalidArgument, "reason", ""},
		{"reset-gpu-past-limit", reset("n1", 64, ""), codes.InvalidArgument, "gpu_index", "not below 64"},
		{"reset-unknown-node", reset("nope", 0, ""), codes.NotFound, "", `no node "nope"`},
		{"reset-gpu-not-on-node", reset("n1", 2, ""), codes.InvalidArgument, "gpu_index", `node "n1" has no GPU 2`},
		{"reset-terminating", reset("gone", 0, ""), codes.FailedPrecondition, "", "TERMINATING; it cannot be reset"},
		{"reset-remedies-disabled", reset("locked", 0, ""), codes.FailedPrecondition, "", "agent forbids remedies"},
		{"reboot-bad-node-id", reboot("-x", true), codes.InvalidArgument, "node_id", ""},
		{"reboot-unknown-node", reboot("nope", true), codes.NotFound, "", `no node "nope"`},
		{"reboot-not-drained", reboot("n1", false), codes.FailedPrecondition, "", "ACTIVE; it cannot be rebooted until it is drained"},
		{"reboot-terminating", reboot("gone", true), codes.FailedPrecondition, "", "TERMINATING; it cannot be rebooted"},
		{"reboot-remedies-disabled", reboot("locked", true), codes.FailedPrecondition, "", "agent forbids remedies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			st := status.Convert(err)
			field, _ := apierr.Field(err)
			if st.Code() != tt.code || field != tt.field || !strings.Contains(st.Message(), tt.says) {
				t.Fatalf("got %s %q naming %q; want %s naming %q saying %q", st.Code(), st.Message(), field, tt.code, tt.field, tt.says)
			}
		})
	}

	resetResp, err := cp.Ops.ResetGpu(ctx, &controlplanev1.ResetGpuRequest{NodeId: "n1", GpuIndex: 1, Reason: "XID 48", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := resetResp.GetCommand(); c.GetType() != fleetv1.CommandType_COMMAND_TYPE_RESET_GPU || c.GetGpuIndex() != 1 || !c.GetForce() || c.GetReason() != "XID 48" {
		t.Fatalf("reset queued %v", c)
	}
	rebootResp, err := cp.Ops.RebootNode(ctx, &controlplanev1.RebootNodeRequest{NodeId: "n1", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if c := rebootResp.GetCommand(); c.GetType() != fleetv1.CommandType_COMMAND_TYPE_REBOOT || c.GetBootId() != "boot-n1" {
		t.Fatalf("reboot queued %v", c)
	}
	// The agent gets both through its command poll.
	cmds, err := cp.Nodes.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: "n1"})
	if err != nil || len(cmds.GetCommands()) != 2 {
		t.Fatalf("the agent got %v, %v", cmds.GetCommands(), err)
	}
	audit, err := cp.Ops.ListAudit(ctx, &controlplanev1.ListAuditRequest{NodeId: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, e := range audit.GetEntries() {
		if e.GetCode() == "OK" {
			seen[e.GetRpc()] = e.GetMessage()
		}
	}
	if seen["ResetGpu"] != "command "+resetResp.GetCommand().GetId() || seen["RebootNode"] != "command "+rebootResp.GetCommand().GetId() {
		t.Fatalf("audited %v", seen)
	}
}
