package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Provision starts nodes through a provider for an operator's
// ProvisionNodes, and records them as PROVISIONING until their agents
// register.
func (f *Fleet) Provision(ctx context.Context, req *controlplanev1.ProvisionNodesRequest) ([]*fleetv1.Node, error) {
	// Nothing is reserved before the records are reconciled; a caller
	// that gives up meanwhile launches nothing.
	select {
	case <-f.reconciled:
	case <-ctx.Done():
		return nil, status.Error(codes.Unavailable, "the control plane is still comparing its records with what the providers run; try again shortly")
	}
	// A caller that gives up (a client's deadline, ^C) does not stop the
	// launch half way: instances started must be recorded. The fleet's
	// own shutdown does.
	ctx, cancel := f.detach(ctx)
	defer cancel()
	return f.Launch(ctx, Launch{Request: req})
}

// detach is ctx without its cancellation, cancelled instead when the
// fleet shuts down.
func (f *Fleet) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	d, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-f.closing:
			cancel()
		case <-d.Done():
		}
	}()
	return d, cancel
}

// Launch is one provision: an operator's request, or a pool's.
type Launch struct {
	// Request is what to start: provider, count, GPUs or instance type,
	// labels.
	Request *controlplanev1.ProvisionNodesRequest
	// Pool is the pool the nodes are for; empty for none.
	Pool string
	// Region and Zones narrow where the nodes start (a pool's spec).
	Region string
	Zones  []string
}

// Launch names the nodes (the provider chooses the names where its
// machines have fixed ones), records each as PROVISIONING before the
// provider is asked to start it, then has the provider start them, so
// that a control plane stopped in between finds the nodes at its next
// start and reconciles them with what the provider runs (Reconcile)
// instead of launching them twice. A node the provider did not start is
// PROVISION_FAILED with the provider's reason.
func (f *Fleet) Launch(ctx context.Context, l Launch) ([]*fleetv1.Node, error) {
	req := l.Request
	p, ok := f.providers.Get(req.GetProvider())
	if !ok {
		return nil, apierr.Invalid("provider", "unknown provider %q (available: %s)",
			req.GetProvider(), orDefault(strings.Join(f.providers.Names(), ", "), "none"))
	}
	select {
	case <-f.reconciled:
	case <-ctx.Done():
		return nil, status.Error(codes.Unavailable, "the control plane is still comparing its records with what the providers run; try again shortly")
	}
	ids, err := f.nodeIDs(ctx, p, int(req.GetCount()), l.Pool)
	if err != nil {
		return nil, err
	}
	now := f.clock.Now()
	// Marked before they are recorded, so that a node terminated at once
	// waits for its launch's answer.
	f.setLaunching(ids, true)
	defer f.setLaunching(ids, false)
	var reserved []*fleetv1.Node
	var names []string
	for _, id := range ids {
		n, err := f.reserve(ctx, p.Name(), id, l.Pool, req.GetLabels(), now)
		if err != nil {
			if len(reserved) == 0 {
				return nil, err
			}
			f.log.Warn("node not provisioned", "node", id, "err", err)
			continue
		}
		reserved = append(reserved, n)
		names = append(names, id)
	}
	// A node terminated while the others were recorded is not launched.
	names = slices.DeleteFunc(names, func(id string) bool {
		ns := f.get(id)
		return ns == nil || ns.node.Load().GetLifecycle() != provisioning
	})
	spec := provider.Spec{
		Count:        len(names),
		NodeIDs:      names,
		Pool:         l.Pool,
		Region:       l.Region,
		Zones:        l.Zones,
		GPUsPerNode:  int(req.GetGpusPerNode()),
		InstanceType: req.GetInstanceType(),
		Labels:       maps.Clone(req.GetLabels()),
		Request:      req,
		Failed:       func(id, reason string) { f.provisionFailed(id, reason) },
		UserData:     f.userData,
	}
	// A provider that does not answer within the provision timeout may
	// still have started instances: their nodes fail, and whatever runs
	// under their ids is stopped (unprovision finds it by its tag).
	pctx, cancel := context.WithTimeout(ctx, f.cfg.ProvisionTimeout)
	insts, err := p.Provision(pctx, spec)
	cancel()
	started := make(map[string]provider.Instance, len(insts))
	for _, inst := range insts {
		started[inst.NodeID] = inst
	}
	var out []*fleetv1.Node
	for _, n := range reserved {
		inst, ok := started[n.GetNodeId()]
		switch {
		case !ok && ctx.Err() != nil:
			// The control plane is stopping: whether the provider started
			// the node is for Reconcile to find out at the next start.
			continue
		case !ok && pctx.Err() != nil:
			f.provisionAbandoned(ctx, n.GetNodeId(), "provider "+p.Name()+" did not answer within "+f.cfg.ProvisionTimeout.String())
			continue
		case !ok:
			reason := "the provider did not start it"
			if err != nil {
				reason = "provider " + p.Name() + ": " + err.Error()
			}
			f.provisionFailed(n.GetNodeId(), reason)
			continue
		}
		rec, recErr := f.launched(ctx, inst)
		switch {
		case recErr != nil:
			f.log.Warn("recording a launched instance", "node", inst.NodeID, "instance", inst.InstanceID, "err", recErr)
		case rec.GetLifecycle() == provisioning || rec.GetLifecycle() == active:
			// Only nodes on their way count as started.
			out = append(out, rec)
		}
	}
	if err != nil {
		if _, isStatus := status.FromError(err); isStatus {
			return out, err
		}
		return out, status.Errorf(codes.Unavailable, "provider %s: %v", p.Name(), err)
	}
	f.log.Info("nodes provisioned", "provider", p.Name(), "pool", l.Pool, "count", len(out))
	return out, nil
}

// nodeIDs names count new nodes: a provider whose machines have names of
// their own chooses them; otherwise each is the pool's or the provider's
// name and a random suffix.
func (f *Fleet) nodeIDs(ctx context.Context, p provider.Provider, count int, pool string) ([]string, error) {
	if c, ok := p.(provider.Chooser); ok {
		ids, err := c.Choose(ctx, count, pool)
		if _, isStatus := status.FromError(err); err != nil && isStatus {
			return nil, err
		}
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "provider %s: choose machines: %v", p.Name(), err)
		}
		if len(ids) == 0 {
			return nil, status.Errorf(codes.ResourceExhausted, "provider %s: no machine is free", p.Name())
		}
		return ids, nil
	}
	ids := make([]string, count)
	for i := range ids {
		ids[i] = provider.NewNodeID(cmp.Or(pool, p.Name()))
	}
	return ids, nil
}

// reserve records a node that is about to be started: PROVISIONING, with
// no instance yet.
func (f *Fleet) reserve(ctx context.Context, providerName, id, pool string, labels map[string]string, now time.Time) (*fleetv1.Node, error) {
	var out *fleetv1.Node
	err := f.nodeLocked(id, true, func(ns *nodeState, cur *fleetv1.Node) error {
		if cur != nil && !allowed(cur, actProvision) {
			return status.Errorf(codes.AlreadyExists, "node_id: node %q is in use (%s)", id, cur.GetLifecycle())
		}
		// A new record, in place of a terminated or failed one.
		n := &fleetv1.Node{
			NodeId:    id,
			Labels:    maps.Clone(labels),
			Lifecycle: cur.GetLifecycle(),
			Health:    fleetv1.HealthStatus_HEALTH_STATUS_UNKNOWN,
			Provider:  providerName,
			Pool:      pool,
		}
		if err := move(n, actProvision, "provisioning through "+providerName, requester(ctx), now); err != nil {
			return err
		}
		if err := f.commit(ctx, ns, &change{node: n, insert: cur == nil}); err != nil {
			return err
		}
		out = ns.view()
		return nil
	})
	return out, err
}

// launched records the instance a provider started for a reserved node.
// A node that failed meanwhile has its new instance stopped; one being
// terminated has it stopped by the termination, which waited for it.
func (f *Fleet) launched(ctx context.Context, inst provider.Instance) (*fleetv1.Node, error) {
	unprovision, stray := false, false
	n, err := f.operate(ctx, inst.NodeID, func(ns *nodeState, n *fleetv1.Node, _ *change, now time.Time) error {
		if n.GetInstanceId() == "" {
			n.InstanceId = inst.InstanceID
		}
		switch l := n.GetLifecycle(); {
		case l == provisionFailed && !strings.Contains(n.GetLifecycleReason(), stoppingInstance):
			n.LifecycleReason += "; " + stoppingInstance + inst.InstanceID
			ns.book.unprovision, unprovision = true, true
		case l == provisionFailed:
			// Its failure is already stopping whatever carries its id.
		case l == terminated:
			// Terminated before its instance was known (a restart, a
			// provider that said it was gone): stop it.
			stray = true
		}
		return nil
	})
	switch {
	case err != nil:
	case unprovision:
		f.unprovision(ctx, f.get(inst.NodeID))
	case stray:
		if p, ok := f.providers.Get(n.GetProvider()); ok {
			f.stopStray(ctx, p, inst, "instance of a node terminated before its launch returned")
		}
	}
	return n, err
}

// setLaunching marks nodes whose provider has yet to say whether it
// started them; their termination waits for the answer.
func (f *Fleet) setLaunching(ids []string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.launching == nil {
		f.launching = make(map[string]bool)
	}
	for _, id := range ids {
		if on {
			f.launching[id] = true
		} else {
			delete(f.launching, id)
		}
	}
}

// isLaunching reports whether a node's launch is under way.
func (f *Fleet) isLaunching(id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.launching[id]
}

// instanceOf is the instance to stop for a node: the one recorded, or,
// where none was (its launch never answered), the one the provider lists
// under the node's id; runs is false when there is none.
func (f *Fleet) instanceOf(ctx context.Context, p provider.Provider, inst provider.Instance) (provider.Instance, bool, error) {
	if inst.InstanceID != "" {
		return inst, true, nil
	}
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	insts, err := p.List(lctx)
	if err != nil {
		return inst, false, fmt.Errorf("list instances to find node %s's: %w", inst.NodeID, err)
	}
	for _, i := range insts {
		if i.NodeID == inst.NodeID {
			return i, true, nil
		}
	}
	return inst, false, nil
}

// provisionAbandoned fails a node whose provider did not answer, and has
// whatever instance carries its id stopped.
func (f *Fleet) provisionAbandoned(ctx context.Context, nodeID, reason string) {
	failed := false
	_, err := f.operate(ctx, nodeID, func(ns *nodeState, n *fleetv1.Node, _ *change, now time.Time) error {
		marked := reason + "; " + stoppingInstance + "(found by its tag)"
		switch {
		case move(n, actProvisionFailed, marked, byControlPlane, now) == nil:
		case n.GetLifecycle() == provisionFailed && !strings.Contains(n.GetLifecycleReason(), stoppingInstance):
			// Failed meanwhile (its provision timed out) without a stop.
			n.LifecycleReason += "; " + stoppingInstance + "(found by its tag)"
		default:
			return nil
		}
		ns.book.unprovision, failed = true, true
		return nil
	})
	if err != nil {
		f.log.Warn("recording a failed provision", "node", nodeID, "err", err)
		return
	}
	if failed {
		f.log.Warn("provision failed", "node", nodeID, "reason", reason)
		f.unprovision(ctx, f.get(nodeID))
	}
}

// provisionFailed records a node whose instance failed to start, and
// reports whether this call made it PROVISION_FAILED.
func (f *Fleet) provisionFailed(nodeID, reason string) bool {
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

// stoppingInstance marks the reason of a failed provision whose instance
// is still to be stopped; a restart picks the work up from it.
const stoppingInstance = "stopping its instance "

// provisionTimedOut fails a provision whose agent never registered and
// has its instance stopped, which would otherwise run on unseen.
func (f *Fleet) provisionTimedOut(ctx context.Context, n *fleetv1.Node) {
	reason := "agent did not register within " + f.cfg.ProvisionTimeout.String()
	if f.isLaunching(n.GetNodeId()) {
		return // its launch settles it
	}
	if _, ok := f.providers.Get(n.GetProvider()); !ok {
		f.provisionFailed(n.GetNodeId(), reason)
		return
	}
	if n.GetInstanceId() == "" {
		// The launch never said what it started (a restart cut it short):
		// whatever carries the node's id is stopped.
		f.provisionAbandoned(ctx, n.GetNodeId(), reason)
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
	if inst.InstanceID != "" || f.lookUp(inst.NodeID) {
		f.wg.Add(1)
		go f.stopFailed(ctx, ns, p, inst)
		return
	}
	clearStopping(ns)
}

// lookUpEvery is how often a failed node's instance is looked for in its
// provider's list.
const lookUpEvery = 30 * time.Second

// lookUp reports whether a failed node's instance may be looked for now.
func (f *Fleet) lookUp(nodeID string) bool {
	now := f.clock.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lookedUp == nil {
		f.lookedUp = make(map[string]time.Time)
	}
	if last, ok := f.lookedUp[nodeID]; ok && now.Sub(last) < lookUpEvery {
		return false
	}
	f.lookedUp[nodeID] = now
	return true
}

// stopFailed stops the instance of a failed provision, found by its id
// or, where none was recorded, by its tag. An instance not found is
// looked for again until a list slow to show new instances would show
// it (listLag). It runs on the fleet's life, not its caller's.
func (f *Fleet) stopFailed(ctx context.Context, ns *nodeState, p provider.Provider, inst provider.Instance) {
	defer f.wg.Done()
	ctx, cancel := f.detach(ctx)
	defer cancel()
	found, runs, stopErr := f.instanceOf(ctx, p, inst)
	if stopErr == nil && runs {
		if !f.intend(ctx, inst.NodeID, "stopping instance "+found.InstanceID+" of a failed provision") {
			stopErr = errors.New("the decision to stop it could not be recorded")
		} else {
			stopErr = p.Terminate(ctx, found)
		}
	}
	if stopErr != nil {
		clearStopping(ns)
		f.log.Warn("could not stop the instance of a failed provision; will retry", "node", inst.NodeID, "provider", p.Name(), "err", stopErr)
		return
	}
	if !runs && f.clock.Since(ns.node.Load().GetLifecycleChangedAt().AsTime()) < listLag {
		clearStopping(ns) // the list may not show it yet
		return
	}
	outcome := "instance " + found.InstanceID + " stopped"
	if !runs {
		outcome = "no instance ran"
	}
	_, err := f.operate(ctx, inst.NodeID, func(ns *nodeState, n *fleetv1.Node, _ *change, now time.Time) error {
		ns.book.stopping, ns.book.unprovision = false, false
		if i := strings.Index(n.GetLifecycleReason(), stoppingInstance); i >= 0 {
			n.LifecycleReason = n.GetLifecycleReason()[:i] + outcome
		}
		return nil
	})
	if err != nil {
		// The stop is not recorded: the next pass stops the instance
		// again (which succeeds) and records it.
		clearStopping(ns)
		f.log.Warn("recording a stopped instance", "node", inst.NodeID, "err", err)
		return
	}
	f.mu.Lock()
	delete(f.lookedUp, inst.NodeID)
	f.mu.Unlock()
	f.log.Info("instance of a failed provision stopped", "node", inst.NodeID, "provider", p.Name())
}
