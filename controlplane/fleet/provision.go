package fleet

import (
	"context"
	"maps"
	"strings"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Provision starts nodes through a provider and records them as
// PROVISIONING until their agents register.
func (f *Fleet) Provision(ctx context.Context, req *controlplanev1.ProvisionNodesRequest) ([]*fleetv1.Node, error) {
	p, ok := f.providers.Get(req.GetProvider())
	if !ok {
		return nil, apierr.Invalid("provider", "unknown provider %q (available: %s)",
			req.GetProvider(), orDefault(strings.Join(f.providers.Names(), ", "), "none"))
	}
	ids := make([]string, req.GetCount())
	for i := range ids {
		ids[i] = provider.NewNodeID(p.Name())
	}
	spec := provider.Spec{
		Count:        len(ids),
		NodeIDs:      ids,
		GPUsPerNode:  int(req.GetGpusPerNode()),
		InstanceType: req.GetInstanceType(),
		Labels:       maps.Clone(req.GetLabels()),
		Request:      req,
		Failed:       func(id, reason string) { f.provisionFailed(id, reason) },
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

func (f *Fleet) provisioned(ctx context.Context, provider string, inst provider.Instance, labels map[string]string, now time.Time) (*fleetv1.Node, error) {
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
			out = ns.view()
			return nil
		}
		if cur != nil && !allowed(cur, actProvision) {
			return status.Errorf(codes.AlreadyExists, "provider %s returned node id %q, which is in use", provider, inst.NodeID)
		}
		// A new record, in place of a terminated or failed one.
		n := &fleetv1.Node{
			NodeId:     inst.NodeID,
			Labels:     maps.Clone(labels),
			Lifecycle:  cur.GetLifecycle(),
			Health:     fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN,
			Provider:   provider,
			InstanceId: inst.InstanceID,
		}
		if err := move(n, actProvision, "provisioning through "+provider, requester(ctx), now); err != nil {
			return err
		}
		if reason, failed := f.takeEarlyFailure(inst.NodeID); failed {
			_ = move(n, actProvisionFailed, reason, byControlPlane, now)
		}
		if err := f.commit(ctx, ns, &change{node: n, insert: cur == nil}); err != nil {
			return err
		}
		out = ns.view()
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
		failed = move(n, actProvisionFailed, reason, byControlPlane, now) == nil
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

// stoppingInstance marks the reason of a failed provision whose instance
// is still to be stopped; a restart picks the work up from it.
const stoppingInstance = "stopping its instance "

// provisionTimedOut fails a provision whose agent never registered and
// has its instance stopped, which would otherwise run on unseen.
func (f *Fleet) provisionTimedOut(ctx context.Context, n *fleetv1.Node) {
	reason := "agent did not register within " + f.cfg.ProvisionTimeout.String()
	if _, ok := f.providers.Get(n.GetProvider()); !ok || n.GetInstanceId() == "" {
		f.provisionFailed(n.GetNodeId(), reason)
		return
	}
	failed := false
	_, err := f.operate(ctx, n.GetNodeId(), func(ns *nodeState, n *fleetv1.Node, _ *change, now time.Time) error {
		if move(n, actProvisionFailed, reason+"; "+stoppingInstance+n.GetInstanceId(), byControlPlane, now) != nil {
			return nil // the agent registered meanwhile, or a pass got there first
		}
		ns.book.unprovision, failed = true, true
		return nil
	})
	if err != nil {
		f.log.Warn("recording a failed provision", "node", n.GetNodeId(), "err", err)
		return
	}
	if failed {
		f.log.Warn("provision failed", "node", n.GetNodeId(), "reason", reason)
		f.unprovision(ctx, f.get(n.GetNodeId()))
	}
}

// unprovision stops the instance of a provision that timed out, once at a
// time per node; a failure is retried on the next monitor pass.
func (f *Fleet) unprovision(ctx context.Context, ns *nodeState) {
	if ns == nil {
		return
	}
	var p provider.Provider
	var inst provider.Instance
	_ = f.nodeLocked(ns.id(), false, func(ns *nodeState, cur *fleetv1.Node) error {
		if !ns.book.unprovision || ns.book.stopping {
			return nil
		}
		pr, ok := f.providers.Get(cur.GetProvider())
		if !ok {
			ns.book.unprovision = false
			return nil
		}
		ns.book.stopping = true
		p, inst = pr, provider.Instance{NodeID: cur.GetNodeId(), InstanceID: cur.GetInstanceId()}
		return nil
	})
	if p == nil {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		stopErr := p.Terminate(ctx, inst)
		if stopErr != nil {
			clearStopping(ns)
			f.log.Warn("could not stop the instance of a failed provision; will retry", "node", inst.NodeID, "provider", p.Name(), "err", stopErr)
			return
		}
		_, err := f.operate(ctx, inst.NodeID, func(ns *nodeState, n *fleetv1.Node, _ *change, now time.Time) error {
			ns.book.stopping, ns.book.unprovision = false, false
			n.LifecycleReason = strings.Replace(n.GetLifecycleReason(), stoppingInstance+inst.InstanceID, "instance "+inst.InstanceID+" stopped", 1)
			return nil
		})
		if err != nil {
			// The stop is not recorded: the next pass stops the instance
			// again (which succeeds) and records it.
			clearStopping(ns)
			f.log.Warn("recording a stopped instance", "node", inst.NodeID, "err", err)
			return
		}
		f.log.Info("instance of a failed provision stopped", "node", inst.NodeID, "provider", p.Name())
	}()
}
