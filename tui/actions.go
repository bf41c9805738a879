package tui

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// actionDoneMsg reports an action's outcome for the status line.
type actionDoneMsg struct {
	text string
	err  bool
}

// providersMsg lists the providers ProvisionNodes accepts.
type providersMsg struct{ names []string }

// errNoClient is what a console without a control plane answers.
var errNoClient = errors.New("not connected to a control plane")

// actionTimeout bounds one call of an action.
const actionTimeout = 15 * time.Second

func (m *Model) loadProviders() tea.Cmd {
	client := m.d.client
	if client == nil {
		return nil
	}
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
		defer cancel()
		st, err := client.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
		if err != nil {
			return nil
		}
		var names []string
		for _, p := range st.GetProviders() {
			names = append(names, p.GetName())
		}
		return providersMsg{names: names}
	}
}

// forEach runs call for every target, a few at a time, and sums up the
// outcome in one status line: "cordoned 5 nodes", or what failed ("cordon
// failed: gpu-7 is TERMINATED; …"). act names the action, done its outcome.
func forEach(d *deps, act, done string, targets []string, call func(ctx context.Context, id string) (string, error)) tea.Cmd {
	return func() tea.Msg {
		if d.client == nil {
			return actionDoneMsg{text: act + " failed: " + errNoClient.Error(), err: true}
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
					failed = append(failed, failure(id, err))
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
			return actionDoneMsg{text: last}
		case len(failed) == 0:
			return actionDoneMsg{text: fmt.Sprintf("%s %d nodes", done, ok)}
		case ok == 0 && len(failed) == 1:
			return actionDoneMsg{text: act + " failed: " + failed[0], err: true}
		case ok == 0:
			return actionDoneMsg{text: fmt.Sprintf("%s failed on all %d nodes: %s", act, len(targets), strings.Join(failed, "; ")), err: true}
		}
		return actionDoneMsg{text: fmt.Sprintf("%s %d of %d nodes; %d failed: %s", done, ok, len(targets), len(failed), strings.Join(failed, "; ")), err: true}
	}
}

// failure says why an action failed on one node, naming the node once:
// the server's `node "gpu-7" is TERMINATED` becomes `gpu-7 is TERMINATED`.
func failure(id string, err error) string {
	msg := status.Convert(err).Message()
	if rest, ok := strings.CutPrefix(msg, fmt.Sprintf("node %q ", id)); ok {
		return id + " " + rest
	}
	if rest, ok := strings.CutPrefix(msg, fmt.Sprintf("node_id: no node %q", id)); ok {
		return id + ": no such node" + rest
	}
	return id + ": " + msg
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

func drainAction(d *deps, targets []string, reason string, deadline time.Duration, force bool) tea.Cmd {
	if reason == "" {
		reason = "drain from the console"
	}
	return forEach(d, "drain", "draining", targets, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.DrainNode(ctx, &controlplanev1.DrainNodeRequest{
			NodeId: id, Reason: reason, Deadline: timestamppb.New(d.now().Add(deadline)), Force: force,
		})
		return fmt.Sprintf("%s %s (deadline in %s)", id, display.Lifecycle(resp.GetNode().GetLifecycle()), deadline), err
	})
}

func terminateAction(d *deps, targets []string) tea.Cmd {
	return forEach(d, "terminate", "terminating", targets, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: id, Reason: "termination from the console"})
		return id + " " + display.Lifecycle(resp.GetNode().GetLifecycle()), err
	})
}

func diagnoseAction(d *deps, targets []string) tea.Cmd {
	return forEach(d, "diagnostics", "diagnostics queued on", targets, func(ctx context.Context, id string) (string, error) {
		resp, err := d.client.RunDiagnostics(ctx, &controlplanev1.RunDiagnosticsRequest{NodeId: id})
		return fmt.Sprintf("diagnostics queued on %s as %s; the report shows in the node's commands", id, resp.GetCommand().GetId()), err
	})
}

func provisionAction(d *deps, provider string, count, gpus int, labels map[string]string) tea.Cmd {
	return func() tea.Msg {
		if d.client == nil {
			return actionDoneMsg{text: "provision failed: " + errNoClient.Error(), err: true}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*actionTimeout)
		defer cancel()
		resp, err := d.client.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{
			Provider: provider, Count: uint32(count), GpusPerNode: uint32(gpus), Labels: labels,
		})
		if err != nil {
			return actionDoneMsg{text: "provision failed: " + status.Convert(err).Message(), err: true}
		}
		var ids []string
		for _, n := range resp.GetNodes() {
			ids = append(ids, n.GetNodeId())
		}
		return actionDoneMsg{text: fmt.Sprintf("provisioning %d nodes through %s: %s", len(ids), provider, strings.Join(ids, ", "))}
	}
}
