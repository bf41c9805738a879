package agent

import fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"

// The node's lifecycle as the agent knows it: from registration and
// heartbeat answers, and from the commands it carries out, which an
// answer to an older request must not undo.

// lifecycleSeq is the count of command-made lifecycle changes, taken before
// a request whose answer carries the lifecycle.
func (a *Agent) lifecycleSeq() uint64 {
	a.lcMu.Lock()
	defer a.lcMu.Unlock()
	return a.lcSeq
}

// answeredLifecycle passes a lifecycle from the control plane's answer to
// OnLifecycle, unless a command changed the lifecycle after the request
// went out (seq is from lifecycleSeq): the answer is older than that.
func (a *Agent) answeredLifecycle(l fleetv1.LifecycleState, seq uint64) {
	if l == fleetv1.LifecycleState_LIFECYCLE_STATE_UNSPECIFIED {
		return
	}
	a.lcMu.Lock()
	defer a.lcMu.Unlock()
	if a.lcSeq == seq {
		if l != a.lifecycle && a.o.Scheduler != nil {
			// A command tells the scheduler itself; a change heard from
			// the control plane wakes the scheduler loop.
			signal(a.sched.kick)
		}
		a.learnLifecycle(l)
	}
}

// commandLifecycle passes the lifecycle a command puts the node in to
// OnLifecycle.
func (a *Agent) commandLifecycle(l fleetv1.LifecycleState) {
	a.lcMu.Lock()
	defer a.lcMu.Unlock()
	a.lcSeq++
	a.learnLifecycle(l)
}

// learnLifecycle keeps the node's lifecycle and passes it to OnLifecycle.
// The caller holds lcMu.
func (a *Agent) learnLifecycle(l fleetv1.LifecycleState) {
	a.lifecycle = l
	if a.o.OnLifecycle != nil {
		a.o.OnLifecycle(l)
	}
}

// knownLifecycle is the node's lifecycle as the agent last learnt it.
func (a *Agent) knownLifecycle() fleetv1.LifecycleState {
	a.lcMu.Lock()
	defer a.lcMu.Unlock()
	return a.lifecycle
}
