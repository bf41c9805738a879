package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func runGet(ctx context.Context, cf *connFlags, args []string, env Env) error {
	if len(args) == 0 {
		return within("get", usagef("get needs what to get: nodes, node ID, events, status, audit, pools or pool NAME"))
	}
	what, args := args[0], args[1:]
	var err error
	switch what {
	case "-h", "-help", "--help":
		return helpError{groupUsage("get", "KIND")}
	case "nodes":
		err = getNodes(ctx, cf, args, env)
	case "node":
		err = getNode(ctx, cf, args, env)
	case "events":
		err = getEvents(ctx, cf, args, env)
	case "status":
		err = getStatus(ctx, cf, args, env)
	case "audit":
		err = getAudit(ctx, cf, args, env)
	case "pools":
		err = getPools(ctx, cf, args, env)
	case "pool":
		err = getPool(ctx, cf, args, env)
	default:
		return within("get", usagef("get: unknown kind %q (nodes, node, events, status, audit, pools, pool)", what))
	}
	return within("get "+what, err)
}

// writeJSON writes m through protojson, indented with stable whitespace
// (protojson varies its own on purpose).
func writeJSON(w io.Writer, m proto.Message) error {
	// Zero counts and false flags are printed too: a script reading
	// "draining": 0 should not have to know that a missing key means 0.
	b, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = out.WriteTo(w)
	return err
}

func getNodes(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("get nodes", cf)
	out := outputFlag(fs)
	var lifecycle, health, reach, labels listFlag
	fs.Var(&lifecycle, "lifecycle", "`STATE` only nodes in this lifecycle state: provisioning, active, cordoned, draining, drained, terminating, terminated or provision-failed; repeatable")
	fs.Var(&health, "health", "`HEALTH` only nodes in this health: healthy, degraded, unhealthy or unknown; repeatable")
	fs.Var(&reach, "reachability", "`REACH` only nodes this reachable: online, stale, offline or unknown; repeatable")
	const label = "`KEY=VALUE` only nodes with this label (a bare KEY: any value); repeatable, all must match"
	fs.Var(&labels, "l", label)
	fs.Var(&labels, "label", label)
	text := fs.String("text", "", "`TEXT` only nodes whose id, hostname or a label contains TEXT, ignoring case")
	heldBack := fs.Bool("held-back", false, "only nodes the auto-cordon breaker held back: UNHEALTHY, still ACTIVE, waiting for an operator to cordon or release them")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("get nodes takes no arguments; did you mean 'get node %s'?", pos[0])
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	req := &controlplanev1.ListNodesRequest{LabelSelector: strings.Join(labels, ","), Text: *text, HeldBack: *heldBack, PageSize: 1000}
	for _, l := range lifecycle {
		v, ok := display.ParseLifecycle(l)
		if !ok {
			return usagef("--lifecycle: %q is not a lifecycle state (active, cordoned, draining, drained, ...)", l)
		}
		req.Lifecycle = append(req.Lifecycle, v)
	}
	for _, h := range health {
		v, ok := display.ParseHealth(h)
		if !ok {
			return usagef("--health: %q is not healthy, degraded, unhealthy or unknown", h)
		}
		req.Health = append(req.Health, v)
	}
	for _, r := range reach {
		v, ok := display.ParseReachability(r)
		if !ok {
			return usagef("--reachability: %q is not online, stale, offline or unknown", r)
		}
		req.Reachability = append(req.Reachability, v)
	}
	c, closeConn, err := client(cf)
	if err != nil {
		return err
	}
	defer closeConn()
	all := &controlplanev1.ListNodesResponse{}
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		page, err := c.ListNodes(cctx, req)
		cancel()
		if err != nil {
			return err
		}
		all.Nodes = append(all.Nodes, page.GetNodes()...)
		all.TotalSize, all.Revision = page.GetTotalSize(), page.GetRevision()
		if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if *out == "json" {
		return writeJSON(env.Stdout, all)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tLIFECYCLE\tHEALTH\tREACH\tGPUS\tUTIL\tHOT\tSEEN\tLABELS")
	for _, n := range all.GetNodes() {
		util, hot := "-", "-"
		if u, ok := display.Utilization(n.GetSamples()); ok && reachable(n) {
			util = fmt.Sprintf("%d%%", u)
		}
		if h, ok := display.Hottest(n.GetSamples()); ok && reachable(n) {
			hot = fmt.Sprintf("%d°C", h)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.GetNodeId(), lifecycleOf(n),
			display.Health(n.GetHealth()), display.Reachability(n.GetReachability()), gpuSummary(n), util, hot,
			display.Age(n.GetLastHeartbeatAt().AsTime(), now), display.OrDash(display.Labels(n.GetLabels())))
	}
	return tw.Flush()
}

// lifecycleOf is the node's lifecycle state, and "(held back)" after it
// when the breaker held back its automatic cordon.
func lifecycleOf(n *fleetv1.Node) string {
	if n.GetCordonHeldBackAt() != nil {
		return display.Lifecycle(n.GetLifecycle()) + " (held back)"
	}
	return display.Lifecycle(n.GetLifecycle())
}

// gpuSummary is "8" or "8 (1 unhealthy, 2 degraded)".
func gpuSummary(n *fleetv1.Node) string {
	var bad, degraded, lost int
	for _, g := range n.GetGpus() {
		switch {
		case g.GetLost():
			lost++
		case g.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
			bad++
		case g.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
			degraded++
		}
	}
	var parts []string
	for _, p := range []struct {
		n    int
		what string
	}{{lost, "lost"}, {bad, "unhealthy"}, {degraded, "degraded"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	s := fmt.Sprint(len(n.GetGpus()))
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	return s
}

func getNode(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("get node", cf)
	out := outputFlag(fs)
	events := fs.Uint("events", 20, "`N` recent health events to show; 0 means the control plane's default")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("get node needs exactly one node id")
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	var resp *controlplanev1.GetNodeResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: pos[0], EventLimit: uint32(*events)})
		return err
	})
	if err != nil {
		return err
	}
	if *out == "json" {
		return writeJSON(env.Stdout, resp)
	}
	return writeNode(env.Stdout, resp, time.Now())
}

func writeNode(w io.Writer, resp *controlplanev1.GetNodeResponse, now time.Time) error {
	n := resp.GetNode()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Node:\t%s\n", n.GetNodeId())
	lifecycle := n.GetLifecycleReason()
	if by := display.LifecycleBy(n); by != "" {
		lifecycle += " (by " + by + ")"
	}
	fmt.Fprintf(tw, "Lifecycle:\t%s\t%s\n", display.Lifecycle(n.GetLifecycle()), lifecycle)
	if at := n.GetCordonHeldBackAt(); at != nil {
		fmt.Fprintf(tw, "Held back:\t%s ago: the breaker kept it from an automatic cordon; navarch cordon %s or navarch release %s\n",
			display.Age(at.AsTime(), now), n.GetNodeId(), n.GetNodeId())
	}
	fmt.Fprintf(tw, "Health:\t%s\t%s\n", display.Health(n.GetHealth()), n.GetHealthCause())
	if r := display.Remedy(n.GetRemedy()); r != "" {
		fmt.Fprintf(tw, "Remedy:\t%s\n", r)
	}
	fmt.Fprintf(tw, "Reachability:\t%s\tlast heartbeat %s ago\n", display.Reachability(n.GetReachability()), display.Age(n.GetLastHeartbeatAt().AsTime(), now))
	fmt.Fprintf(tw, "Driver:\t%s\tCUDA %s\n", display.OrDash(n.GetDriverVersion()), display.OrDash(n.GetCudaVersion()))
	fmt.Fprintf(tw, "Labels:\t%s\n", display.OrDash(display.Labels(n.GetLabels())))
	if n.GetProvider() != "" {
		fmt.Fprintf(tw, "Provider:\t%s\t%s\n", n.GetProvider(), n.GetInstanceId())
	}
	if s := display.Scheduler(n.GetScheduler()); s != "" {
		fmt.Fprintf(tw, "Scheduler:\t%s\n", s)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nGPUs:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  GPU\tHEALTH\tUTIL\tTEMP\tPOWER\tMEMORY\tUUID\tCAUSE")
	for _, g := range n.GetGpus() {
		m := g.GetMetrics()
		health := display.Health(g.GetHealth())
		if g.GetLost() {
			health = "LOST"
		}
		// Without current metrics (a lost GPU, an unreachable node, none
		// reported yet) the figures are "-": a zero would read as measured.
		util, temp, power, used := "-", "-", "-", "-"
		if m != nil && !g.GetLost() && reachable(n) {
			util = fmt.Sprintf("%d%%", m.GetUtilizationGpuPercent())
			temp = fmt.Sprintf("%d°C", m.GetTemperatureCelsius())
			power = fmt.Sprintf("%dW", m.GetPowerUsageMilliwatts()/1000)
			used = display.Bytes(m.GetMemoryUsedBytes())
		}
		total := "-"
		if g.GetMemoryTotalBytes() > 0 {
			total = display.Bytes(g.GetMemoryTotalBytes())
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s/%s\t%s\t%s\n", g.GetIndex(), health, util, temp, power, used, total,
			g.GetUuid(), display.OrDash(g.GetHealthCause()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nEvents (newest first):")
	if err := writeEvents(w, resp.GetEvents(), now, false); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nCommands (newest first):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tTYPE\tSTATUS\tBY\tAGE\tMESSAGE")
	for _, c := range resp.GetCommands() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", c.GetId(), display.CommandType(c.GetType()), display.CommandStatus(c.GetStatus()),
			display.OrDash(c.GetIssuedBy()), display.Age(c.GetUpdatedAt().AsTime(), now), display.OrDash(display.Headline(c.GetMessage())))
	}
	return tw.Flush()
}

// reachable reports whether the node's last report can be shown as current.
func reachable(n *fleetv1.Node) bool {
	r := n.GetReachability()
	return r == fleetv1.Reachability_REACHABILITY_ONLINE || r == fleetv1.Reachability_REACHABILITY_STALE
}

func writeEvents(w io.Writer, evs []*fleetv1.HealthEvent, now time.Time, withNode bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	indent, head := "  ", []string{"AGE", "GPU", "KIND", "HEALTH", "CAUSE", "REMEDY"}
	if withNode {
		indent, head = "", []string{"AGE", "NODE", "GPU", "KIND", "HEALTH", "CAUSE", "REMEDY"}
	}
	fmt.Fprintln(tw, indent+strings.Join(head, "\t"))
	for _, e := range evs {
		cols := []string{display.Age(e.GetTime().AsTime(), now)}
		if withNode {
			cols = append(cols, e.GetNodeId())
		}
		cols = append(cols, display.GPU(e.GetGpuIndex()), display.EventKind(e), display.Health(e.GetHealth()),
			display.OrDash(e.GetCause()), display.OrDash(display.Remedy(e.GetRemedy())))
		fmt.Fprintln(tw, indent+strings.Join(cols, "\t"))
	}
	return tw.Flush()
}

func getEvents(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("get events", cf)
	out := outputFlag(fs)
	node := fs.String("node", "", "`ID` only this node's events")
	minHealth := fs.String("min-health", "", "`HEALTH` only events judged at least this bad: healthy, degraded or unhealthy")
	limit := fs.Uint("limit", 0, "`N` the most events to show; unset, the control plane's default")
	text := fs.String("text", "", "`TEXT` only events whose node id, cause or message contains TEXT, ignoring case")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("get events takes no arguments; use --node ID")
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	req := &controlplanev1.ListEventsRequest{NodeId: *node, Limit: uint32(*limit), Text: *text}
	if *minHealth != "" {
		v, ok := display.ParseHealth(*minHealth)
		if !ok {
			return usagef("--min-health: %q is not healthy, degraded or unhealthy", *minHealth)
		}
		req.MinHealth = v
	}
	var resp *controlplanev1.ListEventsResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.ListEvents(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	if *out == "json" {
		return writeJSON(env.Stdout, resp)
	}
	return writeEvents(env.Stdout, resp.GetEvents(), time.Now(), true)
}

func getStatus(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("get status", cf)
	out := outputFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("get status takes no arguments")
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	var resp *controlplanev1.GetFleetStatusResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
		return err
	})
	if err != nil {
		return err
	}
	if *out == "json" {
		return writeJSON(env.Stdout, resp)
	}
	s := resp.GetSummary()
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Nodes:\t%d\t(%d GPUs)\n", s.GetNodes(), s.GetGpus())
	fmt.Fprintf(tw, "Lifecycle:\t%d active, %d cordoned, %d draining, %d drained, %d provisioning, %d terminating, %d terminated, %d failed\n",
		s.GetActive(), s.GetCordoned(), s.GetDraining(), s.GetDrained(), s.GetProvisioning(), s.GetTerminating(), s.GetTerminated(), s.GetProvisionFailed())
	fmt.Fprintf(tw, "Health:\t%d healthy, %d degraded, %d unhealthy, %d unknown\n", s.GetHealthy(), s.GetDegraded(), s.GetUnhealthy(), s.GetHealthUnknown())
	fmt.Fprintf(tw, "Reachability:\t%d online, %d stale, %d offline, %d not yet heard from\n", s.GetOnline(), s.GetStale(), s.GetOffline(), s.GetReachabilityUnknown())
	fmt.Fprintf(tw, "GPUs:\t%d healthy, %d degraded, %d unhealthy\n", s.GetGpusHealthy(), s.GetGpusDegraded(), s.GetGpusUnhealthy())
	b := resp.GetBreaker()
	switch {
	case !b.GetAutoCordonEnabled():
		fmt.Fprintf(tw, "Auto-cordon:\toff\n")
	case b.GetTripped():
		fmt.Fprintf(tw, "Auto-cordon:\tSUSPENDED: breaker tripped %s ago; %d cordons held back\n", display.Age(b.GetTrippedAt().AsTime(), time.Now()), b.GetSuppressedCordons())
	default:
		fmt.Fprintf(tw, "Auto-cordon:\ton (%d in the last %ds; limit %.0f%% of the fleet)\n", b.GetRecentAutoCordons(), b.GetWindowSeconds(), b.GetMaxFraction()*100)
	}
	if n := s.GetHeldBack(); n > 0 {
		nodes := "nodes"
		if n == 1 {
			nodes = "node"
		}
		fmt.Fprintf(tw, "Held back:\t%d %s the breaker kept from a cordon, waiting for an operator: navarch get nodes --held-back\n", n, nodes)
	}
	var provs []string
	for _, p := range resp.GetProviders() {
		provs = append(provs, p.GetName())
	}
	fmt.Fprintf(tw, "Providers:\t%s\n", display.OrDash(strings.Join(provs, ", ")))
	fmt.Fprintf(tw, "Revision:\t%d\n", resp.GetRevision())
	fmt.Fprintf(tw, "Version:\t%s\n", resp.GetVersion())
	if cps := resp.GetControlPlanes(); cps != nil {
		writeControlPlanes(tw, cps, time.Now())
	}
	return tw.Flush()
}

// writeControlPlanes is the election among the control planes that share
// the fleet through etcd: the leader, which answered, each standby, and
// the last failover.
//
//	Leader:         cp-1:50051  v0.9.0  joined 3h ago
//	Standby:        cp-2:50051  v0.9.0  joined 2h ago
//	Last failover:  cp-0:50051 → cp-1:50051, 5m ago
func writeControlPlanes(w io.Writer, cps *controlplanev1.ControlPlanes, now time.Time) {
	member := func(role string, m *controlplanev1.ControlPlaneMember) {
		joined := "-"
		if m.GetSince() != nil {
			joined = "joined " + display.Age(m.GetSince().AsTime(), now) + " ago"
		}
		fmt.Fprintf(w, "%s:\t%s\t%s\t%s\n", role, m.GetAddress(), display.OrDash(m.GetVersion()), joined)
	}
	leader := &controlplanev1.ControlPlaneMember{Address: cps.GetLeader()}
	var standbys []*controlplanev1.ControlPlaneMember
	for _, m := range cps.GetMembers() {
		if m.GetLeader() || m.GetAddress() == cps.GetLeader() {
			leader = m
		} else {
			standbys = append(standbys, m)
		}
	}
	member("Leader", leader)
	for _, m := range standbys {
		member("Standby", m)
	}
	if len(standbys) == 0 {
		fmt.Fprintf(w, "Standby:\tnone: nothing takes over if the leader stops\n")
	}
	if f := cps.GetLastFailover(); f != nil {
		fmt.Fprintf(w, "Last failover:\t%s → %s, %s ago\n", f.GetFrom(), f.GetTo(), display.Age(f.GetAt().AsTime(), now))
	} else {
		fmt.Fprintf(w, "Last failover:\tnone\n")
	}
}
