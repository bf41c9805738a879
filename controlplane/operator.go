package controlplane

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

func forbidden(n *fleetv1.Node, action string) error {
	return apierr.Forbidden(n.GetNodeId(), n.GetLifecycle(), action)
}

// operate runs one operator action on a node: fn edits a copy of the node
// and may queue commands; the result is stored before the reply.
func (f *Fleet) operate(ctx context.Context, id string, fn func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error) (*fleetv1.Node, error) {
	now := f.clock.Now()
	var out *fleetv1.Node
	err := f.nodeLocked(id, false, func(ns *nodeState, cur *fleetv1.Node) error {
		n := proto.CloneOf(cur)
		c := &change{}
		if err := fn(ns, n, c, now); err != nil {
			return err
		}
		if !proto.Equal(n, cur) {
			c.node = n
		}
		if err := f.commit(ctx, ns, c); err != nil {
			return err
		}
		f.wakeAgent(ns, c)
		out = f.view(ns)
		return nil
	})
	return out, err
}

// queue adds a command to c and to the node's open commands; commit makes
// it durable. The caller holds ns.mu.
func (f *Fleet) queue(ctx context.Context, ns *nodeState, c *change, n *fleetv1.Node, typ fleetv1.CommandType, reason, by string, now time.Time) (*fleetv1.Command, error) {
	cmd, err := f.newCommand(ctx, n.GetNodeId(), typ, reason, by, now)
	if err != nil {
		return nil, err
	}
	ns.open = append(ns.open, cmd)
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
	ns.open = slices.DeleteFunc(ns.open, func(cmd *fleetv1.Command) bool {
		if !match(cmd) {
			return false
		}
		done := proto.CloneOf(cmd)
		done.Status = st
		done.Message = why
		done.UpdatedAt = ts(now)
		c.commands = append(c.commands, done)
		delete(ns.redelivered, cmd.GetId())
		return true
	})
}

// requeue puts the node's open commands that match back to PENDING, to be
// handed out again. The caller holds ns.mu.
func requeue(ns *nodeState, c *change, match func(*fleetv1.Command) bool, now time.Time) {
	for i, cmd := range ns.open {
		if match(cmd) {
			again := proto.CloneOf(cmd)
			again.Status = fleetv1.CommandStatus_COMMAND_STATUS_PENDING
			again.UpdatedAt = ts(now)
			ns.open[i] = again
			c.commands = append(c.commands, again)
		}
	}
}

// anyCommand matches every command, for cancelOpen.
func anyCommand(*fleetv1.Command) bool { return true }

// ofType matches commands of one type, for cancelOpen.
func ofType(typ fleetv1.CommandType) func(*fleetv1.Command) bool {
	return func(cmd *fleetv1.Command) bool { return cmd.GetType() == typ }
}

func openOf(ns *nodeState, typ fleetv1.CommandType) *fleetv1.Command {
	for _, cmd := range ns.open {
		if cmd.GetType() == typ {
			return cmd
		}
	}
	return nil
}

// Cordon stops new work landing on a node.
func (f *Fleet) Cordon(ctx context.Context, id, reason string) (*fleetv1.Node, error) {
	return f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		switch n.GetLifecycle() {
		case fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED,
			fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING,
			fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED:
			return nil // already takes no new work
		case fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE:
		default:
			return forbidden(n, "cordoned")
		}
		setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, orDefault(reason, "cordoned by operator"), now)
		_, err := f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_CORDON, n.GetLifecycleReason(), "operator", now)
		return err
	})
}

// Uncordon returns a cordoned, draining or drained node to ACTIVE.
func (f *Fleet) Uncordon(ctx context.Context, id, reason string) (*fleetv1.Node, error) {
	return f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		switch n.GetLifecycle() {
		case fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE:
			return nil
		case fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED,
			fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING,
			fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED:
		default:
			return forbidden(n, "uncordoned")
		}
		cancelOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), "cancelled by uncordon", now)
		setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, orDefault(reason, "uncordoned by operator"), now)
		_, err := f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_UNCORDON, n.GetLifecycleReason(), "operator", now)
		return err
	})
}

// defaultDrainTimeout is the drain deadline when an operator gives none.
const defaultDrainTimeout = time.Hour

// Drain stops new work and waits for the node's GPU processes to end or for
// the deadline.
func (f *Fleet) Drain(ctx context.Context, id, reason string, deadline time.Time, force bool) (*fleetv1.Node, *fleetv1.Command, error) {
	var cmd *fleetv1.Command
	n, err := f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		switch n.GetLifecycle() {
		case fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED:
			cmd = openOf(ns, fleetv1.CommandType_COMMAND_TYPE_DRAIN)
			return nil
		case fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING:
			// A drain that hurries the one under way (force, or an earlier
			// deadline: an operator pushing a stuck drain) replaces it.
			// Anything else is a harmless repeat: clients send "now plus a
			// timeout", so a repeat always asks a later deadline, and a
			// repeat without force must not take the force away.
			cur := n.GetDrain()
			curDeadline := cur.GetDeadline().AsTime()
			sooner := !deadline.IsZero() && deadline.Before(curDeadline)
			if !sooner && (!force || cur.GetForce()) {
				cmd = openOf(ns, fleetv1.CommandType_COMMAND_TYPE_DRAIN)
				return nil
			}
			if !sooner {
				deadline = curDeadline
			}
			force = force || cur.GetForce()
			reason = orDefault(reason, cur.GetReason())
			cancelOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), "superseded by a new drain", now)
			n.LifecycleReason = reason
		case fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED:
		default:
			return forbidden(n, "drained")
		}
		if deadline.IsZero() {
			deadline = now.Add(defaultDrainTimeout)
		}
		reason = orDefault(reason, "drained by operator")
		if n.GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING {
			setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING, reason, now)
		}
		n.Drain = &fleetv1.DrainSpec{Reason: reason, Deadline: ts(deadline), Force: force}
		var err error
		cmd, err = f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_DRAIN, reason, "operator", now)
		if err == nil {
			cmd.Drain = n.Drain
		}
		return err
	})
	return n, cmd, err
}

// defaultTerminateDrain bounds the drain before a node is stopped.
const defaultTerminateDrain = 10 * time.Minute

// Terminate drains a node (unless forced or unreachable), then stops it
// through its provider, or asks its agent to stop.
func (f *Fleet) Terminate(ctx context.Context, id, reason string, force bool, drainTimeout time.Duration) (*fleetv1.Node, error) {
	return f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		reason = orDefault(reason, "terminated by operator")
		switch n.GetLifecycle() {
		case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED:
			return nil
		case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING:
			if force {
				// A forced terminate skips a drain still under way.
				cancelOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), "skipped by forced terminate", now)
			}
			return nil
		}
		cancelOpen(ns, c, ofType(fleetv1.CommandType_COMMAND_TYPE_DRAIN), "superseded by terminate", now)
		setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING, reason, now)
		// A node not yet heard from since a restart (UNKNOWN) may well be
		// running work: only an OFFLINE one skips the drain.
		offline := ns.reachability() == fleetv1.Reachability_REACHABILITY_OFFLINE
		if force || offline || n.GetRegisteredAt() == nil {
			return nil
		}
		if drainTimeout <= 0 {
			drainTimeout = defaultTerminateDrain
		}
		n.Drain = &fleetv1.DrainSpec{Reason: reason, Deadline: ts(now.Add(drainTimeout)), Force: true}
		cmd, err := f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_DRAIN, reason, "operator", now)
		if err == nil {
			cmd.Drain = n.Drain
		}
		return err
	})
}

// Diagnose queues a diagnostics command.
func (f *Fleet) Diagnose(ctx context.Context, id string) (*fleetv1.Command, error) {
	var cmd *fleetv1.Command
	_, err := f.operate(ctx, id, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		switch n.GetLifecycle() {
		case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING,
			fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED,
			fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING,
			fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED:
			return forbidden(n, "diagnosed")
		}
		var err error
		cmd, err = f.queue(ctx, ns, c, n, fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS, "diagnostics requested", "operator", now)
		return err
	})
	return cmd, err
}

// Provision starts nodes through a provider and records them as
// PROVISIONING until their agents register.
func (f *Fleet) Provision(ctx context.Context, req *controlplanev1.ProvisionNodesRequest) ([]*fleetv1.Node, error) {
	p, ok := f.providers.get(req.GetProvider())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "provider: unknown provider %q (available: %s)",
			req.GetProvider(), orDefault(strings.Join(f.providers.names(), ", "), "none"))
	}
	spec := ProvisionSpec{
		Count:         int(req.GetCount()),
		GPUsPerNode:   int(req.GetGpusPerNode()),
		InstanceType:  req.GetInstanceType(),
		Labels:        maps.Clone(req.GetLabels()),
		SimFaults:     req.GetSimFaults(),
		ChaosInterval: req.GetChaosInterval().AsDuration(),
		Failed:        func(id, reason string) { f.provisionFailed(id, reason) },
	}
	insts, err := p.Provision(ctx, spec)
	if err != nil {
		if _, isStatus := status.FromError(err); isStatus {
			return nil, err
		}
		return nil, status.Errorf(codes.Unavailable, "provider %s: %v", p.Name(), err)
	}
	now := f.clock.Now()
	var out []*fleetv1.Node
	for _, inst := range insts {
		n, err := f.provisioned(ctx, p.Name(), inst, req.GetLabels(), now)
		if err != nil {
			return out, err
		}
		out = append(out, n)
	}
	f.log.Info("nodes provisioned", "provider", p.Name(), "count", len(out))
	return out, nil
}

func (f *Fleet) provisioned(ctx context.Context, provider string, inst Instance, labels map[string]string, now time.Time) (*fleetv1.Node, error) {
	var out *fleetv1.Node
	err := f.nodeLocked(inst.NodeID, true, func(ns *nodeState, cur *fleetv1.Node) error {
		if cur != nil && cur.GetInstanceId() == inst.InstanceID && cur.GetInstanceId() != "" {
			// The agent was quicker than this record and registered already.
			n := proto.CloneOf(cur)
			n.Provider = provider
			if n.Labels == nil && len(labels) > 0 {
				n.Labels = make(map[string]string, len(labels))
			}
			for k, v := range labels {
				if _, set := n.Labels[k]; !set {
					n.Labels[k] = v
				}
			}
			if err := f.commit(ctx, ns, &change{node: n}); err != nil {
				return err
			}
			out = f.view(ns)
			return nil
		}
		if cur != nil {
			switch cur.GetLifecycle() {
			case fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED, fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED:
			default:
				return status.Errorf(codes.AlreadyExists, "provider %s returned node id %q, which is in use", provider, inst.NodeID)
			}
		}
		n := &fleetv1.Node{
			NodeId:             inst.NodeID,
			Labels:             maps.Clone(labels),
			Lifecycle:          fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING,
			LifecycleReason:    "provisioning through " + provider,
			LifecycleChangedAt: ts(now),
			Health:             fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN,
			Provider:           provider,
			InstanceId:         inst.InstanceID,
		}
		if reason, failed := f.takeEarlyFailure(inst.NodeID); failed {
			setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED, reason, now)
		}
		if err := f.commit(ctx, ns, &change{node: n, insert: cur == nil}); err != nil {
			return err
		}
		out = f.view(ns)
		return nil
	})
	return out, err
}

// provisionFailed records a node whose instance failed to start, and
// reports whether this call made it PROVISION_FAILED. A failure reported
// before the node's record exists is kept for provisioned.
func (f *Fleet) provisionFailed(nodeID, reason string) bool {
	f.mu.Lock()
	if f.nodes[nodeID] == nil && f.creating[nodeID] == nil {
		// provisioned, which runs under the same lock before it creates
		// the node, picks this up.
		if f.earlyFailures == nil {
			f.earlyFailures = make(map[string]string)
		}
		if len(f.earlyFailures) < 10000 {
			f.earlyFailures[nodeID] = reason
		}
		f.mu.Unlock()
		return true
	}
	f.mu.Unlock()
	failed := false
	_, err := f.operate(context.Background(), nodeID, func(_ *nodeState, n *fleetv1.Node, _ *change, now time.Time) error {
		if n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING {
			setLifecycle(n, fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED, reason, now)
			failed = true
		}
		return nil
	})
	if err != nil {
		f.log.Warn("recording a failed provision", "node", nodeID, "err", err)
		return false
	}
	if failed {
		f.log.Warn("provision failed", "node", nodeID, "reason", reason)
	}
	return failed
}

// takeEarlyFailure returns and forgets a failure reported for nodeID before
// its record existed.
func (f *Fleet) takeEarlyFailure(nodeID string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reason, ok := f.earlyFailures[nodeID]
	delete(f.earlyFailures, nodeID)
	return reason, ok
}

// NodeDetail is one node with its history.
func (f *Fleet) NodeDetail(ctx context.Context, id string, eventLimit int) (*controlplanev1.GetNodeResponse, error) {
	ns, err := f.mustGet(id)
	if err != nil {
		return nil, err
	}
	resp := &controlplanev1.GetNodeResponse{Node: ns.viewOf(ns.node.Load(), ns.reachability(), true)}
	if resp.Events, err = f.store.Events(ctx, store.EventQuery{NodeID: id, Limit: eventLimit}); err != nil {
		return nil, status.Error(codes.Unavailable, "health events could not be read")
	}
	if resp.Commands, err = f.store.Commands(ctx, id, 100); err != nil {
		return nil, status.Error(codes.Unavailable, "commands could not be read")
	}
	ns.rt.Lock()
	for i := range ns.history {
		resp.History = append(resp.History, ns.history[i].proto())
	}
	ns.rt.Unlock()
	sort.Slice(resp.History, func(i, j int) bool { return resp.History[i].GetGpuIndex() < resp.History[j].GetGpuIndex() })
	return resp, nil
}

// NodeFilter selects nodes for List.
type NodeFilter struct {
	Lifecycle    []fleetv1.LifecycleState
	Health       []fleetv1.HealthStatus
	Reachability []fleetv1.Reachability
	Labels       []LabelTerm
	Text         string
}

// LabelTerm is one term of a label selector; an empty Value with Any set
// matches any value.
type LabelTerm struct {
	Key, Value string
	Any        bool
}

// ParseLabelSelector reads "k=v,k2=v2,k3" into terms.
func ParseLabelSelector(s string) ([]LabelTerm, error) {
	var out []LabelTerm
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, hasValue := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, fmt.Errorf("term %q has no key", part)
		}
		out = append(out, LabelTerm{Key: k, Value: strings.TrimSpace(v), Any: !hasValue})
	}
	return out, nil
}

func (nf *NodeFilter) match(n *fleetv1.Node, reach fleetv1.Reachability) bool {
	if len(nf.Lifecycle) > 0 && !slices.Contains(nf.Lifecycle, n.GetLifecycle()) {
		return false
	}
	if len(nf.Health) > 0 && !slices.Contains(nf.Health, n.GetHealth()) {
		return false
	}
	if len(nf.Reachability) > 0 && !slices.Contains(nf.Reachability, reach) {
		return false
	}
	for _, t := range nf.Labels {
		v, ok := n.GetLabels()[t.Key]
		if !ok || (!t.Any && v != t.Value) {
			return false
		}
	}
	if nf.Text != "" {
		q := strings.ToLower(nf.Text)
		hit := strings.Contains(strings.ToLower(n.GetNodeId()), q) || strings.Contains(strings.ToLower(n.GetHostname()), q)
		for k, v := range n.GetLabels() {
			hit = hit || strings.Contains(strings.ToLower(k+"="+v), q)
		}
		if !hit {
			return false
		}
	}
	return true
}

// List returns a page of matching nodes ordered by id, the next page token
// and the number of matches.
func (f *Fleet) List(nf NodeFilter, pageSize int, pageToken string) ([]*fleetv1.Node, string, int, uint64, error) {
	after := ""
	if pageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(pageToken)
		if err != nil || len(b) == 0 {
			return nil, "", 0, 0, status.Error(codes.InvalidArgument, "page_token: not a token from a previous ListNodes response")
		}
		after = string(b)
	}
	rev := f.hub.revision()
	var matched []*nodeState
	for _, ns := range f.all() {
		if nf.match(ns.node.Load(), ns.reachability()) {
			matched = append(matched, ns)
		}
	}
	sort.Slice(matched, func(i, j int) bool { return matched[i].node.Load().GetNodeId() < matched[j].node.Load().GetNodeId() })
	start := sort.Search(len(matched), func(i int) bool { return matched[i].node.Load().GetNodeId() > after })
	end := min(start+pageSize, len(matched))
	page := make([]*fleetv1.Node, 0, end-start)
	for _, ns := range matched[start:end] {
		page = append(page, f.view(ns))
	}
	next := ""
	if end < len(matched) && len(page) > 0 {
		next = base64.RawURLEncoding.EncodeToString([]byte(page[len(page)-1].GetNodeId()))
	}
	return page, next, len(matched), rev, nil
}

// Events lists health events, newest first.
func (f *Fleet) Events(ctx context.Context, nodeID string, minHealth fleetv1.HealthStatus, text string, limit int) ([]*fleetv1.HealthEvent, error) {
	if nodeID != "" {
		if _, err := f.mustGet(nodeID); err != nil {
			return nil, err
		}
	}
	q := strings.ToLower(text)
	evs, err := f.store.Events(ctx, store.EventQuery{NodeID: nodeID, Limit: limit, Keep: func(e *fleetv1.HealthEvent) bool {
		if minHealth != fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED && policy.Rank(e.GetHealth()) < policy.Rank(minHealth) {
			return false
		}
		if q != "" && !strings.Contains(strings.ToLower(e.GetNodeId()+" "+e.GetCause()+" "+e.GetMessage()), q) {
			return false
		}
		return true
	}})
	if err != nil {
		return nil, status.Error(codes.Unavailable, "health events could not be read")
	}
	return evs, nil
}

// Status returns the fleet totals.
func (f *Fleet) Status() *controlplanev1.GetFleetStatusResponse {
	return &controlplanev1.GetFleetStatusResponse{
		Summary:   f.summary(),
		Revision:  f.hub.revision(),
		Providers: f.providers.info(),
		Breaker:   f.breaker.status(f.clock.Now()),
		StartedAt: ts(f.started),
		Limits: &controlplanev1.OperatorLimits{
			MaxDrainDeadline:             durationpb.New(MaxDrainDeadline),
			DefaultDrainDeadline:         durationpb.New(defaultDrainTimeout),
			MinTerminateDrainTimeout:     durationpb.New(time.Second),
			DefaultTerminateDrainTimeout: durationpb.New(defaultTerminateDrain),
			MaxProvisionCount:            MaxProvision,
			MaxReasonBytes:               MaxReasonLen,
		},
	}
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
