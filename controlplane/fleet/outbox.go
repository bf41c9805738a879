package fleet

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// The command outbox: each node's unfinished commands (book.open), queued
// by operators and policy, handed to the agent on its command stream, by
// its long poll, or when a heartbeat says some wait, redelivered when unanswered, and closed by the agent's result
// or by a change that makes them moot.

// RedeliverSlack is how long past the command poll timeout a delivered
// command may go without an answer from the agent before it is handed out
// again: the answer that carried it was lost, or the agent died with it.
// Agents recognise a command they already have by its id.
const RedeliverSlack = 30 * time.Second

// MaxRedeliveries is how often an unanswered command is handed out again
// before it fails.
const MaxRedeliveries = 4

// newCommand builds a pending command with a fresh id.
func (f *Fleet) newCommand(ctx context.Context, nodeID string, typ fleetv1.CommandType, reason, by string, now time.Time) (*fleetv1.Command, error) {
	id, err := f.newID(ctx, "cmd")
	if err != nil {
		return nil, err
	}
	return &fleetv1.Command{
		Id:        id,
		NodeId:    nodeID,
		Type:      typ,
		Status:    fleetv1.CommandStatus_COMMAND_STATUS_PENDING,
		Reason:    reason,
		IssuedBy:  by,
		CreatedAt: ts(now),
		UpdatedAt: ts(now),
	}, nil
}

// queue adds a command to c and to the node's open commands; commit makes
// it durable. The caller holds ns.mu.
func (f *Fleet) queue(ctx context.Context, ns *nodeState, c *change, n *fleetv1.Node, typ fleetv1.CommandType, reason, by string, now time.Time) (*fleetv1.Command, error) {
	cmd, err := f.newCommand(ctx, n.GetNodeId(), typ, reason, by, now)
	if err != nil {
		return nil, err
	}
	ns.book.open = append(ns.book.open, cmd)
	c.commands = append(c.commands, cmd)
	return cmd, nil
}

// cancelOpen cancels the node's unfinished commands that match. The caller
// holds ns.mu.
func cancelOpen(ns *nodeState, c *change, match func(*fleetv1.Command) bool, why string, now time.Time) {
	closeOpen(ns, c, match, fleetv1.CommandStatus_COMMAND_STATUS_CANCELLED, why, now)
}

// closeOpen ends the node's unfinished commands that match with a final
// status and says why. The caller holds ns.mu.
func closeOpen(ns *nodeState, c *change, match func(*fleetv1.Command) bool, st fleetv1.CommandStatus, why string, now time.Time) {
	ns.book.open = slices.DeleteFunc(ns.book.open, func(cmd *fleetv1.Command) bool {
		if !match(cmd) {
			return false
		}
		done := proto.CloneOf(cmd)
		done.Status = st
		done.Message = why
		done.UpdatedAt = ts(now)
		c.commands = append(c.commands, done)
		ns.book.closed(cmd.GetId())
		return true
	})
}

// requeue puts the node's open commands that match back to PENDING, to be
// handed out again, remembering how far each had gone. The caller holds
// ns.mu.
func requeue(ns *nodeState, c *change, match func(*fleetv1.Command) bool, now time.Time) {
	for i, cmd := range ns.book.open {
		if match(cmd) {
			if ns.book.furthest == nil {
				ns.book.furthest = make(map[string]fleetv1.CommandStatus)
			}
			if progress(cmd.GetStatus()) > progress(ns.book.furthest[cmd.GetId()]) {
				ns.book.furthest[cmd.GetId()] = cmd.GetStatus()
			}
			again := proto.CloneOf(cmd)
			again.Status = fleetv1.CommandStatus_COMMAND_STATUS_PENDING
			again.UpdatedAt = ts(now)
			ns.book.open[i] = again
			c.commands = append(c.commands, again)
			c.again = append(c.again, again)
		}
	}
}

// progress orders a command's statuses: PENDING, DELIVERED, ACKNOWLEDGED,
// then the final ones. A command moves forward through them but when it
// is put back to PENDING to be handed out again.
func progress(s fleetv1.CommandStatus) int {
	switch s {
	case fleetv1.CommandStatus_COMMAND_STATUS_UNSPECIFIED:
		return 0
	case fleetv1.CommandStatus_COMMAND_STATUS_PENDING:
		return 1
	case fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED:
		return 2
	case fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED:
		return 3
	}
	return 4
}

// reachedBefore says whether the open command cmd has been in status st
// before: it is there or further on now, or was before it was handed out
// again.
func (b *bookkeeping) reachedBefore(cmd *fleetv1.Command, st fleetv1.CommandStatus) bool {
	return progress(st) <= max(progress(cmd.GetStatus()), progress(b.furthest[cmd.GetId()]))
}

// closed forgets what was kept of an open command that finished.
func (b *bookkeeping) closed(id string) {
	delete(b.redelivered, id)
	delete(b.furthest, id)
}

// anyCommand matches every command, for cancelOpen.
func anyCommand(*fleetv1.Command) bool { return true }

// ofType matches commands of one type, for cancelOpen.
func ofType(typ fleetv1.CommandType) func(*fleetv1.Command) bool {
	return func(cmd *fleetv1.Command) bool { return cmd.GetType() == typ }
}

// openOf is the node's open command of a type, or nil.
func openOf(ns *nodeState, typ fleetv1.CommandType) *fleetv1.Command {
	for _, cmd := range ns.book.open {
		if cmd.GetType() == typ {
			return cmd
		}
	}
	return nil
}

// wakeAgent wakes the node's command stream or long poll if c queued a
// command. The caller holds ns.mu.
func (f *Fleet) wakeAgent(ns *nodeState, c *change) {
	for _, cmd := range c.commands {
		if cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_PENDING {
			ns.wakeWaiters()
			return
		}
	}
}

// NodeCommands is the agent's long poll: it returns the node's pending
// commands, marked delivered, as soon as there are any, or none after wait.
func (f *Fleet) NodeCommands(ctx context.Context, nodeID string, wait time.Duration) ([]*fleetv1.Command, error) {
	wait = min(wait, f.cfg.CommandPollTimeout)
	ns := f.get(nodeID)
	if ns == nil {
		return nil, apierr.NotRegistered(nodeID)
	}
	timer := f.clock.NewTimer(wait)
	defer timer.Stop()
	for {
		out, wake, err := f.deliver(ctx, ns)
		if out != nil || err != nil {
			return out, err
		}
		select {
		case <-wake:
		case <-timer.Chan():
			return nil, nil
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-f.closing:
			return nil, status.Error(codes.Unavailable, "control plane is shutting down")
		}
	}
}

// WatchCommands is the agent's command stream: it hands send the node's
// pending commands, marked delivered, at once and then whenever more are
// queued, until ctx ends, the control plane shuts down, or the node leaves
// the fleet (NotRegistered, which sends the agent to register again).
//
// It holds one goroutine per agent, as a long poll does, but nothing per
// call, and no timer: no deadline, no request every poll timeout. Besides
// its own end and the control plane's, it waits only for the node's wake,
// which a queued command and the node's removal close.
func (f *Fleet) WatchCommands(ctx context.Context, nodeID string, send func([]*fleetv1.Command) error) error {
	ns := f.get(nodeID)
	if ns == nil {
		return apierr.NotRegistered(nodeID)
	}
	for {
		out, wake, err := f.deliver(ctx, ns)
		if err != nil {
			return err
		}
		if out != nil {
			if err := send(out); err != nil {
				// Delivered but not sent: handed out again after the poll
				// timeout and its slack, as a lost long-poll answer is.
				return err
			}
			continue
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-f.closing:
			return status.Error(codes.Unavailable, "control plane is shutting down")
		}
	}
}

// deliver marks the node's pending commands delivered and returns them, or,
// when there are none, the channel that tells of the next one or of the
// node's removal. A removed node's answer is NotRegistered: the removal
// was saved under mu, so a caller that got the channel before it is woken.
func (f *Fleet) deliver(ctx context.Context, ns *nodeState) ([]*fleetv1.Command, <-chan struct{}, error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if ns.removed.Load() {
		return nil, nil, apierr.NotRegistered(ns.id())
	}
	var out, again []*fleetv1.Command
	now := f.clock.Now()
	for i, cmd := range ns.book.open {
		if cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_PENDING {
			d := proto.CloneOf(cmd)
			d.Status = fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED
			d.UpdatedAt = ts(now)
			if ns.book.reachedBefore(cmd, d.GetStatus()) {
				again = append(again, d)
			}
			ns.book.open[i] = d
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, ns.wake, nil
	}
	err := f.commit(ctx, ns, &change{commands: out, again: again})
	if err != nil {
		// Not delivered after all: keep them pending for the next poll.
		for i, cmd := range ns.book.open {
			if slices.Contains(out, cmd) {
				p := proto.CloneOf(cmd)
				p.Status = fleetv1.CommandStatus_COMMAND_STATUS_PENDING
				ns.book.open[i] = p
			}
		}
	}
	ns.recount()
	return out, nil, err
}

// CommandResult records how a command went and applies its consequences.
func (f *Fleet) CommandResult(ctx context.Context, req *nodev1.ReportCommandResultRequest) (*fleetv1.Command, error) {
	now := f.clock.Now()
	var out *fleetv1.Command
	err := f.nodeLocked(req.GetNodeId(), false, func(ns *nodeState, cur *fleetv1.Node) error {
		i := slices.IndexFunc(ns.book.open, func(c *fleetv1.Command) bool { return c.GetId() == req.GetCommandId() })
		if i < 0 {
			return f.unknownCommand(ctx, req)
		}
		cmd := proto.CloneOf(ns.book.open[i])
		cmd.Status = req.GetStatus()
		if cmd.GetType() == fleetv1.CommandType_COMMAND_TYPE_REBOOT && cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
			// Only the node's next registration, from another boot, says
			// that a reboot happened.
			cmd.Status = fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED
		}
		cmd.Message = req.GetMessage()
		cmd.SignalledPids = req.GetSignalledPids()
		cmd.RemainingPids = req.GetRemainingPids()
		cmd.UpdatedAt = ts(now)
		c := &change{commands: []*fleetv1.Command{cmd}}
		if ns.book.reachedBefore(ns.book.open[i], cmd.GetStatus()) {
			// An acknowledgement repeated, or one of a command handed out
			// again after the agent acknowledged it.
			c.again = c.commands
		}
		if cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED {
			ns.book.open[i] = cmd
		} else {
			// Finished: it leaves the open commands (withNode puts it back
			// if the change cannot be saved).
			ns.book.open = slices.Delete(ns.book.open, i, i+1)
			ns.book.closed(cmd.GetId())
			n := proto.CloneOf(cur)
			f.commandFinished(ns, n, c, cmd, now)
			if !proto.Equal(n, cur) {
				c.node = n
			}
		}
		if err := f.commit(ctx, ns, c); err != nil {
			return err
		}
		out = cmd
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.log.Info("command result", "node", req.GetNodeId(), "command", out.GetId(), "type", out.GetType(),
		"status", out.GetStatus(), "message", display.FirstLine(out.GetMessage()))
	return out, nil
}

// unknownCommand tells a result for a command that is no longer open from
// one for a command that never was.
func (f *Fleet) unknownCommand(ctx context.Context, req *nodev1.ReportCommandResultRequest) error {
	hist, err := f.store.Commands(ctx, req.GetNodeId(), 0)
	if err != nil {
		return status.Error(codes.Unavailable, "command history could not be read")
	}
	for _, c := range hist {
		if c.GetId() == req.GetCommandId() {
			return status.Errorf(codes.FailedPrecondition, "command_id: command %s already finished as %s", c.GetId(), c.GetStatus())
		}
	}
	return status.Errorf(codes.NotFound, "command_id: node %q has no command %q", req.GetNodeId(), req.GetCommandId())
}

// commandFinished moves the node on when a command it waited for ends, and
// clears what a completed GPU reset remedied. The caller holds ns.mu.
func (f *Fleet) commandFinished(ns *nodeState, n *fleetv1.Node, c *change, cmd *fleetv1.Command, now time.Time) {
	if cmd.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		return
	}
	switch cmd.GetType() {
	case fleetv1.CommandType_COMMAND_TYPE_DRAIN:
		// A drain that finished after an uncordon or a terminate changes
		// nothing: the table refuses it.
		_ = move(n, actDrainEnded, "drained: "+display.FirstLine(cmd.GetMessage()), byControlPlane, now)
	case fleetv1.CommandType_COMMAND_TYPE_TERMINATE:
		if allowed(n, actStopped) && n.GetProvider() == "" {
			markTerminated(ns, n, c, "terminated: agent stopped", now)
		}
	case fleetv1.CommandType_COMMAND_TYPE_RESET_GPU:
		f.resetDone(n, c, cmd, now)
		ns.book.repeats.count(cmd.GetGpuIndex()).Remedied()
	}
}

// redeliver puts delivered commands the agent never answered back to
// PENDING.
func (f *Fleet) redeliver(ctx context.Context, ns *nodeState, now time.Time) {
	cutoff := now.Add(-f.cfg.CommandPollTimeout - RedeliverSlack)
	_, err := f.operate(ctx, ns.id(), func(ns *nodeState, _ *fleetv1.Node, c *change, now time.Time) error {
		unanswered := func(cmd *fleetv1.Command) bool {
			return cmd.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED && cmd.GetUpdatedAt().AsTime().Before(cutoff)
		}
		// An agent that took a command and never answers, however often
		// it gets it, will not: the command fails rather than cycle for
		// ever.
		gaveUp := func(cmd *fleetv1.Command) bool {
			return unanswered(cmd) && ns.book.redelivered[cmd.GetId()] >= MaxRedeliveries
		}
		closeOpen(ns, c, gaveUp, fleetv1.CommandStatus_COMMAND_STATUS_FAILED,
			fmt.Sprintf("the agent did not answer after %d deliveries", MaxRedeliveries+1), now)
		requeue(ns, c, func(cmd *fleetv1.Command) bool {
			if !unanswered(cmd) {
				return false
			}
			if ns.book.redelivered == nil {
				ns.book.redelivered = make(map[string]int)
			}
			ns.book.redelivered[cmd.GetId()]++
			return true
		}, now)
		return nil
	})
	if err != nil {
		f.log.Warn("redelivering unanswered commands", "node", ns.id(), "err", err)
	}
}
