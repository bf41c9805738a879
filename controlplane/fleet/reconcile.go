package fleet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// Unknown says what Reconcile does with an instance a provider runs for
// this cluster that the fleet has no record of.
type Unknown string

// What Reconcile may do with an unknown instance.
const (
	// UnknownReport logs and audits it, and leaves it be.
	UnknownReport Unknown = "report"
	// UnknownStop stops it.
	UnknownStop Unknown = "stop"
	// UnknownAdopt records it as a node, PROVISIONING until its agent
	// registers, in the pool its tags name.
	UnknownAdopt Unknown = "adopt"
)

// listTimeout bounds one provider's List at start.
const listTimeout = time.Minute

// Reconcile compares the fleet's records with what each provider runs,
// once, at start, before pools or operators start anything:
//   - a node recorded before its provider was asked to start it (the
//     control plane stopped in between) takes the instance the provider
//     started for it, or fails if there is none, so it is never started
//     twice;
//   - a node whose instance no longer runs is TERMINATED;
//   - an instance of a node that is terminated or failed is stopped;
//   - an instance the fleet has no record of is reported, stopped or
//     adopted, as unknown says.
//
// A provider whose List fails is left out, with a warning.
//
// Launches wait until it is done (see Options.ReconcileAtStart).
func (f *Fleet) Reconcile(ctx context.Context, unknown Unknown) {
	defer f.reconcileOnce.Do(func() { close(f.reconciled) })
	for _, name := range f.providers.Names() {
		p, _ := f.providers.Get(name)
		listed := f.clock.Now()
		lctx, cancel := context.WithTimeout(ctx, listTimeout)
		insts, err := p.List(lctx)
		cancel()
		if err != nil {
			f.log.Warn("could not list a provider's instances; its nodes are not reconciled", "provider", name, "err", err)
			continue
		}
		f.reconcileProvider(ctx, p, insts, unknown, listed)
	}
}

// listLag is how long after its launch an instance may be missing from
// a provider's list (EC2's is eventually consistent) without its node
// being taken for gone.
const listLag = 10 * time.Minute

func (f *Fleet) reconcileProvider(ctx context.Context, p provider.Provider, insts []provider.Instance, unknown Unknown, listed time.Time) {
	byNode := make(map[string]provider.Instance, len(insts))
	for _, inst := range insts {
		byNode[inst.NodeID] = inst
	}
	for _, ns := range f.all() {
		n := ns.node.Load()
		if n.GetProvider() != p.Name() {
			continue
		}
		if changed := n.GetLifecycleChangedAt().AsTime(); changed.After(listed) || ns.reachability() == fleetv1.Reachability_REACHABILITY_ONLINE {
			// Changed since the list was taken, or heard from: the list
			// does not tell about it.
			delete(byNode, n.GetNodeId())
			continue
		}
		inst, running := byNode[n.GetNodeId()]
		delete(byNode, n.GetNodeId())
		if running && n.GetInstanceId() != "" && inst.InstanceID != n.GetInstanceId() {
			// Another instance carries the node's id: not this record's.
			byNode[n.GetNodeId()] = inst
			running = false
		}
		switch l := n.GetLifecycle(); {
		case l == provisioning && n.GetInstanceId() == "":
			if running {
				if _, err := f.launched(ctx, inst); err != nil {
					f.log.Warn("recording a launched instance", "node", inst.NodeID, "err", err)
				}
				f.auditReconcile(ctx, inst.NodeID, "instance "+inst.InstanceID+" found for a node recorded before its launch")
				continue
			}
			if listed.Sub(n.GetLifecycleChangedAt().AsTime()) < listLag {
				// The list may not show it yet: the provision timeout
				// fails it, and then stops whatever carries its id.
				continue
			}
			if f.provisionFailed(n.GetNodeId(), "the control plane stopped before its instance was started; none runs") {
				f.auditReconcile(ctx, n.GetNodeId(), "no instance for a node recorded before its launch: failed")
			}
		case l == terminated || (l == provisionFailed && !strings.Contains(n.GetLifecycleReason(), stoppingInstance)):
			if running {
				f.stopStray(ctx, p, inst, "instance of a "+strings.ToLower(display.Lifecycle(l))+" node still ran")
			}
		case !running && l == provisioning && listed.Sub(n.GetLifecycleChangedAt().AsTime()) < listLag:
			// Launched lately: the list may not show it yet. The
			// provision timeout settles it.
		case !running && n.GetInstanceId() != "" && l != provisionFailed:
			f.instanceGone(ctx, n.GetNodeId(), n.GetInstanceId(), "instance "+n.GetInstanceId()+" no longer runs (provider "+p.Name()+" at start)")
		}
	}
	for _, inst := range byNode {
		if other := f.get(inst.NodeID); other != nil && other.node.Load().GetLifecycle() != terminated && other.node.Load().GetProvider() != p.Name() {
			// A node of that id lives under another provider, or on its
			// own: never stopped or taken for this one's.
			f.log.Warn("a provider runs an instance named for a node it did not start; left alone",
				"provider", p.Name(), "instance", inst.InstanceID, "node", inst.NodeID)
			f.auditReconcile(ctx, inst.NodeID, fmt.Sprintf("instance %s of provider %s carries the id of node %s, which it did not start: left running", inst.InstanceID, p.Name(), inst.NodeID))
			continue
		}
		switch unknown {
		case UnknownStop:
			f.stopStray(ctx, p, inst, "instance this control plane has no record of")
		case UnknownAdopt:
			f.adopt(ctx, p, inst)
		default:
			f.log.Warn("a provider runs an instance this control plane has no record of; set unknown_instances to stop or adopt such instances",
				"provider", p.Name(), "instance", inst.InstanceID, "node", inst.NodeID, "pool", inst.Pool)
			f.auditReconcile(ctx, inst.NodeID, fmt.Sprintf("unknown instance %s of provider %s left running", inst.InstanceID, p.Name()))
		}
	}
}

// stopStray stops an instance no live node owns.
func (f *Fleet) stopStray(ctx context.Context, p provider.Provider, inst provider.Instance, why string) {
	if !f.intend(ctx, inst.NodeID, fmt.Sprintf("%s: stopping instance %s", why, inst.InstanceID)) {
		return
	}
	if err := p.Terminate(ctx, inst); err != nil {
		f.log.Warn("could not stop an instance", "provider", p.Name(), "instance", inst.InstanceID, "why", why, "err", err)
		return
	}
	f.log.Info("instance stopped", "provider", p.Name(), "instance", inst.InstanceID, "node", inst.NodeID, "why", why)
	f.auditReconcile(ctx, inst.NodeID, fmt.Sprintf("%s: instance %s stopped", why, inst.InstanceID))
}

// adopt records an unknown instance as a node of its pool.
func (f *Fleet) adopt(ctx context.Context, p provider.Provider, inst provider.Instance) {
	if inst.NodeID == "" {
		f.log.Warn("an unknown instance names no node; not adopted", "provider", p.Name(), "instance", inst.InstanceID)
		return
	}
	if _, err := f.reserve(asControlPlane(ctx), p.Name(), inst.NodeID, inst.Pool, nil, f.clock.Now()); err != nil {
		f.log.Warn("could not adopt an instance", "provider", p.Name(), "instance", inst.InstanceID, "err", err)
		return
	}
	if _, err := f.launched(ctx, inst); err != nil {
		f.log.Warn("could not adopt an instance", "provider", p.Name(), "instance", inst.InstanceID, "err", err)
		return
	}
	f.auditReconcile(ctx, inst.NodeID, fmt.Sprintf("unknown instance %s of provider %s adopted", inst.InstanceID, p.Name()))
}

// intend records, before a provider is asked to act, what it is asked,
// and reports whether the store took it. A control plane that lost the
// lead on etcd writes nothing, its writes fenced off, and so asks no
// provider to act either: the leader that took over decides.
func (f *Fleet) intend(ctx context.Context, nodeID, what string) bool {
	if err := f.RecordAudit(ctx, &store.AuditEntry{Who: byControlPlane, RPC: "Reconcile", NodeID: nodeID, Reason: what, Code: "OK"}); err != nil {
		f.log.Warn("not asking the provider: what it would be asked could not be recorded", "node", nodeID, "what", what, "err", err)
		return false
	}
	return true
}

// auditReconcile audits what Reconcile or a provider's notice did.
func (f *Fleet) auditReconcile(ctx context.Context, nodeID, what string) {
	if err := f.RecordAudit(ctx, &store.AuditEntry{Who: byControlPlane, RPC: "Reconcile", NodeID: nodeID, Reason: what, Code: "OK"}); err != nil {
		f.log.Warn("auditing a reconciliation", "node", nodeID, "err", err)
	}
}

// instanceGone makes a node whose instance no longer runs TERMINATED.
func (f *Fleet) instanceGone(ctx context.Context, nodeID, instanceID, reason string) {
	gone := false
	_, err := f.operate(ctx, nodeID, func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		if n.GetInstanceId() != instanceID || !allowed(n, actInstanceGone) || n.GetLifecycle() == terminated {
			return nil
		}
		gone = true
		endNode(ns, n, c, actInstanceGone, reason, now)
		return nil
	})
	if err != nil {
		f.log.Warn("recording a gone instance", "node", nodeID, "err", err)
		return
	}
	if gone {
		f.log.Warn("node's instance is gone", "node", nodeID, "instance", instanceID, "reason", reason)
		f.auditReconcile(ctx, nodeID, reason)
	}
}

// WatchProviders hears, until ctx ends, what providers that watch their
// instances tell: a spot interruption drains the node at once, and an
// instance gone makes its node TERMINATED.
func (f *Fleet) WatchProviders(ctx context.Context) {
	for _, name := range f.providers.Names() {
		p, _ := f.providers.Get(name)
		w, ok := p.(provider.Watcher)
		if !ok {
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			w.Watch(ctx, func(n provider.Notice) { f.notice(ctx, p.Name(), n) })
		}()
	}
}

func (f *Fleet) notice(ctx context.Context, providerName string, no provider.Notice) {
	ns := f.get(no.Instance.NodeID)
	if ns == nil {
		return
	}
	n := ns.node.Load()
	if n.GetProvider() != providerName || n.GetInstanceId() != no.Instance.InstanceID {
		return
	}
	switch no.Kind {
	case provider.NoticeInterrupted:
		reason := "instance " + no.Instance.InstanceID + " will be reclaimed: " + no.Reason
		deadline := no.Deadline
		if deadline.IsZero() {
			deadline = f.clock.Now().Add(2 * time.Minute)
		}
		if _, _, err := f.Drain(asControlPlane(ctx), n.GetNodeId(), reason, deadline, true); err != nil {
			f.log.Warn("could not drain an interrupted node", "node", n.GetNodeId(), "err", err)
			return
		}
		f.auditReconcile(ctx, n.GetNodeId(), reason)
	case provider.NoticeGone:
		f.instanceGone(ctx, n.GetNodeId(), no.Instance.InstanceID, "instance "+no.Instance.InstanceID+" is gone: "+no.Reason)
		// An instance that is broken rather than gone still runs, and
		// costs: stop it.
		if p, ok := f.providers.Get(providerName); ok && f.intend(ctx, n.GetNodeId(), "stopping gone instance "+no.Instance.InstanceID) {
			if err := p.Terminate(ctx, no.Instance); err != nil {
				f.log.Warn("could not stop a gone instance", "node", n.GetNodeId(), "instance", no.Instance.InstanceID, "err", err)
			}
		}
	}
}

// PowerCycle power-cycles the machine of a node whose agent went silent
// (OFFLINE), or never came up (PROVISIONING), through its provider; any
// other needs force.
func (f *Fleet) PowerCycle(ctx context.Context, id, reason string, force bool) (*fleetv1.Node, error) {
	ns := f.get(id)
	if ns == nil {
		return nil, apierr.NodeNotFound(id)
	}
	n := ns.node.Load()
	p, ok := f.providers.Get(n.GetProvider())
	pc, can := p.(provider.PowerCycler)
	switch {
	case !ok || !can:
		return nil, status.Errorf(codes.FailedPrecondition, "node_id: node %q's provider %q cannot power-cycle machines", id, n.GetProvider())
	case n.GetInstanceId() == "":
		return nil, status.Errorf(codes.FailedPrecondition, "node_id: node %q has no instance yet", id)
	case n.GetLifecycle() == terminated || n.GetLifecycle() == terminating:
		return nil, status.Errorf(codes.FailedPrecondition, "node_id: node %q is %s", id, display.Lifecycle(n.GetLifecycle()))
	case n.GetLifecycle() == provisionFailed:
		return nil, status.Errorf(codes.FailedPrecondition, "node_id: node %q failed to provision; terminate it instead", id)
	case ns.reachability() != fleetv1.Reachability_REACHABILITY_OFFLINE && n.GetLifecycle() != provisioning && !force:
		// UNKNOWN (not heard from since a restart) and STALE agents may
		// well be running work.
		return nil, status.Errorf(codes.FailedPrecondition, "node_id: node %q's agent is %s, not OFFLINE: it may be running work; power-cycle it with force, or drain and reboot it instead",
			id, display.Reachability(ns.reachability()))
	}
	if err := pc.PowerCycle(ctx, provider.Instance{NodeID: id, InstanceID: n.GetInstanceId(), Pool: n.GetPool()}); err != nil {
		return nil, status.Errorf(codes.Unavailable, "provider %s: power-cycle %s: %v", p.Name(), id, err)
	}
	f.log.Info("node power-cycled", "node", id, "by", requester(ctx), "reason", reason)
	return ns.view(), nil
}

// asControlPlane makes the fleet name itself as who asked for a change.
func asControlPlane(ctx context.Context) context.Context {
	return auth.WithCaller(ctx, auth.Caller{Name: byControlPlane})
}
