package sim

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// commands waits for one node's commands until ctx ends, as the agent
// does: on a command stream held open, or with long polls against a
// control plane that asks for them or has no stream; in heartbeat delivery
// heartbeatOne fetches them instead.
func (f *Fleet) commands(ctx context.Context, n *node) {
	if !n.term().longPoll {
		return
	}
	noStream := false
	for ctx.Err() == nil && !n.stopped.Load() {
		var err error
		if n.term().streams && !noStream {
			err = f.watchCommands(ctx, n)
			if status.Code(err) == codes.Unimplemented {
				noStream = true
				continue
			}
		} else {
			err = f.fetchCommands(ctx, n, n.term().pollFor)
		}
		if err != nil && !n.stopped.Load() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second + time.Duration(rand.IntN(1000))*time.Millisecond):
			}
		}
	}
}

// watchCommands holds the node's WatchNodeCommands stream open and answers
// what it sends, until the stream ends or the node stops; it returns why.
func (f *Fleet) watchCommands(ctx context.Context, n *node) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := n.client.WatchNodeCommands(sctx, &nodev1.WatchNodeCommandsRequest{NodeId: n.id})
	for err == nil && !n.stopped.Load() {
		var resp *nodev1.WatchNodeCommandsResponse
		if resp, err = stream.Recv(); err == nil {
			f.answer(ctx, n, resp.GetCommands())
		}
	}
	if err == io.EOF {
		err = status.Error(codes.Unavailable, "the control plane ended the command stream")
	}
	if err != nil && status.Code(err) != codes.Unimplemented {
		f.failed(ctx, n, err)
	}
	return err
}

// fetchCommands calls GetNodeCommands once and answers what it returns.
func (f *Fleet) fetchCommands(ctx context.Context, n *node, wait time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
	resp, err := n.client.GetNodeCommands(cctx, &nodev1.GetNodeCommandsRequest{NodeId: n.id, Wait: durationpb.New(wait)})
	cancel()
	if err != nil {
		f.failed(ctx, n, err)
		return err
	}
	f.answer(ctx, n, resp.GetCommands())
	return nil
}

// answer reports each command done, as an agent with no GPU jobs would.
func (f *Fleet) answer(ctx context.Context, n *node, cmds []*fleetv1.Command) {
	for _, c := range cmds {
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
}
