package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/display"
	"github.com/navarch/navarch/internal/faultspec"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func runAction(ctx context.Context, cf *connFlags, cmd string, args []string, env Env) error {
	fs := flagSet(cmd, cf)
	var reason *string
	var deadline, drainTimeout optionalDuration
	var wait *time.Duration
	var force bool
	if cmd != "diagnose" {
		reason = fs.String("reason", "", "`TEXT` why; recorded on the node")
	}
	switch cmd {
	case "drain":
		fs.Var(&deadline, "deadline", "`DURATION` end the drain after this long even if GPU work remains; unset, the control plane's default")
		fs.BoolVar(&force, "force", false, "at the deadline, signal the GPU processes still running, TERM then KILL")
	case "terminate":
		fs.Var(&drainTimeout, "drain-timeout", "`DURATION` how long the drain may take before the node is stopped; unset, the control plane's default")
		fs.BoolVar(&force, "force", false, "skip the drain and stop the node at once")
	case "diagnose":
		wait = fs.Duration("wait", 30*time.Second, "`DURATION` how long to wait for the report; the check stays queued after that")
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s needs exactly one node id", cmd)
	}
	id := pos[0]
	if deadline.set && deadline.d <= 0 {
		return usagef("--deadline: %s is not a positive duration", deadline.d)
	}
	if drainTimeout.set && drainTimeout.d <= 0 {
		return usagef("--drain-timeout: %s is not a positive duration", drainTimeout.d)
	}
	c, closeConn, err := client(cf)
	if err != nil {
		return err
	}
	defer closeConn()
	if cmd == "diagnose" {
		return nodeFailure(id, diagnose(ctx, c, id, *wait, env))
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	n, err := act(cctx, c, cmd, id, *reason, deadline, drainTimeout, force)
	if err != nil {
		return nodeFailure(id, err)
	}
	fmt.Fprintf(env.Stdout, "%s %s (%s)\n", n.GetNodeId(), display.Lifecycle(n.GetLifecycle()), n.GetLifecycleReason())
	return nil
}

// act sends cmd's request for node id. A duration left unset is left to
// the control plane's default.
func act(ctx context.Context, c controlplanev1.ControlPlaneServiceClient, cmd, id, reason string, deadline, drainTimeout optionalDuration, force bool) (*fleetv1.Node, error) {
	switch cmd {
	case "cordon":
		resp, err := c.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: id, Reason: reason})
		return resp.GetNode(), err
	case "uncordon":
		resp, err := c.UncordonNode(ctx, &controlplanev1.UncordonNodeRequest{NodeId: id, Reason: reason})
		return resp.GetNode(), err
	case "drain":
		req := &controlplanev1.DrainNodeRequest{NodeId: id, Reason: reason, Force: force}
		if deadline.set {
			req.Deadline = timestamppb.New(time.Now().Add(deadline.d))
		}
		resp, err := c.DrainNode(ctx, req)
		return resp.GetNode(), err
	}
	req := &controlplanev1.TerminateNodeRequest{NodeId: id, Reason: reason, Force: force}
	if drainTimeout.set {
		req.DrainTimeout = durationpb.New(drainTimeout.d)
	}
	resp, err := c.TerminateNode(ctx, req)
	return resp.GetNode(), err
}

// runRelease keeps in service each node the auto-cordon breaker held
// back, as an operator judged it fit to keep working. Every node is tried;
// each failure is said as it happens. A failure that is not the node's own
// (no access, no control plane) would be the same for every node, so it
// ends the command, said once.
func runRelease(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("release", cf)
	reason := fs.String("reason", "", "`TEXT` why the nodes may keep working; recorded in the audit log")
	ids, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return usagef("release needs at least one node id")
	}
	c, closeConn, err := client(cf)
	if err != nil {
		return err
	}
	defer closeConn()
	var failed []error
	for _, id := range ids {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := c.ReleaseNode(cctx, &controlplanev1.ReleaseNodeRequest{NodeId: id, Reason: *reason})
		cancel()
		if err != nil {
			if notTheNodes(err) {
				return err
			}
			failed = append(failed, nodeFailure(id, err))
			if len(ids) > 1 {
				fmt.Fprintf(env.Stderr, "navarch: %s\n", message(failed[len(failed)-1]))
			}
			continue
		}
		fmt.Fprintf(env.Stdout, "%s released: %s, no longer held back\n", id, display.Lifecycle(resp.GetNode().GetLifecycle()))
	}
	switch {
	case len(failed) == 0:
		return nil
	case len(ids) == 1:
		return failed[0]
	}
	return releaseFailures{failed: len(failed), total: len(ids), first: failed[0]}
}

// notTheNodes reports whether a call's failure says nothing of its node:
// the caller may not make it, or the control plane did not answer.
func notTheNodes(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

// releaseFailures says how many of a release's nodes failed, each already
// said; the first failure's status sets the exit code.
type releaseFailures struct {
	failed, total int
	first         error
}

func (e releaseFailures) Error() string {
	return fmt.Sprintf("%d of %d nodes not released", e.failed, e.total)
}
func (e releaseFailures) Unwrap() error { return e.first }

// runResetIdentity forgets the key node id's agent joined with: its
// certificate stops working, and a machine with a join token may join as
// the node, as after a reinstall or a replacement.
func runResetIdentity(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("reset-identity", cf)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("reset-identity needs exactly one node id")
	}
	id := pos[0]
	var resp *controlplanev1.ResetNodeIdentityResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) error {
		var err error
		resp, err = c.ResetNodeIdentity(ctx, &controlplanev1.ResetNodeIdentityRequest{NodeId: id})
		return err
	})
	if err != nil {
		return nodeFailure(id, err)
	}
	if !resp.GetHadIdentity() {
		fmt.Fprintf(env.Stdout, "%s had no agent identity; nothing changed, and a machine with a join token may join as it\n", id)
		return nil
	}
	fmt.Fprintf(env.Stdout, "%s identity reset; a machine with a join token may now join as it\n", id)
	return nil
}

// nodeError is a failed action on one node, said as the console says it:
// "gpu-7: no such node", "gpu-7 is TERMINATED; it cannot be cordoned".
// It keeps the status, whose code sets the exit code.
type nodeError struct {
	id  string
	err error
}

func (e nodeError) Error() string { return apierr.Describe(e.id, e.err) }
func (e nodeError) Unwrap() error { return e.err }

// nodeFailure describes err as a failure on node id where the control
// plane said which failure it is; other errors stay as they are.
func nodeFailure(id string, err error) error {
	if _, ok := apierr.Info(err); ok {
		return nodeError{id: id, err: err}
	}
	return err
}

// diagnose queues diagnostics and waits for the report.
func diagnose(ctx context.Context, c controlplanev1.ControlPlaneServiceClient, id string, wait time.Duration, env Env) error {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	resp, err := c.RunDiagnostics(cctx, &controlplanev1.RunDiagnosticsRequest{NodeId: id})
	cancel()
	if err != nil {
		return err
	}
	cmdID := resp.GetCommand().GetId()
	done, err := waitCommand(ctx, c, id, cmdID, wait)
	switch {
	case err != nil:
		return err
	case done == nil:
		return fmt.Errorf("no diagnostics report from %s within %s (command %s stays queued)", id, wait, cmdID)
	}
	fmt.Fprint(env.Stdout, ensureNewline(done.GetMessage()))
	if done.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED {
		return fmt.Errorf("diagnostics on %s %s", id, strings.ToLower(display.CommandStatus(done.GetStatus())))
	}
	return nil
}

func ensureNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

func runProvision(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("provision", cf)
	provider := fs.String("provider", "local", "`NAME` the provider, as 'navarch get status' lists them")
	count := fs.Uint("count", 0, "`N` how many nodes to start; required")
	gpus := fs.Uint("gpus", 0, "`N` GPUs per node, where the provider lets you choose; 0 means its default")
	instanceType := fs.String("instance-type", "", "`TYPE` the provider's instance type; empty means its default")
	chaos := fs.Duration("chaos", 0, "`DURATION` for simulated nodes, the mean time between random faults on each; 0 means none")
	out := outputFlag(fs)
	var labels, faults listFlag
	const label = "`KEY=VALUE` a label for every new node; repeatable"
	fs.Var(&labels, "label", label)
	fs.Var(&labels, "l", label)
	fs.Var(&faults, "sim-fault", "`SPEC` a fault for simulated nodes, KIND@gpuN[+DELAY] as navarch-agent --sim-fault takes it; repeatable")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("provision takes no arguments; use --count N")
	}
	if *count == 0 {
		return usagef("provision needs --count N")
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	req := &controlplanev1.ProvisionNodesRequest{
		Provider: *provider, Count: uint32(*count), GpusPerNode: uint32(*gpus), InstanceType: *instanceType,
		Labels: map[string]string{}, SimFaults: faults,
	}
	for _, l := range labels {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return usagef("--label: %q is not KEY=VALUE", l)
		}
		req.Labels[k] = v
	}
	for _, f := range faults {
		if _, err := faultspec.Parse(f); err != nil {
			return usagef("--sim-fault: %v", err)
		}
	}
	if *chaos > 0 {
		req.ChaosInterval = durationpb.New(*chaos)
	}
	var resp *controlplanev1.ProvisionNodesResponse
	err = call(ctx, cf, 2*callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.ProvisionNodes(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	if *out == "json" {
		return writeJSON(env.Stdout, resp)
	}
	for _, n := range resp.GetNodes() {
		fmt.Fprintf(env.Stdout, "%s %s\n", n.GetNodeId(), display.Lifecycle(n.GetLifecycle()))
	}
	return nil
}
