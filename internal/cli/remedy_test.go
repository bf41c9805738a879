package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/internal/cptest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func TestRemedyCommands(t *testing.T) {
	addr := server(t)
	viewer := newToken(t, addr, "dash", "viewer")
	rows := []struct {
		name  string
		token string // "" leaves $NAVARCH_TOKEN, the admin's
		args  []string
		code  int
		out   string // a prefix of stdout
		err   string
	}{
		{"reset-queued", "", []string{"reset-gpu", "gpu-1", "--gpu", "1", "--reason", "XID 48"}, ExitOK, "gpu-1: reset of GPU 1 queued as cmd-", ""},
		{"reset-flags-first", "", []string{"reset-gpu", "--force", "--gpu", "0", "gpu-1"}, ExitOK, "gpu-1: reset of GPU 0 queued as cmd-", ""},
		{"reset-no-gpu", "", []string{"reset-gpu", "gpu-1"}, ExitUsage, "", "reset-gpu needs --gpu N"},
		{"reset-bad-gpu", "", []string{"reset-gpu", "gpu-1", "--gpu", "first"}, ExitUsage, "", "not a GPU index"},
		{"reset-gpu-not-on-node", "", []string{"reset-gpu", "gpu-1", "--gpu", "5"}, ExitRefused, "", `navarch: gpu_index: node "gpu-1" has no GPU 5` + "\n"},
		{"reset-gpu-past-limit", "", []string{"reset-gpu", "gpu-1", "--gpu", "64"}, ExitRefused, "", "gpu_index: 64 is not below 64"},
		{"reset-unknown-node", "", []string{"reset-gpu", "nope", "--gpu", "0"}, ExitNotFound, "", "navarch: nope: no such node\n"},
		{"reset-two-nodes", "", []string{"reset-gpu", "gpu-1", "gpu-2", "--gpu", "0"}, ExitUsage, "", "reset-gpu needs exactly one node id"},
		{"reset-negative-wait", "", []string{"reset-gpu", "gpu-1", "--gpu", "0", "--wait", "-1s"}, ExitUsage, "", "--wait: -1s is negative"},
		{"reset-viewer", viewer, []string{"reset-gpu", "gpu-1", "--gpu", "0"}, ExitDenied, "",
			"navarch: permission denied: this token's role is viewer; reset-gpu needs operator\n"},
		{"reboot-not-drained", "", []string{"reboot", "gpu-2"}, ExitRefused, "",
			"navarch: gpu-2 is CORDONED; it cannot be rebooted until it is drained (drain it first, or force the reboot)\n"},
		{"reboot-forced", "", []string{"reboot", "gpu-2", "--force", "--reason", "XID 79"}, ExitOK, "gpu-2: reboot queued as cmd-", ""},
		{"reboot-no-node", "", []string{"reboot"}, ExitUsage, "", "reboot needs exactly one node id"},
		{"reboot-no-gpu-flag", "", []string{"reboot", "gpu-1", "--gpu", "0"}, ExitUsage, "", "not defined: -gpu"},
		{"reboot-viewer", viewer, []string{"reboot", "gpu-1", "--force"}, ExitDenied, "",
			"navarch: permission denied: this token's role is viewer; reboot needs operator\n"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			args := []string{"--server", addr}
			if row.token != "" {
				args = append(args, "--token", row.token)
			}
			code, out, errOut := navarch(t, append(args, row.args...)...)
			if code != row.code || !strings.HasPrefix(out, row.out) || (row.out == "" && out != "") || !strings.Contains(errOut, row.err) {
				t.Fatalf("exit %d (want %d), stdout %q (want %q…), stderr %q (want %q)", code, row.code, out, row.out, errOut, row.err)
			}
		})
	}
}

// agentFor plays node id's agent until the test ends: a reset of GPU 0
// succeeds with the tool's words, a reset of another GPU is refused, and
// a reboot is acknowledged and followed by a registration from boot-2.
func agentFor(t *testing.T, cp *cptest.ControlPlane, id string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	report := func(cmd *fleetv1.Command, st fleetv1.CommandStatus, msg string) {
		_, _ = cp.Nodes.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{NodeId: id, CommandId: cmd.GetId(), Status: st, Message: msg})
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			resp, err := cp.Nodes.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: id, Wait: durationpb.New(time.Second)})
			if err != nil {
				continue
			}
			for _, cmd := range resp.GetCommands() {
				switch {
				case cmd.GetType() == fleetv1.CommandType_COMMAND_TYPE_RESET_GPU && cmd.GetGpuIndex() == 0:
					report(cmd, fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, "GPU 00000000:01:00.0 was successfully reset.")
				case cmd.GetType() == fleetv1.CommandType_COMMAND_TYPE_RESET_GPU:
					report(cmd, fleetv1.CommandStatus_COMMAND_STATUS_FAILED, "GPU 1 not reset: compute processes run on it: 4242")
				case cmd.GetType() == fleetv1.CommandType_COMMAND_TYPE_REBOOT:
					report(cmd, fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, "rebooting")
					gpus := []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-" + id + "-0"}, {Index: 1, Uuid: "GPU-" + id + "-1"}}
					_, _ = cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: gpus, BootId: "boot-2"})
				}
			}
		}
	}()
}

// TestRemedyWaitsForTheOutcome: with --wait, reset-gpu and reboot print
// how the command ended and exit non-zero when it failed or did not end
// in time.
func TestRemedyWaitsForTheOutcome(t *testing.T) {
	cp := fleetServer(t)
	agentFor(t, cp, "gpu-1")
	rows := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"reset-succeeds", []string{"reset-gpu", "gpu-1", "--gpu", "0", "--wait", "20s"}, ExitOK,
			"GPU 00000000:01:00.0 was successfully reset.\n", ""},
		{"reset-refused-by-agent", []string{"reset-gpu", "gpu-1", "--gpu", "1", "--wait", "20s"}, ExitFailure,
			"GPU 1 not reset: compute processes run on it: 4242\n", "navarch: reset of GPU 1 on gpu-1 failed\n"},
		{"reboot-confirmed-by-new-boot", []string{"reboot", "gpu-1", "--force", "--wait", "20s"}, ExitOK,
			"rebooted: the node registered again with boot id boot-2\n", ""},
		// gpu-2 has no agent: the command stays queued.
		{"no-outcome-in-time", []string{"reboot", "gpu-2", "--force", "--wait", "1s"}, ExitFailure,
			"", "navarch: no outcome of the reboot on gpu-2 within 1s (command cmd-"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			code, out, errOut := navarch(t, append([]string{"--server", cp.Addr}, row.args...)...)
			if code != row.code || !strings.Contains(out, " queued as cmd-") || !strings.HasSuffix(out, row.out) || !strings.HasPrefix(errOut, row.err) {
				t.Fatalf("exit %d (want %d), stdout %q (want it to end %q), stderr %q (want %q…)", code, row.code, out, row.out, errOut, row.err)
			}
		})
	}
}
