package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/pool"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/providertest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// quietPools leaves the pools' passes to the test: the reconciler's own
// interval never comes round, and only a scale or a spec asks for a pass.
func quietPools(c *controlplane.Config) { c.PoolInterval = controlplane.Duration{Duration: time.Hour} }

// decisions counts a pool's decisions of one action that name node, or
// any node where node is "".
func decisions(p *fleetv1.Pool, a fleetv1.PoolAction, node string) int {
	n := 0
	for _, d := range p.GetDecisions() {
		if d.GetAction() == a && (node == "" || slices.Contains(d.GetNodeIds(), node)) {
			n++
		}
	}
	return n
}

// removed lists a pool's nodes being terminated or terminated, sorted.
func (h *harness) removed(pool string) []string {
	h.t.Helper()
	nodes := h.poolNodes(pool)
	return slices.Sorted(slices.Values(append(nodes[terminating], nodes[terminated]...)))
}

// startPool makes a pool through the API, scales it to size and
// registers the nodes it starts; it returns their ids.
func (h *harness) startPool(name string, spec *fleetv1.PoolSpec, size uint32) []string {
	h.t.Helper()
	ctx := ctxT(h.t)
	if _, err := h.ops.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: name, Spec: spec}); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.ops.ScalePool(ctx, &controlplanev1.ScalePoolRequest{Name: name, Wanted: size}); err != nil {
		h.t.Fatal(err)
	}
	// A pass may find the launch asked for by the put under way.
	testutil.Eventually(h.t, fmt.Sprintf("pool %s started %d nodes", name, size), func() bool {
		h.pass()
		return len(h.poolNodes(name)[provisioning]) == int(size)
	})
	ids := h.poolNodes(name)[provisioning]
	for _, id := range ids {
		h.register(id, 2)
		h.healthyReport(id, 2)
	}
	return ids
}

// TestPoolShrinksToAnAutoscaledSizeByIdleNodesAlone: the autoscaler
// lowers a pool of 30 nodes, 20 of them idle, to 5; the pool removes the
// 20 idle ones and, passes later, when those removals fill its latest
// decisions, still none of the busy ones.
func TestPoolShrinksToAnAutoscaledSizeByIdleNodesAlone(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock), withProviders(&providertest.Recorder{}), withConfig(quietPools))
	spec := &fleetv1.PoolSpec{Providers: []string{"test"}, Min: 1, Max: 30, Autoscaling: &fleetv1.Autoscaling{
		Utilization: &fleetv1.UtilizationScaling{
			ScaleUpAbove: 90, ScaleDownBelow: 20, Step: 25,
			Window: durationpb.New(time.Minute), Cooldown: durationpb.New(time.Minute),
		},
	}}
	ids := h.startPool("batch", spec, 30)
	idle, busy := ids[:20], ids[20:]
	beat := func() {
		h.beat(0, idle...)
		h.beat(50, busy...)
	}
	beat()
	h.pass()
	clock.Advance(time.Minute + time.Second)
	beat()
	h.pass()
	if w := h.pool("batch").GetWanted(); w != 5 {
		t.Fatalf("wanted %d, want the autoscaler's 5", w)
	}
	for range 3 {
		clock.Advance(30 * time.Second)
		h.beat(50, busy...)
		h.pass()
	}
	// The idle nodes' agents stopped with their drains: they go OFFLINE,
	// and may be terminated already.
	if got := h.removed("batch"); !slices.Equal(got, slices.Sorted(slices.Values(idle))) {
		t.Fatalf("removed %v, want the 20 idle nodes alone (busy: %v)", got, busy)
	}
	pl := h.pool("batch")
	if decisions(pl, fleetv1.PoolAction_POOL_ACTION_REMOVE, "") != 20 || decisions(pl, fleetv1.PoolAction_POOL_ACTION_SCALE, "") != 0 {
		t.Fatalf("decisions %v, want the 20 removals alone", pl.GetDecisions())
	}
	if pl.GetWantedBy() != pool.ByAutoscaler {
		t.Fatalf("wanted set by %q, want the autoscaler", pl.GetWantedBy())
	}
}

// TestPoolRemovesANodeOncePerPass: a node due for replacement when the
// pool is scaled down is replaced, and the scale-down removes another
// node rather than the same one again.
func TestPoolRemovesANodeOncePerPass(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	h := newHarness(t, withFakeClock(clock), withProviders(&providertest.Recorder{}), withConfig(quietPools))
	spec := &fleetv1.PoolSpec{Providers: []string{"test"}, Min: 1, Max: 3, ReplaceUnhealthy: true, UnhealthyGrace: durationpb.New(time.Minute)}
	ids := h.startPool("train", spec, 3)
	sick := ids[0]
	h.xid(sick, 0, 79)
	h.beat(50, ids...)
	h.pass() // the grace starts
	clock.Advance(time.Minute + time.Second)
	h.beat(50, ids...)
	if _, err := h.ops.ScalePool(ctxT(t), &controlplanev1.ScalePoolRequest{Name: "train", Wanted: 1}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	gone := h.removed("train")
	if len(gone) != 2 || !slices.Contains(gone, sick) {
		t.Fatalf("terminating %v, want %s and one more", gone, sick)
	}
	pl := h.pool("train")
	if decisions(pl, fleetv1.PoolAction_POOL_ACTION_REPLACE, sick) != 1 || decisions(pl, fleetv1.PoolAction_POOL_ACTION_REMOVE, sick) != 0 ||
		decisions(pl, fleetv1.PoolAction_POOL_ACTION_REMOVE, "") != 1 {
		t.Fatalf("decisions %v, want %s replaced once and another node removed", pl.GetDecisions(), sick)
	}
}

// TestPoolReplacementWaitsForSurgeButNotForAStuckNode: with max_surge 1,
// a second node due for replacement waits while the first is replaced,
// and the pool says so once; a node whose instance cannot be stopped
// holds the replacements back no longer than its drain timeout and five
// minutes.
func TestPoolReplacementWaitsForSurgeButNotForAStuckNode(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	p := &providertest.Recorder{}
	p.FailStops(errors.New("the cloud's API is down"))
	off := false
	h := newHarness(t, withFakeClock(clock), withProviders(p), withConfig(func(c *controlplane.Config) {
		quietPools(c)
		c.AutoCordon.Enabled = &off
	}))
	spec := &fleetv1.PoolSpec{
		Providers: []string{"test"}, Min: 3, Max: 3, ReplaceUnhealthy: true, MaxSurge: 1,
		UnhealthyGrace: durationpb.New(time.Minute), DrainTimeout: durationpb.New(time.Minute),
	}
	ids := h.startPool("train", spec, 3)
	h.xid(ids[0], 0, 79)
	h.xid(ids[2], 0, 79)
	h.beat(50, ids...)
	h.pass() // the grace starts
	clock.Advance(time.Minute + time.Second)
	h.beat(50, ids...)
	h.pass()
	gone := h.poolNodes("train")[terminating]
	if len(gone) != 1 {
		t.Fatalf("terminating %v, want one node", gone)
	}
	first, second := gone[0], ids[0]
	if first == ids[0] {
		second = ids[2]
	}
	if !hasDecision(h.pool("train"), fleetv1.PoolAction_POOL_ACTION_HOLD, "replacement waits: 1 node being replaced, max_surge 1") {
		t.Fatalf("no hold decision: %v", h.pool("train").GetDecisions())
	}
	// The replacement comes up; the first node's instance cannot be
	// stopped, so it stays TERMINATING, and the second node waits.
	replacement := h.poolNodes("train")[provisioning]
	if len(replacement) != 1 {
		t.Fatalf("no replacement: %v", h.poolNodes("train"))
	}
	h.register(replacement[0], 2)
	h.healthyReport(replacement[0], 2)
	live := []string{ids[1], second, replacement[0]}
	h.beat(50, live...)
	h.pass()
	holds := decisions(h.pool("train"), fleetv1.PoolAction_POOL_ACTION_HOLD, "")
	h.pass()
	if got := decisions(h.pool("train"), fleetv1.PoolAction_POOL_ACTION_HOLD, ""); got != holds {
		t.Fatalf("%d hold decisions after a pass that changed nothing, %d before: %v", got, holds, h.pool("train").GetDecisions())
	}
	for range 9 {
		clock.Advance(45 * time.Second)
		h.beat(50, live...)
		h.fleet().Tick(ctxT(t))
	}
	if l := h.lifecycle(first); l != terminating {
		t.Fatalf("%s is %s, want stuck TERMINATING", first, l)
	}
	h.pass()
	if l := h.lifecycle(second); l != terminating {
		t.Fatalf("%s is %s: a node stuck past its drain timeout still holds replacements back", second, l)
	}
}

// listGate is the test provider, whose List, once blocked, waits for
// the test's end, as a provider whose API hangs does: the control plane's
// first pass, which comes after the providers' lists, waits with it.
type listGate struct {
	*providertest.Recorder
	blocked *atomic.Bool
}

func (g listGate) List(ctx context.Context) ([]provider.Instance, error) {
	if g.blocked.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return g.Recorder.List(ctx)
}

// snapshotPools opens a watch and returns the pools of its snapshot.
func (h *harness) snapshotPools() []*fleetv1.Pool {
	h.t.Helper()
	w := h.watch(0)
	defer w.cancel()
	m := w.until("the snapshot's last chunk", func(m *controlplanev1.WatchFleetResponse) bool { return m.GetSnapshot().GetComplete() })
	return m.GetSnapshot().GetPools()
}

// TestPoolsReachWatchersBeforeTheFirstPass: after a restart, a watcher
// sees the pools the control plane loaded while its first pass still
// waits for a provider.
func TestPoolsReachWatchersBeforeTheFirstPass(t *testing.T) {
	gate := listGate{Recorder: &providertest.Recorder{}, blocked: new(atomic.Bool)}
	h := newHarness(t, withProviders(gate), withConfig(quietPools))
	if _, err := h.ops.PutPool(ctxT(t), &controlplanev1.PutPoolRequest{Name: "train", Spec: &fleetv1.PoolSpec{Providers: []string{"test"}, Min: 1, Max: 2}}); err != nil {
		t.Fatal(err)
	}
	gate.blocked.Store(true)
	h.restart()
	pools := h.snapshotPools()
	if len(pools) != 1 || pools[0].GetName() != "train" || pools[0].GetWanted() != 1 || pools[0].GetStatus() == nil {
		t.Fatalf("snapshot pools %v, want train", pools)
	}
}

// TestPoolActsOnNodesReadAfterTheSlurmQueue: a node terminated while the
// pass reads a slow Slurm queue is missing from the pool in that same
// pass, which starts its replacement.
func TestPoolActsOnNodesReadAfterTheSlurmQueue(t *testing.T) {
	bin := t.TempDir()
	gate, called := filepath.Join(bin, "gate"), filepath.Join(bin, "called")
	script := fmt.Sprintf("#!/bin/sh\nif [ -e %[1]s ]; then : > %[2]s; while [ -e %[1]s ]; do sleep 0.05; done; fi\n", gate, called)
	if err := os.WriteFile(filepath.Join(bin, "squeue"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, withProviders(&providertest.Recorder{}), withConfig(func(c *controlplane.Config) {
		quietPools(c)
		c.Slurm.Bin = bin
	}))
	ctx := ctxT(t)
	spec := &fleetv1.PoolSpec{Providers: []string{"test"}, Min: 2, Max: 4, Autoscaling: &fleetv1.Autoscaling{Queue: &fleetv1.QueueScaling{Partition: "gpu"}}}
	ids := h.startPool("hpc", spec, 2)
	h.pass()
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Server.Pools().Pass(ctx)
	}()
	testutil.Eventually(t, "the pass reading the queue", func() bool { _, err := os.Stat(called); return err == nil })
	if _, err := h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: ids[0], Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	<-done
	h.Server.Pools().Wait()
	if got := h.poolNodes("hpc")[provisioning]; len(got) != 1 {
		t.Fatalf("pool nodes %v, want a replacement for %s started by the same pass", h.poolNodes("hpc"), ids[0])
	}
}

// gatedCloud is a provider whose next launches, as many as hang says,
// start their instances only once release is closed, as a cloud slow to
// answer does.
type gatedCloud struct {
	release chan struct{}

	mu      sync.Mutex
	hang    int
	calls   int
	running []provider.Instance
}

func (c *gatedCloud) Name() string        { return "cloud" }
func (c *gatedCloud) Description() string { return "a cloud slow to answer" }

func (c *gatedCloud) Provision(ctx context.Context, spec provider.Spec) ([]provider.Instance, error) {
	c.mu.Lock()
	c.calls++
	hang := c.hang > 0
	if hang {
		c.hang--
	}
	var out []provider.Instance
	for _, id := range spec.NodeIDs {
		inst := provider.Instance{NodeID: id, InstanceID: "vm-" + id, Pool: spec.Pool}
		c.running = append(c.running, inst)
		out = append(out, inst)
	}
	c.mu.Unlock()
	if hang {
		select {
		case <-c.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return out, nil
}

func (c *gatedCloud) Terminate(_ context.Context, inst provider.Instance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = slices.DeleteFunc(c.running, func(i provider.Instance) bool { return i.InstanceID == inst.InstanceID })
	return nil
}

func (c *gatedCloud) List(context.Context) ([]provider.Instance, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.running), nil
}

func (c *gatedCloud) hangNext(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hang = n
}

func (c *gatedCloud) launches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// TestPoolLaunchForADeletedPoolJustEnds: a pool deleted and made again
// under the same name while a launch for it is under way keeps its own
// launches' record; the old launch, once it returns, changes nothing.
func TestPoolLaunchForADeletedPoolJustEnds(t *testing.T) {
	cloud := &gatedCloud{release: make(chan struct{}), hang: 1}
	h := newHarness(t, withProviders(cloud), withConfig(quietPools))
	ctx := ctxT(t)
	put := func(size uint32) {
		t.Helper()
		if _, err := h.ops.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: "train", Spec: &fleetv1.PoolSpec{Providers: []string{"cloud"}, Min: size, Max: size}}); err != nil {
			t.Fatal(err)
		}
	}
	put(1)
	testutil.Eventually(t, "the first launch under way", func() bool { return cloud.launches() == 1 })
	old := h.poolNodes("train")[provisioning]
	if len(old) != 1 {
		t.Fatalf("pool nodes %v", h.poolNodes("train"))
	}
	if _, err := h.ops.DeletePool(ctx, &controlplanev1.DeletePoolRequest{Name: "train"}); err != nil {
		t.Fatal(err)
	}
	put(2)
	h.Server.Pools().Pass(ctx)
	testutil.Eventually(t, "the new pool's launch recorded", func() bool {
		return decisions(h.pool("train"), fleetv1.PoolAction_POOL_ACTION_PROVISION, "") == 1
	})
	close(cloud.release)
	h.Server.Pools().Wait()
	pl := h.pool("train")
	if decisions(pl, fleetv1.PoolAction_POOL_ACTION_PROVISION, "") != 1 || decisions(pl, fleetv1.PoolAction_POOL_ACTION_PROVISION, old[0]) != 0 {
		t.Fatalf("decisions %v: the deleted pool's launch of %s was recorded in the new pool", pl.GetDecisions(), old[0])
	}
}

// failingCloud starts every instance and reports each failed at once, as
// a cloud whose instances die while booting does.
type failingCloud struct{ gatedCloud }

func (c *failingCloud) Name() string { return "flaky" }

func (c *failingCloud) Provision(ctx context.Context, spec provider.Spec) ([]provider.Instance, error) {
	out, err := c.gatedCloud.Provision(ctx, spec)
	for _, inst := range out {
		spec.Failed(inst.NodeID, "the instance died while booting")
	}
	return out, err
}

// TestPoolTakesFailedNodesToTheNextProvider: nodes a provider returned
// but failed are not counted as started: the next provider starts them.
func TestPoolTakesFailedNodesToTheNextProvider(t *testing.T) {
	flaky, rec := &failingCloud{}, &providertest.Recorder{}
	h := newHarness(t, withProviders(flaky, rec), withConfig(quietPools))
	if _, err := h.ops.PutPool(ctxT(t), &controlplanev1.PutPoolRequest{Name: "train", Spec: &fleetv1.PoolSpec{Providers: []string{"flaky", "test"}, Min: 1, Max: 1}}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	if s := rec.Spec(); s.Pool != "train" || s.Count != 1 {
		t.Fatalf("the next provider was asked for %+v, want the pool's node", s)
	}
	pl := h.pool("train")
	if !hasDecision(pl, fleetv1.PoolAction_POOL_ACTION_PROVISION, "started 1 of 1 nodes through test") {
		t.Fatalf("decisions %v", pl.GetDecisions())
	}
}

// TestPoolLeavesNodesWhoseLaunchIsUnderWay: scaled down while a launch is
// under way, the pool terminates neither the nodes of the launch, whose
// instances would be lost, nor a running node in their place; it removes
// them once the launch has returned their instances.
func TestPoolLeavesNodesWhoseLaunchIsUnderWay(t *testing.T) {
	cloud := &gatedCloud{release: make(chan struct{})}
	h := newHarness(t, withProviders(cloud), withConfig(quietPools))
	ctx := ctxT(t)
	running := h.startPool("train", &fleetv1.PoolSpec{Providers: []string{"cloud"}, Max: 3}, 1)[0]
	cloud.hangNext(1)
	scale := func(n uint32) {
		t.Helper()
		if _, err := h.ops.ScalePool(ctx, &controlplanev1.ScalePoolRequest{Name: "train", Wanted: n}); err != nil {
			t.Fatal(err)
		}
	}
	scale(3)
	testutil.Eventually(t, "the launch under way", func() bool { return cloud.launches() == 2 })
	launching := h.poolNodes("train")[provisioning]
	if len(launching) != 2 {
		t.Fatalf("pool nodes %v", h.poolNodes("train"))
	}
	scale(1)
	h.Server.Pools().Pass(ctx)
	if got := h.poolNodes("train"); len(got[terminating]) != 0 || !slices.Contains(got[active], running) {
		t.Fatalf("pool nodes %v while the launch is under way, want none terminating", got)
	}
	close(cloud.release)
	h.Server.Pools().Wait()
	h.pass()
	// Not registered, they are stopped without a drain, perhaps already.
	slices.Sort(launching)
	if got := h.removed("train"); !slices.Equal(got, launching) || h.lifecycle(running) != active {
		t.Fatalf("pool nodes %v, want %v removed and %s kept", h.poolNodes("train"), launching, running)
	}
}
