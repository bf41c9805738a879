package tui

import (
	"context"
	"fmt"
	"strconv"

	tea "charm.land/bubbletea/v2"

	"github.com/navarch/navarch/internal/display"
	"github.com/navarch/navarch/internal/health"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The remedies an operator asks a node's agent for, from the node view or
// the : prompt: a GPU reset and a reboot. Each asks what it needs in a
// dialog, then for confirmation; the control plane judges the request,
// and its refusal shows in the status line.

// remedyMsg asks the view on screen for a remedy on the node it shows: a
// reboot, or else a GPU reset.
type remedyMsg struct{ reboot bool }

// remedy opens the dialog of a GPU reset or a reboot of the node shown.
func (v *nodeView) remedy(reboot bool) tea.Cmd {
	n := v.resp.GetNode()
	switch {
	case n == nil:
		v.d.send(statusLineMsg{text: "node " + v.id + " is not loaded yet", err: true})
	case n.GetRemediesDisabled():
		v.d.send(statusLineMsg{text: v.id + "'s agent forbids remedies (it was started with --no-remedies)", err: true})
	case reboot:
		lifecycle := n.GetLifecycle()
		if r, ok := v.d.fleet.rows[v.id]; ok {
			// The stream is fresher than the last fetch.
			lifecycle = r.lifecycle
		}
		v.d.send(openOverlayMsg{overlay: newRebootDialog(v.d, v.id, lifecycle)})
	default:
		v.d.send(openOverlayMsg{overlay: newResetDialog(v.d, n)})
	}
	return nil
}

// resetDialog collects a GPU reset's GPU, reason and force, then asks for
// confirmation.
type resetDialog struct {
	*form
	node string
}

func newResetDialog(d *deps, n *fleetv1.Node) *resetDialog {
	f := newForm(d, "Reset a GPU of "+n.GetNodeId())
	f.addInput("GPU", resetCandidate(n), gpuRange(n))
	f.addInput("Reason", "", "why (shown to other operators)")
	f.addToggle("Stop processes", false)
	return &resetDialog{form: f, node: n.GetNodeId()}
}

// resetCandidate is the GPU the reset form starts with: one whose remedy
// is a reset, else the worst, else the first.
func resetCandidate(n *fleetv1.Node) string {
	var pick *fleetv1.Gpu
	for _, g := range n.GetGpus() {
		switch {
		case g.GetLost():
		case g.GetRemedy() == fleetv1.Remedy_REMEDY_RESET_GPU:
			return strconv.Itoa(int(g.GetIndex()))
		case pick == nil || health.Worse(g.GetHealth(), pick.GetHealth()):
			pick = g
		}
	}
	if pick == nil {
		return ""
	}
	return strconv.Itoa(int(pick.GetIndex()))
}

// gpuRange says which indexes the node's GPUs have, as the field's hint.
func gpuRange(n *fleetv1.Node) string {
	gpus := n.GetGpus()
	if len(gpus) == 0 {
		return "the GPU's index"
	}
	lo, hi := gpus[0].GetIndex(), gpus[0].GetIndex()
	for _, g := range gpus {
		lo, hi = min(lo, g.GetIndex()), max(hi, g.GetIndex())
	}
	return fmt.Sprintf("index, %d–%d", lo, hi)
}

func (rd *resetDialog) update(k tea.KeyPressMsg) (overlay, tea.Cmd) {
	next, cmd, submitted := rd.step(rd, k, "reset")
	if !submitted {
		return next, cmd
	}
	gpu, err := strconv.ParseUint(rd.value(0), 10, 32)
	if err != nil {
		rd.err = fmt.Sprintf("GPU %q is not a GPU index such as 0 or 7", rd.value(0))
		rd.setFocus(0)
		return rd, nil
	}
	force := rd.toggle[2]
	how := "Its agent refuses while compute processes run on it"
	if force {
		how = "Compute processes on it get TERM, then KILL, first"
	}
	q := fmt.Sprintf("Reset GPU %d of %s through nvidia-smi? %s; a reset that succeeds clears the faults a reset remedies.", gpu, rd.node, how)
	return newConfirm(rd.d, q, resetAction(rd.d, rd.node, uint32(gpu), rd.value(1), force)), nil
}

func (rd *resetDialog) view(width int) string {
	return rd.form.view(width, "tab next field · space toggles · enter continue · esc cancel")
}

// rebootDialog collects a reboot's reason and force, then asks for
// confirmation.
type rebootDialog struct {
	*form
	node      string
	lifecycle fleetv1.LifecycleState
}

func newRebootDialog(d *deps, node string, lifecycle fleetv1.LifecycleState) *rebootDialog {
	f := newForm(d, "Reboot "+node)
	f.addInput("Reason", "", "why (shown to other operators)")
	f.addToggle("Force reboot", false)
	return &rebootDialog{form: f, node: node, lifecycle: lifecycle}
}

func (bd *rebootDialog) update(k tea.KeyPressMsg) (overlay, tea.Cmd) {
	next, cmd, submitted := bd.step(bd, k, "reboot")
	if !submitted {
		return next, cmd
	}
	force := bd.toggle[1]
	q := fmt.Sprintf("Reboot %s? Its agent reboots the node; the reboot is done when the node registers from a new boot.", bd.node)
	if force && bd.lifecycle != fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED {
		q += fmt.Sprintf(" It is %s, not drained: its GPU work dies with it.", display.Lifecycle(bd.lifecycle))
	}
	return newConfirm(bd.d, q, rebootAction(bd.d, bd.node, bd.value(0), force)), nil
}

func (bd *rebootDialog) view(width int) string {
	return bd.form.view(width, "tab next field · space toggles · enter continue · esc cancel")
}

// resetAction asks for a reset of GPU gpu on node id.
func resetAction(d *deps, id string, gpu uint32, reason string, force bool) tea.Cmd {
	if reason == "" {
		reason = fmt.Sprintf("GPU %d reset from the console", gpu)
	}
	return forEach(d, "reset", "reset queued on", []string{id}, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.ResetGpu(ctx, &controlplanev1.ResetGpuRequest{NodeId: id, GpuIndex: gpu, Reason: reason, Force: force})
		return fmt.Sprintf("reset of GPU %d queued on %s as %s; its outcome shows in the node's commands", gpu, id, resp.GetCommand().GetId()), err
	})
}

// rebootAction asks for a reboot of node id.
func rebootAction(d *deps, id, reason string, force bool) tea.Cmd {
	if reason == "" {
		reason = "reboot from the console"
	}
	return forEach(d, "reboot", "reboot queued on", []string{id}, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.RebootNode(ctx, &controlplanev1.RebootNodeRequest{NodeId: id, Reason: reason, Force: force})
		return fmt.Sprintf("reboot queued on %s as %s; it is done when the node registers from a new boot", id, resp.GetCommand().GetId()), err
	})
}
