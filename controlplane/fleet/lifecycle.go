package fleet

import (
	"time"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// action is something that moves a node's lifecycle. Its name is the past
// participle an operator reads when the action is refused ("node_id: node
// "x" is TERMINATED; it cannot be cordoned").
type action string

const (
	actCordon          action = "cordoned"
	actUncordon        action = "uncordoned"
	actDrain           action = "drained"
	actTerminate       action = "terminated"
	actDiagnose        action = "diagnosed"
	actResetGPU        action = "reset"
	actReboot          action = "rebooted"
	actAutoCordon      action = "cordoned automatically"
	actRegister        action = "registered"
	actDrainEnded      action = "marked drained"
	actStopped         action = "marked terminated"
	actProvisionFailed action = "marked failed"
	actProvision       action = "provisioned again"
	actInstanceGone    action = "marked gone"
)

// Lifecycle states, short.
const (
	unset           = fleetv1.LifecycleState_LIFECYCLE_STATE_UNSPECIFIED // a node not yet created
	provisioning    = fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING
	active          = fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE
	cordoned        = fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED
	draining        = fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING
	drained         = fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED
	terminating     = fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING
	terminated      = fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED
	provisionFailed = fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED
)

// transitions is the lifecycle state machine, whole: for each action, the
// states it is allowed from and the state it leads to. A state that leads
// to itself is a harmless repeat (cordon a cordoned node); a state missing
// from an action's row refuses the action with FailedPrecondition.
var transitions = map[action]map[fleetv1.LifecycleState]fleetv1.LifecycleState{
	// Operators.
	actCordon:   {active: cordoned, cordoned: cordoned, draining: draining, drained: drained},
	actUncordon: {active: active, cordoned: active, draining: active, drained: active},
	// A drain of a draining node may replace the drain under way; see Drain.
	actDrain: {active: draining, cordoned: draining, draining: draining, drained: drained},
	actTerminate: {
		provisioning: terminating, active: terminating, cordoned: terminating, draining: terminating,
		drained: terminating, provisionFailed: terminating, terminating: terminating, terminated: terminated,
	},
	actDiagnose: {active: active, cordoned: cordoned, draining: draining, drained: drained},
	// Remedies need an agent to carry them out; a reboot also needs the
	// node DRAINED unless forced (see Reboot).
	actResetGPU: {active: active, cordoned: cordoned, draining: draining, drained: drained},
	actReboot:   {active: active, cordoned: cordoned, draining: draining, drained: drained},
	// Policy.
	actAutoCordon: {active: cordoned},
	// Agents and the monitor. A registration brings a node to life, or
	// back to life after it was terminated; otherwise it leaves the
	// operator's intent alone.
	actRegister: {
		unset: active, provisioning: active, provisionFailed: active, terminated: active,
		active: active, cordoned: cordoned, draining: draining, drained: drained, terminating: terminating,
	},
	// A provider's new node takes the place of none, or of a node that is
	// gone; its id in use by another is AlreadyExists (see provisioned).
	actProvision:       {unset: provisioning, terminated: provisioning, provisionFailed: provisioning},
	actDrainEnded:      {draining: drained},
	actStopped:         {terminating: terminated},
	actProvisionFailed: {provisioning: provisionFailed},
	// A provider says the node's instance no longer runs.
	actInstanceGone: {
		provisioning: terminated, active: terminated, cordoned: terminated, draining: terminated,
		drained: terminated, terminating: terminated,
	},
}

// next is the state act leads to from the node's state, or the error that
// refuses it.
func next(n *fleetv1.Node, act action) (fleetv1.LifecycleState, error) {
	to, ok := transitions[act][n.GetLifecycle()]
	if !ok {
		return n.GetLifecycle(), apierr.Forbidden(n.GetNodeId(), n.GetLifecycle(), string(act))
	}
	return to, nil
}

// allowed reports whether act may happen to the node now.
func allowed(n *fleetv1.Node, act action) bool {
	_, ok := transitions[act][n.GetLifecycle()]
	return ok
}

// byControlPlane is who Node.lifecycle_by names for a step the control
// plane takes itself: a registration, a drain's end, a provision's
// outcome, a stop.
const byControlPlane = display.ByControlPlane

// move applies act to n through the table: when the state changes it sets
// the new one and says why and who; a refused action changes nothing.
func move(n *fleetv1.Node, act action, reason, by string, now time.Time) error {
	to, err := next(n, act)
	if err == nil && to != n.GetLifecycle() {
		setLifecycle(n, to, reason, by, now)
	}
	return err
}

// setLifecycle moves n to l and says why and who: a token's name, the
// policy, or byControlPlane. Callers find l in the table. A node that
// leaves ACTIVE, by a cordon or otherwise, is no longer held back: the
// cordon the breaker held back is made, or moot.
func setLifecycle(n *fleetv1.Node, l fleetv1.LifecycleState, reason, by string, now time.Time) {
	n.Lifecycle = l
	n.LifecycleReason = reason
	n.LifecycleBy = by
	n.LifecycleChangedAt = ts(now)
	if l != cordoned {
		n.CordonedByPolicy = false
	}
	if l != active {
		n.CordonHeldBackAt = nil
	}
}

// markTerminated makes a TERMINATING n TERMINATED; see endNode.
func markTerminated(ns *nodeState, n *fleetv1.Node, c *change, reason string, now time.Time) {
	endNode(ns, n, c, actStopped, reason, now)
}

// endNode makes n TERMINATED through act: its unfinished commands are
// cancelled, since no agent is left to carry them out, and its live
// metrics are dropped once the change is saved. The caller holds ns.mu.
func endNode(ns *nodeState, n *fleetv1.Node, c *change, act action, reason string, now time.Time) {
	if move(n, act, reason, byControlPlane, now) != nil {
		return
	}
	n.Drain = nil
	cancelOpen(ns, c, anyCommand, reason, now)
	ns.book.terminateQueued = time.Time{}
	c.dropLive = true
}
