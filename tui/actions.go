package tui

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// errNoClient is what a console without a control plane answers.
var errNoClient = errors.New("not connected to a control plane")

// actionTimeout bounds one call of an action.
const actionTimeout = 15 * time.Second

// nodeAction is an action on nodes, started by a key or a : command.
type nodeAction int

const (
	actCordon nodeAction = iota
	actUncordon
	actDrain
	actTerminate
	actDiagnose
	actRelease
)

// nodeAction is the action on nodes k starts, if any.
func (a *actionKeys) nodeAction(k tea.KeyPressMsg) (nodeAction, bool) {
	switch {
	case key.Matches(k, a.Cordon):
		return actCordon, true
	case key.Matches(k, a.Uncordon):
		return actUncordon, true
	case key.Matches(k, a.Drain):
		return actDrain, true
	case key.Matches(k, a.Terminate):
		return actTerminate, true
	case key.Matches(k, a.Diagnose):
		return actDiagnose, true
	case key.Matches(k, a.Release):
		return actRelease, true
	}
	return 0, false
}

// run starts the action k names on targets and reports whether k named
// one.
func (a *actionKeys) run(d *deps, k tea.KeyPressMsg, targets []string) (tea.Cmd, bool) {
	if key.Matches(k, a.Provision) {
		d.send(openOverlayMsg{overlay: newProvisionDialog(d)})
		return nil, true
	}
	if key.Matches(k, a.PowerCycle) {
		// A power cycle cuts a machine off whatever runs on it: one at a
		// time, the one the operator is looking at.
		switch len(targets) {
		case 0:
			d.send(statusLineMsg{text: "no node selected", err: true})
		case 1:
			d.send(openOverlayMsg{overlay: newPowerCycleDialog(d, targets[0])})
		default:
			d.send(statusLineMsg{text: "a power cycle acts on one node: clear the marks (esc) and pick it", err: true})
		}
		return nil, true
	}
	if act, ok := a.nodeAction(k); ok {
		return startAction(d, act, targets, "marked node"), true
	}
	return nil, false
}

// releaseAction keeps targets in service and clears their held-back mark.
func releaseAction(d *deps, targets []string) tea.Cmd {
	return forEach(d, "release", "released", targets, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.ReleaseNode(ctx, &controlplanev1.ReleaseNodeRequest{NodeId: id, Reason: "released from the console"})
		return id + " released: " + display.Lifecycle(resp.GetNode().GetLifecycle()) + ", no longer held back", err
	})
}

// startAction starts act on targets, which noun says what they are when
// there are several ("marked node"). Cordon, uncordon and diagnostics run
// at once on one node and ask first on several; drains and terminations
// open their dialog, which asks.
func startAction(d *deps, act nodeAction, targets []string, noun string) tea.Cmd {
	if len(targets) == 0 {
		d.send(statusLineMsg{text: "no node selected", err: true})
		return nil
	}
	what := targets[0]
	if len(targets) > 1 {
		// Name them: a bulk action must never surprise.
		shown := targets[:min(len(targets), 5)]
		what = plural(len(targets), noun) + " (" + strings.Join(shown, ", ")
		if more := len(targets) - len(shown); more > 0 {
			what += fmt.Sprintf(" and %d more", more)
		}
		what += ")"
	}
	confirmIf := func(question string, act tea.Cmd) tea.Cmd {
		if len(targets) == 1 {
			return act
		}
		d.send(openOverlayMsg{overlay: newConfirm(d, question, act)})
		return nil
	}
	switch act {
	case actCordon:
		return confirmIf("Cordon "+what+"?", cordonAction(d, targets))
	case actUncordon:
		return confirmIf("Uncordon "+what+"?", uncordonAction(d, targets))
	case actDiagnose:
		return confirmIf("Run diagnostics on "+what+"?", diagnoseAction(d, targets))
	case actRelease:
		return confirmIf("Release "+what+"? They stay in service, unhealthy, and are not cordoned automatically.", releaseAction(d, targets))
	case actDrain:
		d.send(openOverlayMsg{overlay: newDrainDialog(d, targets, what)})
	case actTerminate:
		d.send(openOverlayMsg{overlay: newTerminateDialog(d, targets, what)})
	}
	return nil
}

// forEach runs call for every target, a few at a time, and sums up the
// outcome in one status line: "cordoned 5 nodes", or what failed ("cordon
// failed: gpu-7 is TERMINATED; …"). act names the action, done its outcome.
func forEach(d *deps, act, done string, targets []string, call func(ctx context.Context, id string) (string, error)) tea.Cmd {
	return func() tea.Msg {
		if d.client == nil {
			return statusLineMsg{text: act + " failed: " + errNoClient.Error(), err: true}
		}
		var mu sync.Mutex
		var failed []string
		var last string
		sem := make(chan struct{}, 8)
		var wg sync.WaitGroup
		for _, id := range targets {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
				defer cancel()
				res, err := call(ctx, id)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, apierr.Describe(id, err))
					return
				}
				last = res
			}()
		}
		wg.Wait()
		sort.Strings(failed)
		ok := len(targets) - len(failed)
		switch {
		case len(failed) == 0 && len(targets) == 1:
			return statusLineMsg{text: last}
		case len(failed) == 0:
			return statusLineMsg{text: done + " " + plural(ok, "node")}
		case ok == 0 && len(failed) == 1:
			return statusLineMsg{text: act + " failed: " + failed[0], err: true}
		case ok == 0:
			return statusLineMsg{text: fmt.Sprintf("%s failed on all %s: %s", act, plural(len(targets), "node"), strings.Join(failed, "; ")), err: true}
		}
		return statusLineMsg{text: fmt.Sprintf("%s %d of %s; %d failed: %s", done, ok, plural(len(targets), "node"), len(failed), strings.Join(failed, "; ")), err: true}
	}
}

func cordonAction(d *deps, targets []string) tea.Cmd {
	return forEach(d, "cordon", "cordoned", targets, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: id, Reason: "cordoned from the console"})
		return id + " " + display.Lifecycle(resp.GetNode().GetLifecycle()), err
	})
}

func uncordonAction(d *deps, targets []string) tea.Cmd {
	return forEach(d, "uncordon", "uncordoned", targets, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: id, Reason: "uncordoned from the console"})
		return id + " " + display.Lifecycle(resp.GetNode().GetLifecycle()), err
	})
}

// drainAction drains targets; a deadline of 0 leaves it to the control
// plane's default.
func drainAction(d *deps, targets []string, reason string, deadline time.Duration, force bool) tea.Cmd {
	if reason == "" {
		reason = "drain from the console"
	}
	return forEach(d, "drain", "draining", targets, func(ctx context.Context, id string) (string, error) {
		req := &controlplanev1.DrainNodeRequest{NodeId: id, Reason: reason, Force: force}
		if deadline != 0 {
			req.Deadline = timestamppb.New(d.now().Add(deadline))
		}
		resp, err := d.client.DrainNode(ctx, req)
		done := id + " " + display.Lifecycle(resp.GetNode().GetLifecycle())
		if deadline != 0 {
			done += fmt.Sprintf(" (deadline in %s)", deadline)
		}
		return done, err
	})
}

// terminateAction terminates targets, each drained first for at most
// drainTimeout (0 leaves it to the control plane's default), or stopped
// at once with force.
func terminateAction(d *deps, targets []string, reason string, drainTimeout time.Duration, force bool) tea.Cmd {
	if reason == "" {
		reason = "termination from the console"
	}
	return forEach(d, "terminate", "terminating", targets, func(ctx context.Context, id string) (string, error) {
		req := &controlplanev1.TerminateNodeRequest{NodeId: id, Reason: reason, Force: force}
		if drainTimeout != 0 && !force {
			req.DrainTimeout = durationpb.New(drainTimeout)
		}
		resp, err := d.client.TerminateNode(ctx, req)
		return id + " " + display.Lifecycle(resp.GetNode().GetLifecycle()), err
	})
}

func diagnoseAction(d *deps, targets []string) tea.Cmd {
	return forEach(d, "diagnostics", "diagnostics queued on", targets, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.RunDiagnostics(ctx, &controlplanev1.RunDiagnosticsRequest{NodeId: id})
		return fmt.Sprintf("diagnostics queued on %s as %s; the report shows in the node's commands", id, resp.GetCommand().GetId()), err
	})
}

func provisionAction(d *deps, provider string, count, gpus uint32, labels map[string]string) tea.Cmd {
	return func() tea.Msg {
		if d.client == nil {
			return statusLineMsg{text: "provision failed: " + errNoClient.Error(), err: true}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*actionTimeout)
		defer cancel()
		resp, err := d.client.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{
			Provider: provider, Count: count, GpusPerNode: gpus, Labels: labels,
		})
		if err != nil {
			return statusLineMsg{text: "provision failed: " + status.Convert(err).Message(), err: true}
		}
		var ids []string
		for _, n := range resp.GetNodes() {
			ids = append(ids, n.GetNodeId())
		}
		return statusLineMsg{text: fmt.Sprintf("provisioning %s through %s: %s", plural(len(ids), "node"), provider, strings.Join(ids, ", "))}
	}
}
