package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The pool commands: 'get pools' and 'get pool' read the pools; 'pool
// scale', 'pool put' and 'pool delete' change them. A pool's limits (its
// min and max, what a spec may hold) are the control plane's to judge.

func runPool(ctx context.Context, cf *connFlags, args []string, env Env) error {
	if len(args) == 0 {
		return within("pool", usagef("pool needs what to do: scale, put or delete"))
	}
	what, args := args[0], args[1:]
	var err error
	switch what {
	case "-h", "-help", "--help":
		return helpError{groupUsage("pool", "ACTION")}
	case "scale":
		err = scalePool(ctx, cf, args, env)
	case "put":
		err = putPool(ctx, cf, args, env)
	case "delete":
		err = deletePool(ctx, cf, args, env)
	default:
		return within("pool", usagef("pool: unknown action %q (scale, put, delete)", what))
	}
	return within("pool "+what, err)
}

// listPools asks for every pool.
func listPools(ctx context.Context, cf *connFlags) (*controlplanev1.ListPoolsResponse, error) {
	var resp *controlplanev1.ListPoolsResponse
	err := call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.ListPools(ctx, &controlplanev1.ListPoolsRequest{})
		return err
	})
	return resp, err
}

func getPools(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("get pools", cf)
	out := outputFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("get pools takes no arguments; did you mean 'get pool %s'?", pos[0])
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	resp, err := listPools(ctx, cf)
	if err != nil {
		return err
	}
	if *out == "json" {
		return writeJSON(env.Stdout, resp)
	}
	return writePools(env.Stdout, resp.GetPools(), time.Now())
}

// writePools is the table of 'get pools'.
func writePools(w io.Writer, pools []*fleetv1.Pool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPROVIDERS\tSIZE\tWANTED\tMIN\tMAX\tPROVISIONING\tUNHEALTHY\tAUTOSCALE\tLAST-DECISION")
	for _, p := range pools {
		s, spec := p.GetStatus(), p.GetSpec()
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", p.GetName(), display.OrDash(strings.Join(spec.GetProviders(), ",")),
			s.GetNodes(), p.GetWanted(), spec.GetMin(), spec.GetMax(), s.GetProvisioning(), s.GetUnhealthy(),
			onOff(spec.GetAutoscaling() != nil), lastDecision(p, now))
	}
	return tw.Flush()
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// lastDecision is a pool's latest decision on one line: "scale 5m ago:
// mean utilisation 86% above 80%"; "-" for none.
func lastDecision(p *fleetv1.Pool, now time.Time) string {
	ds := p.GetDecisions()
	if len(ds) == 0 {
		return "-"
	}
	d := ds[0]
	return fmt.Sprintf("%s %s ago: %s", strings.ToLower(display.PoolAction(d.GetAction())), display.Age(d.GetAt().AsTime(), now), display.FirstLine(d.GetReason()))
}

func getPool(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("get pool", cf)
	out := outputFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("get pool needs exactly one pool name")
	}
	if err := checkOutput(*out); err != nil {
		return err
	}
	resp, err := listPools(ctx, cf)
	if err != nil {
		return err
	}
	var pool *fleetv1.Pool
	for _, p := range resp.GetPools() {
		if p.GetName() == pos[0] {
			pool = p
		}
	}
	if pool == nil {
		return notFoundError{fmt.Sprintf("no pool %q ('navarch get pools' lists them)", pos[0])}
	}
	if *out == "json" {
		return writeJSON(env.Stdout, pool)
	}
	return writePool(env.Stdout, pool, time.Now())
}

// writePool is the text of 'get pool': its spec, its status and its
// decisions. A value the spec leaves unset is the control plane's (or
// the provider's) default, said as such rather than guessed.
func writePool(w io.Writer, p *fleetv1.Pool, now time.Time) error {
	s, spec := p.GetStatus(), p.GetSpec()
	orDefault := func(v, whose string) string {
		if v == "" {
			return "the " + whose + "'s default"
		}
		return v
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Pool:\t%s\n", p.GetName())
	source := "the API: 'navarch pool put' changes it, 'navarch pool delete' forgets it"
	if p.GetFromConfig() {
		source = "the configuration file: the API may scale it, not change or delete it"
	}
	fmt.Fprintf(tw, "Defined in:\t%s\n", source)
	fmt.Fprintf(tw, "Providers:\t%s\n", display.OrDash(strings.Join(spec.GetProviders(), ", then ")))
	size := fmt.Sprintf("%d nodes, %d wanted (min %d, max %d)", s.GetNodes(), p.GetWanted(), spec.GetMin(), spec.GetMax())
	if at := p.GetWantedChangedAt(); at != nil {
		size += "; wanted since " + display.Age(at.AsTime(), now) + " ago"
	}
	fmt.Fprintf(tw, "Size:\t%s\n", size)
	fmt.Fprintf(tw, "Nodes:\t%d healthy, %d degraded, %d unhealthy; %d provisioning, %d offline, %d removing\n",
		s.GetHealthy(), s.GetDegraded(), s.GetUnhealthy(), s.GetProvisioning(), s.GetOffline(), s.GetRemoving())
	util := "-"
	if s.GetNodes() > 0 {
		util = fmt.Sprintf("%.0f%%", s.GetUtilization())
	}
	fmt.Fprintf(tw, "Utilisation:\t%s\n", util)
	fmt.Fprintf(tw, "Instance type:\t%s\n", orDefault(spec.GetInstanceType(), "provider"))
	gpus := ""
	if g := spec.GetGpusPerNode(); g > 0 {
		gpus = strconv.Itoa(int(g))
	}
	fmt.Fprintf(tw, "GPUs per node:\t%s\n", orDefault(gpus, "provider"))
	fmt.Fprintf(tw, "Region:\t%s\n", orDefault(spec.GetRegion(), "provider"))
	fmt.Fprintf(tw, "Zones:\t%s\n", orDefault(strings.Join(spec.GetZones(), ", then "), "provider"))
	fmt.Fprintf(tw, "Labels:\t%s\n", display.OrDash(display.Labels(spec.GetLabels())))
	replace := "off"
	if spec.GetReplaceUnhealthy() {
		replace = "nodes UNHEALTHY or OFFLINE past " + orDefault(durationText(spec.GetUnhealthyGrace().AsDuration()), "control plane") + ", drained first"
	}
	fmt.Fprintf(tw, "Replace:\t%s\n", replace)
	surge := ""
	if n := spec.GetMaxSurge(); n > 0 {
		surge = fmt.Sprintf("%d nodes at once", n)
	}
	fmt.Fprintf(tw, "Max surge:\t%s\n", orDefault(surge, "control plane"))
	fmt.Fprintf(tw, "Drain timeout:\t%s\n", orDefault(durationText(spec.GetDrainTimeout().AsDuration()), "control plane"))
	fmt.Fprintf(tw, "Autoscaling:\t%s\n", autoscalingText(spec.GetAutoscaling(), orDefault))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nDecisions (newest first):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  AGE\tACTION\tBY\tNODES\tREASON")
	for _, d := range p.GetDecisions() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", display.Age(d.GetAt().AsTime(), now), display.PoolAction(d.GetAction()), display.OrDash(d.GetBy()),
			display.OrDash(strings.Join(d.GetNodeIds(), ",")), display.Headline(d.GetReason()))
	}
	return tw.Flush()
}

// durationText is a duration as an operator writes one; "" for none.
func durationText(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return display.Duration(d)
}

// autoscalingText says how a pool scales itself, each source on a line
// of its own.
func autoscalingText(a *fleetv1.Autoscaling, orDefault func(v, whose string) string) string {
	if a == nil {
		return "off"
	}
	var lines []string
	if u := a.GetUtilization(); u != nil {
		step := ""
		if u.GetStep() > 0 {
			step = strconv.Itoa(int(u.GetStep()))
		}
		lines = append(lines, fmt.Sprintf("utilisation: up above %g%%, down below %g%%, over %s, cooldown %s, step %s",
			u.GetScaleUpAbove(), u.GetScaleDownBelow(), orDefault(durationText(u.GetWindow().AsDuration()), "control plane"),
			orDefault(durationText(u.GetCooldown().AsDuration()), "control plane"), orDefault(step, "control plane")))
	}
	for _, s := range a.GetSchedules() {
		lines = append(lines, fmt.Sprintf("schedule: %d nodes from %q (%s) for %s", s.GetSize(), s.GetCron(),
			display.OrDash(s.GetTimeZone()), display.OrDash(durationText(s.GetDuration().AsDuration()))))
	}
	if q := a.GetQueue(); q != nil {
		lines = append(lines, "queue: the Slurm jobs pending for partition "+q.GetPartition())
	}
	if len(lines) == 0 {
		return "on, with no source set"
	}
	return strings.Join(lines, "\n\t")
}

// sizeFlag is --to: a pool's wanted size, which must be given.
type sizeFlag struct {
	n   uint32
	set bool
}

func (s *sizeFlag) String() string {
	if !s.set {
		return ""
	}
	return strconv.FormatUint(uint64(s.n), 10)
}

func (s *sizeFlag) Set(v string) error {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return errors.New("not a number of nodes such as 0 or 4")
	}
	s.n, s.set = uint32(n), true
	return nil
}

func scalePool(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("pool scale", cf)
	var to sizeFlag
	fs.Var(&to, "to", "`N` the number of nodes to keep the pool at, within its min and max; required")
	reason := fs.String("reason", "", "`TEXT` why; recorded with the pool's decision")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("pool scale needs exactly one pool name")
	}
	if !to.set {
		return usagef("pool scale needs --to N, the number of nodes to keep the pool at")
	}
	var resp *controlplanev1.ScalePoolResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.ScalePool(ctx, &controlplanev1.ScalePoolRequest{Name: pos[0], Wanted: to.n, Reason: *reason})
		return err
	})
	if err != nil {
		return err
	}
	p := resp.GetPool()
	fmt.Fprintf(env.Stdout, "pool %s: wanted %d (min %d, max %d); %d nodes now\n", p.GetName(), p.GetWanted(),
		p.GetSpec().GetMin(), p.GetSpec().GetMax(), p.GetStatus().GetNodes())
	return nil
}

func putPool(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("pool put", cf)
	const file = "`FILE` the pool's spec, YAML or JSON, its fields named as in the API (providers, min, max, ...); - reads stdin; required"
	path := fs.String("f", "", file)
	fs.StringVar(path, "file", "", file)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("pool put needs exactly one pool name")
	}
	if *path == "" {
		return usagef("pool put needs -f FILE, the pool's spec")
	}
	spec, err := readPoolSpec(*path, env.Stdin)
	if err != nil {
		return err
	}
	var resp *controlplanev1.PutPoolResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: pos[0], Spec: spec})
		return err
	})
	if err != nil {
		return err
	}
	p, done := resp.GetPool(), "updated"
	if resp.GetCreated() {
		done = "created"
	}
	fmt.Fprintf(env.Stdout, "pool %s %s: wanted %d (min %d, max %d)\n", p.GetName(), done, p.GetWanted(), p.GetSpec().GetMin(), p.GetSpec().GetMax())
	return nil
}

func deletePool(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("pool delete", cf)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("pool delete needs exactly one pool name")
	}
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) error {
		_, err := c.DeletePool(ctx, &controlplanev1.DeletePoolRequest{Name: pos[0]})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "pool %s deleted; its nodes stay, kept by no pool ('navarch terminate' stops them)\n", pos[0])
	return nil
}

// runPowerCycle power-cycles a node's machine through its provider, for a
// node whose agent went silent.
func runPowerCycle(ctx context.Context, cf *connFlags, args []string, env Env) error {
	fs := flagSet("power-cycle", cf)
	reason := fs.String("reason", "", "`TEXT` why; recorded in the audit log")
	force := fs.Bool("force", false, "power-cycle a node whose agent is not OFFLINE; whatever runs on it dies")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("power-cycle needs exactly one node id")
	}
	id := pos[0]
	var resp *controlplanev1.PowerCycleNodeResponse
	err = call(ctx, cf, callTimeout, func(ctx context.Context, c controlplanev1.ControlPlaneServiceClient) (err error) {
		resp, err = c.PowerCycleNode(ctx, &controlplanev1.PowerCycleNodeRequest{NodeId: id, Reason: *reason, Force: *force})
		return err
	})
	if err != nil {
		return nodeFailure(id, err)
	}
	n := resp.GetNode()
	fmt.Fprintf(env.Stdout, "%s: power cycle asked of its provider; it is %s, %s\n", id, display.Lifecycle(n.GetLifecycle()), display.Reachability(n.GetReachability()))
	return nil
}
