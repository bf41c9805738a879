package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// gpuFlag is --gpu: a GPU's index, which must be given. Whether the node
// has that GPU is the control plane's to say.
type gpuFlag struct {
	index uint32
	set   bool
}

func (g *gpuFlag) String() string {
	if !g.set {
		return ""
	}
	return strconv.FormatUint(uint64(g.index), 10)
}

func (g *gpuFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return errors.New("not a GPU index such as 0 or 7")
	}
	g.index, g.set = uint32(n), true
	return nil
}

// runRemedy asks a node's agent for a GPU reset (reset-gpu) or a reboot
// (reboot), and with --wait, waits for the outcome.
func runRemedy(ctx context.Context, cf *connFlags, cmd string, args []string, env Env) error {
	fs := flagSet(cmd, cf)
	var gpu gpuFlag
	reason := fs.String("reason", "", "`TEXT` why; recorded with the command")
	var force *bool
	if cmd == "reset-gpu" {
		fs.Var(&gpu, "gpu", "`N` the index of the GPU to reset, as 'navarch get node' lists it; required")
		force = fs.Bool("force", false, "stop the GPU's compute processes first (TERM, then KILL) instead of refusing while they run")
	} else {
		force = fs.Bool("force", false, "reboot a node that is not drained; its GPU work dies with it")
	}
	wait := fs.Duration("wait", 0, "`DURATION` wait this long for the outcome; unset, return once the command is queued")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s needs exactly one node id", cmd)
	}
	if cmd == "reset-gpu" && !gpu.set {
		return usagef("reset-gpu needs --gpu N, the GPU to reset")
	}
	if *wait < 0 {
		return usagef("--wait: %s is negative", *wait)
	}
	id := pos[0]
	c, closeConn, err := client(cf)
	if err != nil {
		return err
	}
	defer closeConn()
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	var queued *fleetv1.Command
	what := "reboot"
	if cmd == "reset-gpu" {
		what = fmt.Sprintf("reset of GPU %d", gpu.index)
		var resp *controlplanev1.ResetGpuResponse
		resp, err = c.ResetGpu(cctx, &controlplanev1.ResetGpuRequest{NodeId: id, GpuIndex: gpu.index, Reason: *reason, Force: *force})
		queued = resp.GetCommand()
	} else {
		var resp *controlplanev1.RebootNodeResponse
		resp, err = c.RebootNode(cctx, &controlplanev1.RebootNodeRequest{NodeId: id, Reason: *reason, Force: *force})
		queued = resp.GetCommand()
	}
	cancel()
	if err != nil {
		return nodeFailure(id, err)
	}
	fmt.Fprintf(env.Stdout, "%s: %s queued as %s\n", id, what, queued.GetId())
	if *wait == 0 {
		return nil
	}
	done, err := waitCommand(ctx, c, id, queued.GetId(), *wait)
	if err != nil {
		return nodeFailure(id, err)
	}
	if done == nil {
		return fmt.Errorf("no outcome of the %s on %s within %s (command %s stays queued)", what, id, *wait, queued.GetId())
	}
	fmt.Fprint(env.Stdout, ensureNewline(done.GetMessage()))
	if done.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		return fmt.Errorf("%s on %s %s", what, id, strings.ToLower(display.CommandStatus(done.GetStatus())))
	}
	return nil
}

// waitCommand waits up to wait for node id's command cmdID to finish and
// returns it finished, or nil when wait passed first.
func waitCommand(ctx context.Context, c controlplanev1.ControlPlaneServiceClient, id, cmdID string, wait time.Duration) (*fleetv1.Command, error) {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		node, err := c.GetNode(cctx, &controlplanev1.GetNodeRequest{NodeId: id, EventLimit: 1})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, cmd := range node.GetCommands() {
			if cmd.GetId() != cmdID {
				continue
			}
			switch cmd.GetStatus() {
			case fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, fleetv1.CommandStatus_COMMAND_STATUS_FAILED,
				fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED:
				return cmd, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(500*time.Millisecond, time.Until(deadline))):
		}
	}
	return nil, nil
}
