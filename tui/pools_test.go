package tui

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/providertest"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// poolClient is a control plane that records the pools scaled and the
// nodes power-cycled, and answers as the control plane does, or with err.
type poolClient struct {
	controlplanev1.ControlPlaneServiceClient
	mu     sync.Mutex
	err    error
	scaled []*controlplanev1.ScalePoolRequest
	cycled []*controlplanev1.PowerCycleNodeRequest
}

func (c *poolClient) ScalePool(_ context.Context, req *controlplanev1.ScalePoolRequest, _ ...grpc.CallOption) (*controlplanev1.ScalePoolResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scaled = append(c.scaled, req)
	if c.err != nil {
		return nil, c.err
	}
	return &controlplanev1.ScalePoolResponse{Pool: &fleetv1.Pool{Name: req.GetName(), Wanted: req.GetWanted()}}, nil
}

func (c *poolClient) PowerCycleNode(_ context.Context, req *controlplanev1.PowerCycleNodeRequest, _ ...grpc.CallOption) (*controlplanev1.PowerCycleNodeResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cycled = append(c.cycled, req)
	if c.err != nil {
		return nil, c.err
	}
	return &controlplanev1.PowerCycleNodeResponse{Node: &fleetv1.Node{NodeId: req.GetNodeId(),
		Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, Reachability: fleetv1.Reachability_REACHABILITY_OFFLINE}}, nil
}

// newPoolModel is a test console on c, loaded with the pooled fleet.
func newPoolModel(t *testing.T, o Options) *Model {
	t.Helper()
	m := newTestModel(t, o)
	send(m, pooled())
	return m
}

func poolUpsert(rev uint64, p *fleetv1.Pool) *controlplanev1.WatchFleetResponse {
	return &controlplanev1.WatchFleetResponse{Revision: rev, Change: &controlplanev1.WatchFleetResponse_PoolUpsert{PoolUpsert: p}}
}

func poolRemoval(rev uint64, name string) *controlplanev1.WatchFleetResponse {
	return &controlplanev1.WatchFleetResponse{Revision: rev, Change: &controlplanev1.WatchFleetResponse_PoolRemoved{PoolRemoved: name}}
}

// line is the first line of the frame that holds s, or "".
func line(m *Model, s string) string {
	for _, l := range strings.Split(plain(m), "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestPoolsFollowTheStream: the pools come with the snapshot's last chunk,
// change with upserts and go with removals; the cursor stays on its pool
// by name, and a snapshot replaces them all.
func TestPoolsFollowTheStream(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("3"))
	mustContain(t, m.Frame(), "no pools:")
	// Pools come on the last chunk only.
	first := &controlplanev1.WatchFleetResponse{Revision: 41, Change: &controlplanev1.WatchFleetResponse_Snapshot{Snapshot: &controlplanev1.Snapshot{Nodes: pooledFleet()[:2]}}}
	last := pooledSnapshot(41)
	last.GetSnapshot().Nodes = pooledFleet()[2:]
	m.Apply(first, last)
	if got := m.d.fleet.poolNames; !slices.Equal(got, []string{"infer", "spare", "train"}) {
		t.Fatalf("pools %v", got)
	}
	send(m, press("G"))
	if p := poolsOf(m).current(); p.GetName() != "train" {
		t.Fatalf("cursor on %q", p.GetName())
	}
	mustContain(t, line(m, "train"), "aws,gcp", "3/4", "2–8", "67%", "2H 0D 1U", "on", "2m ago: 1 node short of the wanted 4")
	mustContain(t, line(m, "infer"), "lambda", "2/2", "1–4", "0H 1D 1U", "off", "30m ago: gpu-b00 stayed UNHEALTHY")

	grown := proto.Clone(fixturePools()[2]).(*fleetv1.Pool)
	grown.Wanted, grown.Status.Nodes = 5, 4
	m.Apply(poolUpsert(42, grown), poolUpsert(43, &fleetv1.Pool{Name: "batch", Wanted: 1,
		Spec: &fleetv1.PoolSpec{Providers: []string{"local"}, Min: 1, Max: 3}, Status: &fleetv1.PoolStatus{Nodes: 1, Healthy: 1}}))
	if got := m.d.fleet.poolNames; !slices.Equal(got, []string{"batch", "infer", "spare", "train"}) {
		t.Fatalf("after upserts: %v", got)
	}
	if p := poolsOf(m).current(); p.GetName() != "train" {
		t.Fatalf("a new pool above moved the cursor to %q", p.GetName())
	}
	mustContain(t, line(m, "train"), "4/5")
	mustContain(t, m.Frame(), "rev 43", "4 pools")

	m.Apply(poolRemoval(44, "train"), poolRemoval(45, "spare"))
	if got := m.d.fleet.poolNames; !slices.Equal(got, []string{"batch", "infer"}) {
		t.Fatalf("after removals: %v", got)
	}
	if p := poolsOf(m).current(); p.GetName() != "infer" {
		t.Fatalf("cursor on %q once its pool went", p.GetName())
	}
	if strings.Contains(plain(m), "train") {
		t.Fatalf("a removed pool is still shown:\n%s", plain(m))
	}

	m.Apply(snapshot(50, pooledFleet(), nil))
	if len(m.d.fleet.pools) != 0 {
		t.Fatalf("a snapshot without pools kept %v", m.d.fleet.poolNames)
	}
}

// TestPoolMembersFollowNodes: a pool's nodes are those whose Node.pool
// names it, as nodes join, move between pools, leave a pool and go.
func TestPoolMembersFollowNodes(t *testing.T) {
	m := newPoolModel(t, Options{})
	members := func(pool string) []string {
		var ids []string
		for _, r := range m.d.fleet.poolRows(pool) {
			ids = append(ids, r.id)
		}
		return ids
	}
	if got := members("train"); !slices.Equal(got, []string{"gpu-a01", "gpu-a02", "gpu-a03"}) {
		t.Fatalf("train: %v", got)
	}
	send(m, press("3"), press("G"), press("enter"))
	if m.active != poolViewName || poolOf(m).name != "train" {
		t.Fatalf("enter: view %s pool %q", m.active, poolOf(m).name)
	}
	moved := pooledFleet()[0]
	moved.Pool = "infer"
	fresh := pooledFleet()[1]
	fresh.NodeId, fresh.Pool = "gpu-a09", "train"
	left := pooledFleet()[2]
	left.Pool = ""
	m.Apply(
		&controlplanev1.WatchFleetResponse{Revision: 42, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: moved}},
		&controlplanev1.WatchFleetResponse{Revision: 43, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: fresh}},
		&controlplanev1.WatchFleetResponse{Revision: 44, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: left}},
		&controlplanev1.WatchFleetResponse{Revision: 45, Change: &controlplanev1.WatchFleetResponse_NodeRemoved{NodeRemoved: &controlplanev1.NodeRemoved{NodeId: "gpu-b02"}}},
	)
	tests := []struct {
		pool string
		want []string
	}{
		{"train", []string{"gpu-a02", "gpu-a09"}},
		{"infer", []string{"gpu-a01", "gpu-b01"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := members(tt.pool); !slices.Equal(got, tt.want) {
			t.Errorf("pool %q: %v, want %v", tt.pool, got, tt.want)
		}
	}
	f := plain(m)
	mustContain(t, f, "gpu-a02", "gpu-a09")
	for _, gone := range []string{"gpu-a01", "gpu-a03"} {
		if strings.Contains(f, gone) {
			t.Errorf("the pool view still shows %s:\n%s", gone, f)
		}
	}
}

// TestPoolViewShowsNodesAndDecisions: enter on a pool shows what it is,
// its nodes and its decisions, newest first; enter on a node opens it,
// esc comes back to the pool, and esc again to the pools.
func TestPoolViewShowsNodesAndDecisions(t *testing.T) {
	m := newPoolModel(t, Options{})
	send(m, press("3"), press("G"), press("enter"))
	f := plain(m)
	mustContain(t, f, "train  3/4 nodes · min 2 · max 8 · autoscaling on · from the configuration file",
		"providers aws, gcp · p5.48xlarge · 8 GPUs each", "nodes 2H 0D 1U · 1 provisioning · 0 offline · 0 removing · utilisation 67%",
		"wanted since 5m ago", "gpu-a01", "gpu-a03")
	if strings.Contains(f, "gpu-b01") {
		t.Fatalf("the train pool shows an infer node:\n%s", f)
	}
	provision := strings.Index(f, "PROVISION  reconciler      1 node short of the wanted 4 [gpu-a04]")
	scale := strings.Index(f, "SCALE      autoscaler      mean utilisation 86%")
	hold := strings.Index(f, "HOLD       reconciler      replacement of gpu-a02 held")
	if provision < 0 || scale < provision || hold < scale {
		t.Fatalf("decisions not newest first (%d, %d, %d):\n%s", provision, scale, hold, f)
	}
	send(m, press("j"), press("enter"))
	if m.active != nodeViewName || nodeOf(m).id != "gpu-a02" {
		t.Fatalf("enter on the second node: view %s, node %q", m.active, nodeOf(m).id)
	}
	send(m, press("esc"))
	if m.active != poolViewName || poolOf(m).current().id != "gpu-a02" {
		t.Fatalf("esc from the node: view %s", m.active)
	}
	send(m, press("esc"))
	if m.active != poolsViewName {
		t.Fatalf("esc from the pool: view %s", m.active)
	}
	// A pool deleted while shown says so, and its nodes stay listed.
	send(m, press("enter"))
	m.Apply(poolRemoval(42, "train"))
	mustContain(t, m.Frame(), "deleted: its nodes stay, kept by no pool", "gpu-a01")
}

// TestScaleAsksThenCallsScalePool: + and - ask to move the pool's wanted
// size by one, and only y calls ScalePool, with the size the question
// named; a pool at its bound is not asked about, and the control plane's
// refusal shows in the status line.
func TestScaleAsksThenCallsScalePool(t *testing.T) {
	refused := status.Error(codes.FailedPrecondition, "wanted: 5 is above the pool's max")
	tests := []struct {
		name     string
		keys     []tea.Msg
		err      error
		question string
		answer   string
		want     *controlplanev1.ScalePoolRequest
		status   string
	}{
		{"up", keysOf("G", "+"), nil, "Scale pool train from 4 to 5 nodes? It provisions a node through aws, then gcp. Its autoscaling moves the size on from there.",
			"y", &controlplanev1.ScalePoolRequest{Name: "train", Wanted: 5, Reason: "scaled from the console"}, "pool train: wanted 5 (was 4)"},
		{"down", keysOf("-"), nil, "Scale pool infer from 2 to 1 node? A node beyond the wanted size is drained, then terminated.",
			"y", &controlplanev1.ScalePoolRequest{Name: "infer", Wanted: 1, Reason: "scaled from the console"}, "pool infer: wanted 1 (was 2)"},
		{"n-cancels", keysOf("G", "-"), nil, "Scale pool train from 4 to 3 nodes?", "n", nil, "cancelled"},
		{"esc-cancels", keysOf("G", "-"), nil, "Scale pool train from 4 to 3 nodes?", "esc", nil, "cancelled"},
		{"refused", keysOf("G", "+"), refused, "Scale pool train from 4 to 5 nodes?", "y",
			&controlplanev1.ScalePoolRequest{Name: "train", Wanted: 5, Reason: "scaled from the console"}, "scale failed: train: wanted: 5 is above the pool's max"},
		{"at-min", keysOf("j", "-"), nil, "", "", nil, "pool spare is at its min, 0; lower min to scale it down"},
		{"in-the-pool-view", keysOf("G", "enter", "+"), nil, "Scale pool train from 4 to 5 nodes?",
			"y", &controlplanev1.ScalePoolRequest{Name: "train", Wanted: 5, Reason: "scaled from the console"}, "pool train: wanted 5 (was 4)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &poolClient{err: tt.err}
			m := newPoolModel(t, Options{Client: c})
			send(m, press("3"))
			cmd := send(m, tt.keys...)
			if tt.question == "" {
				if m.overlay != nil || cmd != nil {
					t.Fatalf("asked anyway:\n%s", plain(m))
				}
				mustContain(t, m.Frame(), tt.status)
				return
			}
			if _, ok := m.overlay.(*confirm); !ok {
				t.Fatalf("no confirmation: %T\n%s", m.overlay, plain(m))
			}
			if f := flat(m); !strings.Contains(f, tt.question) {
				t.Fatalf("question lacks %q:\n%s", tt.question, f)
			}
			if len(c.scaled) != 0 {
				t.Fatal("ScalePool was called before the answer")
			}
			cmd = send(m, press(tt.answer))
			if tt.want == nil {
				if cmd != nil || m.overlay != nil {
					t.Fatalf("%s did not cancel", tt.answer)
				}
				mustContain(t, m.Frame(), tt.status)
				return
			}
			send(m, await[statusLineMsg](t, cmd))
			if len(c.scaled) != 1 || !proto.Equal(c.scaled[0], tt.want) {
				t.Fatalf("ScalePool got %v, want %v", c.scaled, tt.want)
			}
			mustContain(t, m.Frame(), tt.status)
		})
	}
}

// TestPowerCycleAsksForOneNode: P asks about the node under the cursor, in
// the fleet, node and pool views, saying whether its agent is OFFLINE; y
// calls PowerCycleNode, with force only when it was asked for. Several
// marked nodes are refused.
func TestPowerCycleAsksForOneNode(t *testing.T) {
	tests := []struct {
		name     string
		keys     []tea.Msg
		question string
		want     *controlplanev1.PowerCycleNodeRequest
	}{
		{"fleet-online", keysOf("P", "enter"), "Power-cycle gpu-a01? Its provider switches the machine off and on again; whatever runs on it dies. Its agent is ONLINE, not OFFLINE, so the control plane refuses unless forced.",
			&controlplanev1.PowerCycleNodeRequest{NodeId: "gpu-a01", Reason: "power cycle from the console"}},
		{"fleet-forced", append(keysOf("P"), append(typed("bmc hung"), keysOf("tab", "space", "enter")...)...), "Its agent is ONLINE: forced, the machine is cycled all the same.",
			&controlplanev1.PowerCycleNodeRequest{NodeId: "gpu-a01", Reason: "bmc hung", Force: true}},
		{"node-offline", keysOf("G", "enter", "P", "enter"), "Power-cycle gpu-b02? Its provider switches the machine off and on again; whatever runs on it dies. Its agent is OFFLINE.",
			&controlplanev1.PowerCycleNodeRequest{NodeId: "gpu-b02", Reason: "power cycle from the console"}},
		{"pool-view", keysOf("3", "enter", "j", "P", "enter"), "Power-cycle gpu-b02?",
			&controlplanev1.PowerCycleNodeRequest{NodeId: "gpu-b02", Reason: "power cycle from the console"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &poolClient{}
			m := newPoolModel(t, Options{Client: c})
			send(m, tt.keys...)
			if f := flat(m); !strings.Contains(f, tt.question) {
				t.Fatalf("question lacks %q:\n%s", tt.question, f)
			}
			send(m, await[statusLineMsg](t, send(m, press("y"))))
			if len(c.cycled) != 1 || !proto.Equal(c.cycled[0], tt.want) {
				t.Fatalf("PowerCycleNode got %v, want %v", c.cycled, tt.want)
			}
			mustContain(t, m.Frame(), "power cycle of "+tt.want.GetNodeId()+" asked of its provider; it is ACTIVE, OFFLINE")
		})
	}

	c := &poolClient{err: status.Error(codes.FailedPrecondition, "node_id: gpu-a01's provider cannot power-cycle it")}
	m := newPoolModel(t, Options{Client: c})
	send(m, press("P"), press("enter"))
	send(m, await[statusLineMsg](t, send(m, press("y"))))
	mustContain(t, m.Frame(), "power cycle failed: gpu-a01: node_id: gpu-a01's provider cannot power-cycle it")

	send(m, press("space"), press("space"), press("P"))
	if m.overlay != nil {
		t.Fatal("P asked about several marked nodes")
	}
	mustContain(t, m.Frame(), "a power cycle acts on one node")
}

// TestFleetShowsEachNodesPool: a POOL column appears once a node shown is
// in a pool, and the node view says the node's pool.
func TestFleetShowsEachNodesPool(t *testing.T) {
	m := newTestModel(t, Options{})
	if strings.Contains(plain(m), "POOL") {
		t.Fatalf("a fleet without pools has a POOL column:\n%s", plain(m))
	}
	send(m, pooled())
	send(m, tea.WindowSizeMsg{Width: 100, Height: 24})
	mustContain(t, m.Frame(), "SEEN POOL")
	mustContain(t, line(m, "gpu-b01"), "45s infer")
	// At 80 columns POOL gives way to the causes and their remedies.
	send(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	if strings.Contains(plain(m), "POOL") {
		t.Fatalf("POOL kept before the causes at 80 columns:\n%s", plain(m))
	}
	mustContain(t, line(m, "gpu-b01"), "→ cooling")
	send(m, tea.WindowSizeMsg{Width: 60, Height: 24})
	if strings.Contains(plain(m), "POOL") {
		t.Fatalf("POOL kept at 60 columns:\n%s", plain(m))
	}
	// s sorts by POOL once nodes are in pools, and skips it before.
	sorts := func(m *Model) []column {
		var seen []column
		for range numColumns {
			send(m, press("s"))
			seen = append(seen, m.d.fleet.sortBy)
		}
		return seen
	}
	if got := sorts(m); !slices.Contains(got, colPool) {
		t.Errorf("s never sorts by POOL in a pooled fleet: %v", got)
	}
	if got := sorts(newTestModel(t, Options{})); slices.Contains(got, colPool) {
		t.Errorf("s sorts by POOL in a fleet without pools: %v", got)
	}
	detail := nodeDetail()
	detail.Node.Pool = "train"
	send(m, tea.WindowSizeMsg{Width: 100, Height: 30}, press("j"), press("enter"), nodeDetailMsg{id: "gpu-a02", resp: detail})
	mustContain(t, m.Frame(), "agent v0.1.0 · pool train · pool=train")
}

// TestPoolsAgainstTheControlPlane: a real control plane's stream brings
// its pools in the snapshot, + scales one through ScalePool, and the
// change and a deletion come back on the stream.
func TestPoolsAgainstTheControlPlane(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{Providers: func(rpcclient.Target) []provider.Provider {
		return []provider.Provider{&providertest.Recorder{}}
	}})
	ctx := context.Background()
	if _, err := cp.Ops.PutPool(ctx, &controlplanev1.PutPoolRequest{Name: "batch", Spec: &fleetv1.PoolSpec{Providers: []string{"test"}, Max: 3}}); err != nil {
		t.Fatal(err)
	}
	m := New(Options{Client: cp.Ops, Server: cp.Addr, Now: clock, Theme: NewTheme(true, false)})
	send(m, tea.WindowSizeMsg{Width: 100, Height: 30})
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m.watcher.run(wctx)
	until := func(what string, done func() bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for !done() {
			got := make(chan tea.Msg, 1)
			go func() { got <- m.watcher.listen()() }()
			select {
			case msg := <-got:
				m.Update(msg)
			case <-deadline:
				t.Fatalf("timed out waiting for %s:\n%s", what, plain(m))
			}
		}
	}
	until("the snapshot's pools", func() bool { return m.d.fleet.pools["batch"] != nil })
	send(m, press("3"), press("+"))
	if f := flat(m); !strings.Contains(f, "Scale pool batch from 0 to 1 node? It provisions a node through test.") {
		t.Fatalf("no question:\n%s", f)
	}
	send(m, await[statusLineMsg](t, send(m, press("y"))))
	mustContain(t, m.Frame(), "pool batch: wanted 1 (was 0)")
	until("the scale on the stream", func() bool { return m.d.fleet.pools["batch"].GetWanted() == 1 })
	if _, err := cp.Ops.DeletePool(ctx, &controlplanev1.DeletePoolRequest{Name: "batch"}); err != nil {
		t.Fatal(err)
	}
	until("the deletion on the stream", func() bool { return len(m.d.fleet.poolNames) == 0 })
	mustContain(t, m.Frame(), "no pools:")
}

// TestPoolViewCatchesUpWhenShown: out of sight, the pool view takes no
// nodes afresh; back on screen, it shows the nodes that joined meanwhile.
func TestPoolViewCatchesUpWhenShown(t *testing.T) {
	m := newPoolModel(t, Options{})
	send(m, press("3"), press("G"), press("enter"), press("enter"))
	if m.active != nodeViewName {
		t.Fatalf("view %s, want the node", m.active)
	}
	joined := pooledFleet()[3]
	joined.Pool = "train"
	m.Apply(&controlplanev1.WatchFleetResponse{Revision: 42, Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: joined}})
	if n := len(poolOf(m).rows); n != 3 {
		t.Fatalf("the hidden pool view took %d nodes afresh", n)
	}
	send(m, press("esc"))
	if m.active != poolViewName || len(poolOf(m).rows) != 4 {
		t.Fatalf("back in view %s with %d nodes, want the pool with 4", m.active, len(poolOf(m).rows))
	}
	mustContain(t, m.Frame(), "gpu-b01")
}
