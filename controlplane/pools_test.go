package controlplane_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/providertest"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// poolNodes lists a pool's nodes by lifecycle.
func (h *harness) poolNodes(pool string) map[fleetv1.LifecycleState][]string {
	h.t.Helper()
	out := map[fleetv1.LifecycleState][]string{}
	resp, err := h.ops.ListNodes(ctxT(h.t), &controlplanev1.ListNodesRequest{PageSize: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, n := range resp.GetNodes() {
		if n.GetPool() == pool {
			out[n.GetLifecycle()] = append(out[n.GetLifecycle()], n.GetNodeId())
		}
	}
	return out
}

// pass runs one pass of the pools and waits for the launches it started.
func (h *harness) pass() {
	h.t.Helper()
	h.Server.Pools().Pass(ctxT(h.t))
	h.Server.Pools().Wait()
}

// beat heartbeats nodes with utilisation util on each of their GPUs.
func (h *harness) beat(util uint32, ids ...string) {
	h.t.Helper()
	for _, id := range ids {
		var samples []*fleetv1.GpuSample
		for i := range 2 {
			samples = append(samples, &fleetv1.GpuSample{GpuIndex: uint32(i), UtilizationGpuPercent: util})
		}
		if _, err := h.node.Heartbeat(ctxT(h.t), &nodev1.HeartbeatRequest{NodeId: id, Samples: samples}); err != nil {
			h.t.Fatalf("heartbeat %s: %v", id, err)
		}
	}
}

func (h *harness) pool(name string) *fleetv1.Pool {
	h.t.Helper()
	resp, err := h.ops.ListPools(ctxT(h.t), &controlplanev1.ListPoolsRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	for _, p := range resp.GetPools() {
		if p.GetName() == name {
			return p
		}
	}
	h.t.Fatalf("no pool %s in %v", name, resp.GetPools())
	return nil
}

func hasDecision(p *fleetv1.Pool, a fleetv1.PoolAction, text string) bool {
	return slices.ContainsFunc(p.GetDecisions(), func(d *fleetv1.PoolDecision) bool {
		return d.GetAction() == a && strings.Contains(d.GetReason(), text)
	})
}

// TestPoolKeepsItsSizeAndReplacesFailedNodes: a pool comes up to its min;
// scaling adds a node; a node whose agent fell silent past the grace is
// replaced, and so is an UNHEALTHY one, drained first; while the
// auto-cordon breaker is open nothing is replaced; every decision is in
// the pool and the audit log.
func TestPoolKeepsItsSizeAndReplacesFailedNodes(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	p := &providertest.Recorder{}
	h := newHarness(t, withFakeClock(clock), withProviders(p), withConfig(func(c *controlplane.Config) {
		c.AutoCordon.MaxFraction = 0.4
	}))
	ctx := ctxT(t)
	spec := &fleetv1.PoolSpec{
		Providers: []string{"test"}, Min: 3, Max: 6, Labels: map[string]string{"team": "ml"},
		ReplaceUnhealthy: true, UnhealthyGrace: durationpb.New(time.Minute), MaxSurge: 1,
	}
	put, err := h.ops.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: "train", Spec: spec})
	if err != nil || !put.GetCreated() || put.GetPool().GetWanted() != 3 {
		t.Fatalf("put: %v %v", put, err)
	}
	h.pass()
	nodes := h.poolNodes("train")
	if got := nodes[provisioning]; len(got) != 3 || !strings.HasPrefix(got[0], "train-") {
		t.Fatalf("pool nodes %v", nodes)
	}
	if s := p.Spec(); s.Pool != "train" || s.Labels["team"] != "ml" {
		t.Fatalf("provider asked for %+v", s)
	}
	// The agents register.
	ids := nodes[provisioning]
	for i, id := range ids {
		if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: fleettest.GPUs(2), InstanceId: "i-" + string(rune('1'+i))}); err != nil {
			t.Fatal(err)
		}
		h.healthyReport(id, 2)
	}
	h.beat(50, ids...)
	h.pass()
	if got := h.poolNodes("train"); len(got[active]) != 3 || len(got[provisioning]) != 0 {
		t.Fatalf("after registering: %v", got)
	}
	if st := h.pool("train").GetStatus(); st.GetNodes() != 3 || st.GetHealthy() != 3 || st.GetUtilization() != 50 {
		t.Fatalf("status %v", st)
	}

	// Scaling to 4 starts one more; out of bounds is refused.
	_, err = h.ops.ScalePool(ctx, &controlplanev1.ScalePoolRequest{Name: "train", Wanted: 7})
	wantCode(t, err, codes.InvalidArgument, "wanted")
	_, err = h.ops.ScalePool(ctx, &controlplanev1.ScalePoolRequest{Name: "nope", Wanted: 1})
	wantCode(t, err, codes.NotFound, "name")
	if _, err := h.ops.ScalePool(ctx, &controlplanev1.ScalePoolRequest{Name: "train", Wanted: 4, Reason: "more jobs"}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	fourth := h.poolNodes("train")[provisioning]
	if len(fourth) != 1 {
		t.Fatalf("after scaling: %v", h.poolNodes("train"))
	}
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: fourth[0], Gpus: fleettest.GPUs(2)}); err != nil {
		t.Fatal(err)
	}
	h.healthyReport(fourth[0], 2)
	ids = append(ids, fourth[0])

	// ids[0]'s agent dies for good: past OFFLINE and the grace, it is
	// replaced.
	silent, rest := ids[0], ids[1:]
	for range 4 {
		clock.Advance(h.cfg.OfflineAfter.Duration / 2)
		h.beat(50, rest...)
		h.fleet().Tick(ctx)
		h.pass()
	}
	clock.Advance(time.Minute)
	h.beat(50, rest...)
	h.fleet().Tick(ctx)
	h.pass()
	testutil.Eventually(t, "the silent node terminated", func() bool { return h.lifecycle(silent) == terminated })
	h.pass()
	if got := h.poolNodes("train"); len(got[provisioning]) != 1 || len(got[active]) != 3 {
		t.Fatalf("after the silent node: %v", got)
	}
	if pl := h.pool("train"); !hasDecision(pl, fleetv1.PoolAction_POOL_ACTION_REPLACE, "OFFLINE") ||
		!hasDecision(pl, fleetv1.PoolAction_POOL_ACTION_SCALE, "more jobs") {
		t.Fatalf("decisions %v", pl.GetDecisions())
	}
	replacement := h.poolNodes("train")[provisioning][0]
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: replacement, Gpus: fleettest.GPUs(2)}); err != nil {
		t.Fatal(err)
	}
	h.healthyReport(replacement, 2)
	live := append(slices.Clone(rest), replacement)

	// An UNHEALTHY node past the grace is drained, then terminated, and
	// replaced.
	sick := live[0]
	h.xid(sick, 0, 79)
	h.pass()
	if h.lifecycle(sick) == terminating {
		t.Fatal("replaced before the grace")
	}
	clock.Advance(time.Minute + time.Second)
	h.beat(50, live...)
	h.pass()
	d := h.get(sick)
	if d.GetNode().GetLifecycle() != terminating || d.GetNode().GetDrain() == nil {
		t.Fatalf("unhealthy node is %s, drain %v", d.GetNode().GetLifecycle(), d.GetNode().GetDrain())
	}
	if got := h.poolNodes("train"); len(got[provisioning]) != 1 {
		t.Fatalf("no replacement for the unhealthy node: %v", got)
	}
	audit, err := h.ops.ListAudit(ctx, &controlplanev1.ListAuditRequest{NodeId: sick})
	if err != nil || !slices.ContainsFunc(audit.GetEntries(), func(e *controlplanev1.AuditEntry) bool {
		return e.GetRpc() == "PoolReplace" && strings.Contains(e.GetReason(), "UNHEALTHY")
	}) {
		t.Fatalf("audit %v %v", audit, err)
	}

	// Two more nodes go UNHEALTHY at once: the breaker trips, and the
	// pool replaces nothing while it is open.
	for _, id := range live[1:3] {
		h.xid(id, 0, 79)
	}
	testutil.Eventually(t, "breaker open", func() bool { return h.fleet().BreakerOpen() })
	h.pass() // the grace starts
	clock.Advance(2 * time.Minute)
	h.beat(50, live...)
	h.pass()
	for _, id := range live[1:3] {
		if l := h.lifecycle(id); l == terminating || l == terminated {
			t.Fatalf("%s replaced while the breaker is open", id)
		}
	}
	for _, inst := range p.Stopped() {
		if slices.Contains(live[1:3], inst.NodeID) {
			t.Fatalf("%s's instance was stopped while the breaker is open", inst.NodeID)
		}
	}
	if !hasDecision(h.pool("train"), fleetv1.PoolAction_POOL_ACTION_HOLD, "breaker is open") {
		t.Fatalf("no hold decision: %v", h.pool("train").GetDecisions())
	}
}

// TestPoolAPIRefusesBadPools: PutPool refuses what would not work, naming
// the field, and DeletePool forgets a pool but leaves its nodes.
func TestPoolAPIRefusesBadPools(t *testing.T) {
	p := &providertest.Recorder{}
	h := newHarness(t, withProviders(p))
	ctx := ctxT(t)
	good := func() *fleetv1.PoolSpec { return &fleetv1.PoolSpec{Providers: []string{"test"}, Min: 1, Max: 2} }
	tests := []struct {
		name  string
		pool  string
		spec  func(s *fleetv1.PoolSpec)
		field string
	}{
		{"bad-name", "Train", nil, "name"},
		{"no-providers", "a", func(s *fleetv1.PoolSpec) { s.Providers = nil }, "spec.providers"},
		{"unknown-provider", "a", func(s *fleetv1.PoolSpec) { s.Providers = []string{"aws"} }, "spec.providers[0]"},
		{"min-above-max", "a", func(s *fleetv1.PoolSpec) { s.Min = 3 }, "spec.min"},
		{"no-max", "a", func(s *fleetv1.PoolSpec) { s.Min, s.Max = 0, 0 }, "spec.max"},
		{"bad-label", "a", func(s *fleetv1.PoolSpec) { s.Labels = map[string]string{"k": "a=b"} }, "spec.labels[k]"},
		{"bad-cron", "a", func(s *fleetv1.PoolSpec) {
			s.Autoscaling = &fleetv1.Autoscaling{Schedules: []*fleetv1.ScheduledScaling{{Cron: "every day", Size: 1, Duration: durationpb.New(time.Hour)}}}
		}, "spec.autoscaling"},
		{"thresholds-crossed", "a", func(s *fleetv1.PoolSpec) {
			s.Autoscaling = &fleetv1.Autoscaling{Utilization: &fleetv1.UtilizationScaling{ScaleUpAbove: 20, ScaleDownBelow: 80}}
		}, "spec.autoscaling"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good()
			if tt.spec != nil {
				tt.spec(s)
			}
			_, err := h.ops.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: tt.pool, Spec: s})
			wantCode(t, err, codes.InvalidArgument, tt.field)
		})
	}
	if _, err := h.ops.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: "infer", Spec: good()}); err != nil {
		t.Fatal(err)
	}
	h.pass()
	if got := h.poolNodes("infer")[provisioning]; len(got) != 1 {
		t.Fatalf("pool nodes %v", got)
	}
	// A second put keeps the wanted size within the new bounds.
	bigger := good()
	bigger.Min, bigger.Max = 2, 4
	put, err := h.ops.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: "infer", Spec: bigger})
	if err != nil || put.GetCreated() || put.GetPool().GetWanted() != 2 {
		t.Fatalf("replace: %v %v", put, err)
	}
	if _, err := h.ops.DeletePool(ctx, &controlplanev1.DeletePoolRequest{Name: "infer"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.ops.DeletePool(ctx, &controlplanev1.DeletePoolRequest{Name: "infer"})
	wantCode(t, err, codes.NotFound, "name")
	if got := h.poolNodes("infer")[provisioning]; len(got) < 1 {
		t.Fatal("deleting the pool took its nodes")
	}
	// The pools survive a restart: none is left.
	h.restart()
	if resp, err := h.ops.ListPools(ctxT(t), &controlplanev1.ListPoolsRequest{}); err != nil || len(resp.GetPools()) != 0 {
		t.Fatalf("after restart: %v %v", resp, err)
	}
}

// slowCloud is a provider whose launches start the instance at once and
// then hang until the control plane stops, as a cloud API that is slow to
// answer does; it remembers its instances across control plane restarts.
type slowCloud struct {
	mu       sync.Mutex
	running  []provider.Instance
	launches int
	stopped  []string
	hang     bool
	// release, when set, ends a hanging launch, which then answers.
	release chan struct{}
}

func (c *slowCloud) Name() string        { return "cloud" }
func (c *slowCloud) Description() string { return "a slow cloud" }

func (c *slowCloud) Provision(ctx context.Context, spec provider.Spec) ([]provider.Instance, error) {
	c.mu.Lock()
	var out []provider.Instance
	for _, id := range spec.NodeIDs {
		c.launches++
		inst := provider.Instance{NodeID: id, InstanceID: "vm-" + id, Pool: spec.Pool}
		c.running = append(c.running, inst)
		out = append(out, inst)
	}
	hang, release := c.hang, c.release
	c.mu.Unlock()
	if hang {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-release:
		}
	}
	return out, nil
}

func (c *slowCloud) Terminate(_ context.Context, inst provider.Instance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = slices.DeleteFunc(c.running, func(i provider.Instance) bool { return i.InstanceID == inst.InstanceID })
	c.stopped = append(c.stopped, inst.InstanceID)
	return nil
}

func (c *slowCloud) List(context.Context) ([]provider.Instance, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.running), nil
}

func (c *slowCloud) counts() (launches, running int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.launches, len(c.running)
}

// TestRestartMidProvisionNeitherLosesNorDuplicates: the control plane stops
// while a provider is starting a pool's node; at the next start it finds
// the instance in the provider's list, takes it for the node it recorded,
// and launches nothing more.
func TestRestartMidProvisionNeitherLosesNorDuplicates(t *testing.T) {
	cloud := &slowCloud{hang: true}
	h := newHarness(t, withProviders(cloud))
	ctx := ctxT(t)
	if _, err := h.ops.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: "train", Spec: &fleetv1.PoolSpec{Providers: []string{"cloud"}, Min: 2, Max: 2}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "two launches under way", func() bool { l, _ := cloud.counts(); return l == 2 })
	recorded := h.poolNodes("train")[provisioning]
	if len(recorded) != 2 {
		t.Fatalf("recorded %v", h.poolNodes("train"))
	}
	cloud.mu.Lock()
	cloud.hang = false
	cloud.mu.Unlock()
	h.restart()
	testutil.Eventually(t, "nodes have their instances", func() bool {
		for _, id := range recorded {
			if h.get(id).GetNode().GetInstanceId() != "vm-"+id {
				return false
			}
		}
		return true
	})
	h.pass()
	if l, r := cloud.counts(); l != 2 || r != 2 {
		t.Fatalf("after restart: %d launches, %d running; want 2 and 2", l, r)
	}
	if got := h.poolNodes("train"); len(got[provisioning]) != 2 {
		t.Fatalf("pool nodes %v", got)
	}
}
