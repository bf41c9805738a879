package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/pool"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// poolConfig is the control plane's configuration file for the pool test:
// short intervals, the local provider's agents steered from a control
// directory, and one pool with replacement and autoscaling on utilisation.
// The breaker allows one automatic cordon in its window.
const poolConfig = `
data_dir: %q
heartbeat_interval: 200ms
health_report_interval: 500ms
command_poll_timeout: 2s
stale_after: 1s
offline_after: 2s
provision_timeout: 2m
pool_interval: 200ms
auto_cordon:
  max_fraction: 0.2
local_provider:
  enabled: true
  agent_binary: %q
  sim_control_dir: %q
pools:
  - name: train
    providers: [local]
    gpus_per_node: 2
    min: 3
    max: 5
    replace_unhealthy: true
    unhealthy_grace: 2s
    max_surge: 1
    drain_timeout: 5s
    autoscaling:
      utilization:
        scale_up_above: 70
        scale_down_below: 20
        window: 2s
        cooldown: 1s
`

// grace is the pool's unhealthy_grace.
const grace = 2 * time.Second

// poolFleet is a control plane whose local provider runs real agent
// processes for a pool, the directory that steers them, and every version
// of every node a WatchFleet stream showed.
type poolFleet struct {
	t    *testing.T
	cp   *cptest.ControlPlane
	bin  string
	sim  string
	seen *nodeHistory
	// started is when the control plane started.
	started time.Time
}

func startPoolFleet(t *testing.T) *poolFleet {
	t.Helper()
	f := &poolFleet{t: t, bin: testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-agent"), sim: t.TempDir()}
	f.started = time.Now()
	// The GPUs hold half load until the test moves them: their own phases
	// would be busy enough to scale the pool up.
	f.steer("50")
	var cfg controlplane.Config
	f.cp = cptest.Start(t, cptest.Options{
		Config: func(c *controlplane.Config) {
			path := filepath.Join(t.TempDir(), "navarch.yaml")
			if err := os.WriteFile(path, fmt.Appendf(nil, poolConfig, c.DataDir, f.bin, f.sim), 0o600); err != nil {
				t.Fatal(err)
			}
			loaded, err := controlplane.LoadConfigFile(path)
			if err != nil {
				t.Fatal(err)
			}
			*c, cfg = loaded, loaded
		},
		// As navarch-controlplane builds them.
		Providers: func(target rpcclient.Target) []provider.Provider {
			return controlplane.Providers(cfg, target.Addr, slog.New(slog.DiscardHandler))
		},
	})
	f.seen = watchNodes(t, f.cp.Ops)
	t.Cleanup(func() {
		if t.Failed() {
			f.report()
		}
	})
	return f
}

// steer writes the utilisation every simulated GPU heads for.
func (f *poolFleet) steer(percent string) {
	f.t.Helper()
	// Written whole and renamed, so an agent never reads half of it.
	tmp := filepath.Join(f.sim, ".utilization")
	if err := os.WriteFile(tmp, []byte(percent+"\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.sim, simnvml.UtilizationFile)); err != nil {
		f.t.Fatal(err)
	}
}

// fault appends a fault to a node's faults file.
func (f *poolFleet) fault(node, spec string) {
	f.t.Helper()
	file, err := os.OpenFile(filepath.Join(f.sim, node+simnvml.FaultsSuffix), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.WriteString(spec + "\n"); err != nil {
		f.t.Fatal(err)
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// nodes lists the pool's nodes by lifecycle.
func (f *poolFleet) nodes() map[fleetv1.LifecycleState][]*fleetv1.Node {
	f.t.Helper()
	resp, err := f.cp.Ops.ListNodes(ctxFor(f.t), &controlplanev1.ListNodesRequest{PageSize: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[fleetv1.LifecycleState][]*fleetv1.Node{}
	for _, n := range resp.GetNodes() {
		if n.GetPool() == "train" {
			out[n.GetLifecycle()] = append(out[n.GetLifecycle()], n)
		}
	}
	return out
}

// serving lists the pool's ACTIVE nodes that are ONLINE, HEALTHY and
// report their GPUs, by id.
// servingOf lists, of nodes read once, the ACTIVE ones that are ONLINE,
// HEALTHY and reporting both GPUs.
func servingOf(nodes map[fleetv1.LifecycleState][]*fleetv1.Node) []string {
	var ids []string
	for _, n := range nodes[active] {
		if n.GetReachability() == fleetv1.Reachability_REACHABILITY_ONLINE &&
			n.GetHealth() == healthy && len(n.GetSamples()) == 2 {
			ids = append(ids, n.GetNodeId())
		}
	}
	slices.Sort(ids)
	return ids
}

// activeIDs lists the pool's ACTIVE nodes, by id.
func (f *poolFleet) activeIDs() []string {
	var ids []string
	for _, n := range f.nodes()[active] {
		ids = append(ids, n.GetNodeId())
	}
	slices.Sort(ids)
	return ids
}

// settled reports whether the pool is n nodes, all serving, and none
// starting or stopping.
func (f *poolFleet) settled(n int) bool {
	f.t.Helper()
	// One read: two could straddle a node's move to TERMINATING.
	all := f.nodes()
	for l, nodes := range all {
		if l != active && l != terminated && len(nodes) > 0 {
			return false
		}
	}
	return len(all[active]) == n && len(servingOf(all)) == n
}

func (f *poolFleet) lifecycle(id string) fleetv1.LifecycleState {
	f.t.Helper()
	resp, err := f.cp.Ops.GetNode(ctxFor(f.t), &controlplanev1.GetNodeRequest{NodeId: id})
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.GetNode().GetLifecycle()
}

func (f *poolFleet) pool() *fleetv1.Pool {
	f.t.Helper()
	resp, err := f.cp.Ops.ListPools(ctxFor(f.t), &controlplanev1.ListPoolsRequest{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, p := range resp.GetPools() {
		if p.GetName() == "train" {
			return p
		}
	}
	f.t.Fatalf("no pool train in %v", resp.GetPools())
	return nil
}

// audit lists the audit entries of one RPC, such as PoolReplace, oldest
// first.
func (f *poolFleet) audit(rpc string) []*controlplanev1.AuditEntry {
	f.t.Helper()
	resp, err := f.cp.Ops.ListAudit(ctxFor(f.t), &controlplanev1.ListAuditRequest{Limit: 1000})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*controlplanev1.AuditEntry
	for _, e := range resp.GetEntries() {
		if e.GetRpc() == rpc {
			out = append(out, e)
		}
	}
	slices.Reverse(out)
	return out
}

// replaced is the decision that replaced a node, or nil.
func (f *poolFleet) replaced(id string) *controlplanev1.AuditEntry {
	f.t.Helper()
	for _, e := range f.audit("PoolReplace") {
		if e.GetNodeId() == id {
			return e
		}
	}
	return nil
}

func (f *poolFleet) breakerOpen() bool {
	f.t.Helper()
	resp, err := f.cp.Ops.GetFleetStatus(ctxFor(f.t), &controlplanev1.GetFleetStatusRequest{})
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.GetBreaker().GetTripped()
}

// waitFor gives real agent processes time on a busy machine.
func (f *poolFleet) waitFor(limit time.Duration, what string, cond func() bool) {
	f.t.Helper()
	testutil.EventuallyWithin(f.t, limit, what, cond)
}

// report logs what the pool and its nodes came to, for a failed test.
func (f *poolFleet) report() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if resp, err := f.cp.Ops.ListPools(ctx, &controlplanev1.ListPoolsRequest{}); err == nil {
		for _, p := range resp.GetPools() {
			f.t.Logf("pool %s wanted %d status %v", p.GetName(), p.GetWanted(), p.GetStatus())
			for _, d := range p.GetDecisions() {
				f.t.Logf("  %s %s by %s: %s %v", d.GetAt().AsTime().Format("15:04:05.000"), d.GetAction(), d.GetBy(), d.GetReason(), d.GetNodeIds())
			}
		}
	}
	if resp, err := f.cp.Ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{PageSize: 1000}); err == nil {
		for _, n := range resp.GetNodes() {
			f.t.Logf("node %s %s %s %s %q samples %v", n.GetNodeId(), n.GetLifecycle(), n.GetReachability(), n.GetHealth(), n.GetLifecycleReason(), n.GetSamples())
		}
	}
}

// agentPID finds the process of the agent the local provider runs for a
// node, by its command line.
func (f *poolFleet) agentPID(node string) int {
	f.t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		f.t.Fatal(err)
	}
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
		if args[0] != f.bin {
			continue
		}
		if i := slices.Index(args, "--node-id"); i >= 0 && i+1 < len(args) && args[i+1] == node {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			return pid
		}
	}
	f.t.Fatalf("no agent process for %s", node)
	return 0
}

// nodeHistory keeps every version of every node a WatchFleet stream shows,
// with when it came.
type nodeHistory struct {
	mu    sync.Mutex
	nodes map[string][]seenNode
}

type seenNode struct {
	at   time.Time
	node *fleetv1.Node
}

func watchNodes(t *testing.T, ops controlplanev1.ControlPlaneServiceClient) *nodeHistory {
	t.Helper()
	h := &nodeHistory{nodes: map[string][]seenNode{}}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := ops.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := stream.Recv()
			if err != nil {
				return
			}
			now := time.Now()
			h.mu.Lock()
			for _, n := range append(msg.GetSnapshot().GetNodes(), msg.GetNodeUpsert()) {
				if n != nil {
					h.nodes[n.GetNodeId()] = append(h.nodes[n.GetNodeId()], seenNode{now, n})
				}
			}
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// first is the first version of a node that cond holds for, and whether
// there is one.
func (h *nodeHistory) first(id string, cond func(*fleetv1.Node) bool) (seenNode, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.nodes[id] {
		if cond(s.node) {
			return s, true
		}
	}
	return seenNode{}, false
}

// drained reports whether the pool drained a node before stopping it: a
// drain it issued, finished.
func (f *poolFleet) drained(id string) bool {
	f.t.Helper()
	resp, err := f.cp.Ops.GetNode(ctxFor(f.t), &controlplanev1.GetNodeRequest{NodeId: id})
	if err != nil {
		f.t.Fatal(err)
	}
	return slices.ContainsFunc(resp.GetCommands(), func(c *fleetv1.Command) bool {
		return c.GetType() == fleetv1.CommandType_COMMAND_TYPE_DRAIN && c.GetIssuedBy() == "pool/train" &&
			c.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
	})
}

func terminatingWithDrain(n *fleetv1.Node) bool {
	return n.GetLifecycle() == fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING && n.GetDrain() != nil
}

// idle is what the pool takes for a node running nothing: no GPU process,
// every GPU under 10%.
func idle(n *fleetv1.Node) bool {
	if len(n.GetSamples()) == 0 {
		return false
	}
	for _, s := range n.GetSamples() {
		if s.GetProcessCount() > 0 || s.GetUtilizationGpuPercent() >= 10 {
			return false
		}
	}
	return true
}

func names(entries []*controlplanev1.AuditEntry) []string {
	var out []string
	for _, e := range entries {
		out = append(out, e.GetNodeId())
	}
	return out
}

const (
	terminated  = fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED
	terminating = fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING
)

// TestPoolOnLocalAgents runs a pool of real agent processes on the local
// provider, configured in the control plane's configuration file, and
// breaks and loads it through the agents' control directory: the pool
// comes up to its min; a node whose agent is killed for good is replaced;
// an UNHEALTHY node is drained and replaced after the grace; high
// utilisation scales it up to its max and low utilisation back down to
// its min, removing idle nodes, drained; with the auto-cordon breaker open
// nothing is replaced.
func TestPoolOnLocalAgents(t *testing.T) {
	f := startPoolFleet(t)

	// The pool comes up to its min.
	f.waitFor(60*time.Second, "the pool's 3 nodes ACTIVE and reporting", func() bool { return f.settled(3) })
	if st := f.pool().GetStatus(); st.GetNodes() != 3 || st.GetHealthy() != 3 {
		t.Fatalf("pool status %v", st)
	}
	t.Logf("up to 3 in %s", time.Since(f.started).Round(time.Millisecond))

	// An agent killed for good: its node goes OFFLINE, is terminated
	// past the grace and replaced.
	step := time.Now()
	live := f.activeIDs()
	dead := live[0]
	if err := syscall.Kill(f.agentPID(dead), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f.waitFor(60*time.Second, "the killed agent's node TERMINATED and replaced", func() bool {
		return f.lifecycle(dead) == terminated && f.settled(3)
	})
	if e := f.replaced(dead); e == nil || !strings.Contains(e.GetReason(), "OFFLINE") || e.GetWho() != pool.ByReconciler {
		t.Fatalf("replace decisions %v, want the reconciler's naming %s OFFLINE", f.audit("PoolReplace"), dead)
	}
	t.Logf("killed agent replaced in %s", time.Since(step).Round(time.Millisecond))

	// An UNHEALTHY node: cordoned by policy, then past the grace drained
	// and replaced.
	step = time.Now()
	sick := f.activeIDs()[0]
	f.fault(sick, "xid=79@gpu0+0s")
	f.waitFor(60*time.Second, "the UNHEALTHY node TERMINATED and replaced", func() bool {
		return f.lifecycle(sick) == terminated && f.settled(3)
	})
	bad, ok := f.seen.first(sick, func(n *fleetv1.Node) bool { return n.GetHealth() == unhealthy })
	if !ok {
		t.Fatalf("%s never seen UNHEALTHY", sick)
	}
	if _, ok := f.seen.first(sick, terminatingWithDrain); !ok || !f.drained(sick) {
		t.Fatalf("%s was not drained before it was terminated", sick)
	}
	e := f.replaced(sick)
	if e == nil || !strings.Contains(e.GetReason(), "UNHEALTHY") {
		t.Fatalf("replace decisions %v, want one naming %s UNHEALTHY", f.audit("PoolReplace"), sick)
	}
	// The watch saw the node UNHEALTHY a little after it was.
	if wait := e.GetTime().AsTime().Sub(bad.at); wait < grace-500*time.Millisecond {
		t.Fatalf("%s replaced %s after it turned UNHEALTHY, within the grace of %s", sick, wait, grace)
	}
	t.Logf("UNHEALTHY node replaced in %s", time.Since(step).Round(time.Millisecond))

	// High utilisation scales the pool up to its max, one step at a time.
	step = time.Now()
	f.steer("95")
	f.waitFor(90*time.Second, "the pool scaled up to 5 serving nodes", func() bool {
		return f.pool().GetWanted() == 5 && f.settled(5)
	})
	scaled := f.audit("PoolScale")
	if len(scaled) != 2 || !strings.Contains(scaled[0].GetReason(), "3 → 4") || !strings.Contains(scaled[1].GetReason(), "4 → 5") {
		t.Fatalf("scale decisions %v, want 3 → 4 → 5", scaled)
	}
	for _, e := range scaled {
		if e.GetWho() != pool.ByAutoscaler || !strings.Contains(e.GetReason(), "above 70%") {
			t.Fatalf("scale decision %v, want the autoscaler's for utilisation above 70%%", e)
		}
	}
	if removed := f.audit("PoolRemove"); len(removed) != 0 {
		t.Fatalf("nodes removed while the pool grew: %v", names(removed))
	}
	t.Logf("scaled up to 5 in %s", time.Since(step).Round(time.Millisecond))

	// Low utilisation scales it back down to its min, removing idle
	// nodes, each drained first.
	step = time.Now()
	before := f.activeIDs()
	f.steer("0")
	f.waitFor(90*time.Second, "the pool scaled down to 3 serving nodes", func() bool {
		return f.pool().GetWanted() == 3 && f.settled(3)
	})
	scaled = f.audit("PoolScale")
	if len(scaled) != 4 || !strings.Contains(scaled[2].GetReason(), "5 → 4") || !strings.Contains(scaled[3].GetReason(), "4 → 3") ||
		scaled[3].GetWho() != pool.ByAutoscaler || !strings.Contains(scaled[3].GetReason(), "below 20%") {
		t.Fatalf("scale decisions %v, want the autoscaler's 5 → 4 → 3 for utilisation below 20%%", scaled)
	}
	removed := names(f.audit("PoolRemove"))
	var gone []string
	for _, id := range before {
		if f.lifecycle(id) == terminated {
			gone = append(gone, id)
		}
	}
	slices.Sort(removed)
	if len(removed) != 2 || !slices.Equal(removed, gone) {
		t.Fatalf("remove decisions name %v; the nodes gone are %v", removed, gone)
	}
	for _, id := range removed {
		s, ok := f.seen.first(id, terminatingWithDrain)
		if !ok {
			t.Fatalf("removed node %s was not drained first", id)
		}
		if !idle(s.node) {
			t.Fatalf("removed node %s was busy when the pool removed it: %v", id, s.node.GetSamples())
		}
		if !f.drained(id) {
			t.Fatalf("removed node %s's drain did not finish", id)
		}
	}
	t.Logf("scaled down to 3 in %s", time.Since(step).Round(time.Millisecond))

	// Two nodes UNHEALTHY at once trip the breaker, which allowed the one
	// automatic cordon of its window already: the pool replaces neither,
	// starts nothing, and says why.
	step = time.Now()
	f.waitFor(30*time.Second, "3 nodes serving", func() bool { return f.settled(3) })
	live = f.activeIDs()
	replacements := len(f.audit("PoolReplace"))
	known := map[string]bool{}
	for _, ns := range f.nodes() {
		for _, n := range ns {
			known[n.GetNodeId()] = true
		}
	}
	sickNow := live[:2]
	for _, id := range sickNow {
		f.fault(id, "xid=79@gpu0+0s")
	}
	f.waitFor(30*time.Second, "both nodes UNHEALTHY and the breaker open", func() bool {
		for _, ns := range f.nodes() {
			for _, n := range ns {
				if slices.Contains(sickNow, n.GetNodeId()) && n.GetHealth() != unhealthy {
					return false
				}
			}
		}
		return f.breakerOpen()
	})
	// Past the grace, and five passes more.
	time.Sleep(grace + time.Second)
	if !f.breakerOpen() {
		t.Fatal("the breaker closed during the test")
	}
	if n := len(f.audit("PoolReplace")); n != replacements {
		t.Fatalf("%d replace decisions with the breaker open, %d before it opened", n, replacements)
	}
	for _, ns := range f.nodes() {
		for _, n := range ns {
			if !known[n.GetNodeId()] {
				t.Fatalf("new node %s started with the breaker open", n.GetNodeId())
			}
		}
	}
	for _, id := range sickNow {
		if l := f.lifecycle(id); l == terminating || l == terminated {
			t.Fatalf("%s is %s with the breaker open", id, l)
		}
	}
	if hold := f.audit("PoolHold"); len(hold) == 0 || !strings.Contains(hold[len(hold)-1].GetReason(), "breaker is open") {
		t.Fatalf("hold decisions %v, want one saying the breaker is open", hold)
	}
	t.Logf("held with the breaker open for %s; since the start %s", time.Since(step).Round(time.Millisecond), time.Since(f.started).Round(time.Millisecond))
}
