package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// commands long-polls for one node's commands until ctx ends; in heartbeat
// delivery heartbeatOne fetches them instead.
func (f *Fleet) commands(ctx context.Context, n *node) {
	if !n.longPoll {
		return
	}
	for ctx.Err() == nil && !n.stopped.Load() {
		if err := f.fetchCommands(ctx, n, n.pollFor); err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second + time.Duration(rand.IntN(1000))*time.Millisecond):
			}
		}
	}
}

// fetchCommands calls GetNodeCommands once and answers each command as an
// agent with no GPU jobs would.
func (f *Fleet) fetchCommands(ctx context.Context, n *node, wait time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
	resp, err := n.client.GetNodeCommands(cctx, &nodev1.GetNodeCommandsRequest{NodeId: n.id, Wait: durationpb.New(wait)})
	cancel()
	if err != nil {
		f.failed(ctx, n, err)
		return err
	}
	for _, c := range resp.GetCommands() {
		msg := "done"
		switch c.GetType() {
		case fleetv1.CommandType_COMMAND_TYPE_CORDON:
			msg = "cordoned: this node takes no new work"
		case fleetv1.CommandType_COMMAND_TYPE_UNCORDON:
			msg = "uncordoned: this node takes work again"
		case fleetv1.CommandType_COMMAND_TYPE_DRAIN:
			msg = "no GPU processes left"
		case fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS:
			msg = fmt.Sprintf("diagnostics: %d checks on %d simulated GPUs passed", 5*len(n.gpus), len(n.gpus))
		case fleetv1.CommandType_COMMAND_TYPE_TERMINATE:
			msg = "agent stopping"
			n.stopped.Store(true)
		}
		_, _ = n.client.ReportCommandResult(ctx, &nodev1.ReportCommandResultRequest{
			NodeId: n.id, CommandId: c.GetId(), Status: fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, Message: msg,
		})
	}
	return nil
}
