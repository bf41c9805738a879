package tui

import (
	"context"
	"fmt"

	tea "charm.land/bubbletea/v2"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// A power cycle switches a node's machine off and on through its provider
// (the BMC of a bare-metal machine), for a node whose agent went silent
// and so can be asked for nothing. The control plane refuses it, unless
// forced, for a node whose agent is not OFFLINE and that is not still
// PROVISIONING, and always for a node whose provider cannot; its refusal
// shows in the status line.

// powerCycleDialog collects a power cycle's reason and force, then asks
// for confirmation.
type powerCycleDialog struct {
	*form
	node string
}

func newPowerCycleDialog(d *deps, node string) *powerCycleDialog {
	f := newForm(d, "Power-cycle "+node)
	f.addInput("Reason", "", "why (shown to other operators)")
	f.addToggle("Force unless offline", false)
	return &powerCycleDialog{form: f, node: node}
}

func (pd *powerCycleDialog) update(k tea.KeyPressMsg) (overlay, tea.Cmd) {
	next, cmd, submitted := pd.step(pd, k, "power cycle")
	if !submitted {
		return next, cmd
	}
	force := pd.toggle[1]
	return newConfirm(pd.d, powerCycleQuestion(pd.d, pd.node, force), powerCycleAction(pd.d, pd.node, pd.value(0), force)), nil
}

// powerCycleQuestion is the confirmation of a power cycle; it says what
// the stream last said of the node's agent, which decides whether the
// control plane needs force.
func powerCycleQuestion(d *deps, node string, force bool) string {
	q := fmt.Sprintf("Power-cycle %s? Its provider switches the machine off and on again; whatever runs on it dies.", node)
	r, ok := d.fleet.rows[node]
	silent := r != nil && (r.reach == fleetv1.Reachability_REACHABILITY_OFFLINE || r.lifecycle == fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISIONING)
	switch {
	case !ok:
	case !silent && force:
		q += fmt.Sprintf(" Its agent is %s: forced, the machine is cycled all the same.", display.Reachability(r.reach))
	case !silent:
		q += fmt.Sprintf(" Its agent is %s, not OFFLINE, so the control plane refuses unless forced.", display.Reachability(r.reach))
	default:
		q += fmt.Sprintf(" Its agent is %s.", display.Reachability(r.reach))
	}
	return q
}

func (pd *powerCycleDialog) view(width int) string {
	return pd.form.view(width, "tab next field · space toggles · enter continue · esc cancel")
}

// powerCycleAction asks the control plane to power-cycle node id.
func powerCycleAction(d *deps, id, reason string, force bool) tea.Cmd {
	if reason == "" {
		reason = "power cycle from the console"
	}
	return forEach(d, "power cycle", "power cycle asked of", []string{id}, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.PowerCycleNode(ctx, &controlplanev1.PowerCycleNodeRequest{NodeId: id, Reason: reason, Force: force})
		return fmt.Sprintf("power cycle of %s asked of its provider; it is %s, %s", id,
			display.Lifecycle(resp.GetNode().GetLifecycle()), display.Reachability(resp.GetNode().GetReachability())), err
	})
}
