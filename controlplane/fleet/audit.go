package fleet

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// The audit log: every change an operator makes or tries to make, recorded
// by the API's interceptor through RecordAudit, and every automatic
// cordon, recorded by the fleet in the same store write as the cordon.
// Entries take their ids from the counter commands and events draw from,
// so they sort in the order they were recorded, across restarts too.

// RecordAudit writes an audit entry, with the next id and, unless it has
// one, the fleet's time.
func (f *Fleet) RecordAudit(ctx context.Context, e *store.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = f.clock.Now()
	}
	id, err := f.newID(ctx, "au")
	if err != nil {
		return fmt.Errorf("audit entry id: %w", err)
	}
	e.ID = id
	if err := f.store.Apply(ctx, store.Write{Audit: []*store.AuditEntry{e}}); err != nil {
		return fmt.Errorf("write audit entry: %w", err)
	}
	return nil
}

// Audit returns audit entries, newest first: one node's, or every one
// when nodeID is empty. A node's entries outlive it.
func (f *Fleet) Audit(ctx context.Context, nodeID string, limit int) ([]*store.AuditEntry, error) {
	entries, err := f.store.Audit(ctx, store.AuditQuery{NodeID: nodeID, Limit: limit})
	if err != nil {
		f.log.Error("audit log read failed", "err", err)
		return nil, status.Error(codes.Unavailable, "the audit log could not be read")
	}
	return entries, nil
}

// requester names who asked for a change, for the commands it queues: the
// caller's token, or "operator" when the call carries none (the fleet
// called directly, as tests do).
func requester(ctx context.Context) string {
	if c, ok := auth.CallerFrom(ctx); ok && c.Name != "" {
		return c.Name
	}
	return "operator"
}

// policyAudit is the audit entry of an automatic cordon of n at now, which
// queued cmd (nil when no command could be made).
func policyAudit(n *fleetv1.Node, cmd *fleetv1.Command, now time.Time) *store.AuditEntry {
	e := &store.AuditEntry{
		Time:    now,
		Who:     auth.PolicyName,
		RPC:     "AutoCordon",
		NodeID:  n.GetNodeId(),
		Reason:  n.GetLifecycleReason(),
		Code:    codes.OK.String(),
		Message: "lifecycle " + display.Lifecycle(n.GetLifecycle()),
	}
	if cmd != nil {
		e.Message += "; command " + cmd.GetId()
	}
	return e
}
