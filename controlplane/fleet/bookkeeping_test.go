package fleet

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/controlplane/policy"
	"github.com/navarch/navarch/internal/fleettest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
)

// TestBookkeepingCloneIsDeep fills every field of a node's bookkeeping,
// clones it, changes the original through every map and slice the way
// changes can, and checks the clone kept what it had. A field added to
// bookkeeping that this test cannot fill fails it, so clone is taught
// about the field too.
func TestBookkeepingCloneIsDeep(t *testing.T) {
	now := time.Now()
	pol := policy.Default()
	g := &fleetv1.Gpu{Health: fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY}
	xid13 := func(r *policy.Repeats) {
		pol.Judge(g, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13}, r, now)
	}
	b := bookkeeping{}
	v := reflect.ValueOf(&b).Elem()
	for i := range v.NumField() {
		switch f := v.Type().Field(i); f.Name {
		case "repeats":
			xid13(b.repeats.count(0))
		case "open":
			b.open = []*fleetv1.Command{{Id: "cmd-1"}}
		case "redelivered":
			b.redelivered = map[string]int{"cmd-1": 1}
		case "furthest":
			b.furthest = map[string]fleetv1.CommandStatus{"cmd-1": fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED}
		case "stopping":
			b.stopping = true
		case "unprovision":
			b.unprovision = true
		case "terminateQueued":
			b.terminateQueued = now
		default:
			t.Fatalf("bookkeeping.%s is new: fill it here and make sure clone copies it deeply", f.Name)
		}
	}
	before := b.repeats.byGPU[0].Clone()

	c := b.clone()
	if !reflect.DeepEqual(c.open, b.open) || !reflect.DeepEqual(c.redelivered, b.redelivered) ||
		!reflect.DeepEqual(c.furthest, b.furthest) || !reflect.DeepEqual(c.repeats.byGPU, b.repeats.byGPU) || c.stopping != b.stopping ||
		c.unprovision != b.unprovision || !c.terminateQueued.Equal(b.terminateQueued) {
		t.Fatalf("clone differs:\n got %+v\nwant %+v", c, b)
	}
	for range 20 {
		xid13(b.repeats.count(0))
	}
	xid13(b.repeats.count(1))
	b.repeats.forget(0)
	b.open[0] = &fleetv1.Command{Id: "cmd-2"}
	b.redelivered["cmd-1"] = 5
	b.furthest["cmd-1"] = fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED
	if c.open[0].GetId() != "cmd-1" || c.redelivered["cmd-1"] != 1 || len(c.repeats.byGPU) != 1 ||
		c.furthest["cmd-1"] != fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED {
		t.Fatalf("the clone shares state with the original: %+v", c)
	}
	if !reflect.DeepEqual(c.repeats.byGPU[0], before) {
		t.Fatal("the clone's repeat counts followed the original's")
	}
	// The clone, put back, counts without touching the counts it started
	// with in anything cloned from it.
	again := c.clone()
	xid13(c.repeats.count(0))
	if !reflect.DeepEqual(again.repeats.byGPU[0], before) {
		t.Fatal("counting after a second clone changed the first one's counts")
	}
}

// TestFailedReportLeavesRepeatsAsTheyWere: a report whose change cannot be
// saved counts nothing, so the agent's retry of the same event is counted
// once. (Before bookkeeping was one value, the failed report's count stayed:
// 8 stored XID 13 events, one failed report and its retry read "repeated 10
// times" with 9 events stored.)
func TestFailedReportLeavesRepeatsAsTheyWere(t *testing.T) {
	// Each XID comes 10 s after the last, so each is an incident of its own.
	fs := &flakyStore{Store: openStore(t, t.TempDir())}
	clock := clockwork.NewFakeClock()
	f := newFleet(t, Options{Store: fs, Clock: clock})
	next := func() { clock.Advance(10 * time.Second) }
	register(t, f, "n1", 1)
	if _, err := f.ReportHealth(ctxT(t), &nodev1.ReportHealthRequest{NodeId: "n1", GpuCount: 1, Metrics: []*fleetv1.GpuMetrics{fleettest.CleanMetrics(0)}}); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		next()
		if _, err := xid(t, f, "n1", 0, 13); err != nil {
			t.Fatal(err)
		}
	}
	fs.failing.Store(true)
	next()
	if _, err := xid(t, f, "n1", 0, 13); err == nil {
		t.Fatal("a report was accepted with a failing store")
	}
	fs.failing.Store(false)
	resp, err := xid(t, f, "n1", 0, 13) // the agent's retry
	if err != nil {
		t.Fatal(err)
	}
	stored, err := f.store.Events(ctxT(t), store.EventQuery{NodeID: "n1", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := f.get("n1").node.Load()
	if len(stored) != 9 || resp.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY || strings.Contains(n.GetHealthCause(), "repeated") {
		t.Fatalf("after 9 saved XID 13 events: %d stored, health %s, cause %q", len(stored), resp.GetHealth(), n.GetHealthCause())
	}
	// The tenth saved one is the tenth counted.
	next()
	if resp, err = xid(t, f, "n1", 0, 13); err != nil || resp.GetHealth() != fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED {
		t.Fatalf("tenth XID 13: %v %v", resp.GetHealth(), err)
	}
}

// TestFailedAutoCordonLeavesTheBreakerAsItWas: an automatic cordon whose
// change cannot be saved does not use up the breaker's window.
func TestFailedAutoCordonLeavesTheBreakerAsItWas(t *testing.T) {
	f, fs := newFlakyFleet(t)
	for _, id := range []string{"a", "b", "c", "d"} {
		register(t, f, id, 1)
	}
	fs.failing.Store(true)
	if _, err := xid(t, f, "a", 0, 79); err == nil {
		t.Fatal("a report was accepted with a failing store")
	}
	fs.failing.Store(false)
	if got := f.breaker.status(f.clock.Now()).GetRecentAutoCordons(); got != 0 {
		t.Fatalf("a cordon that was not saved counts in the breaker: %d", got)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := xid(t, f, id, 0, 79); err != nil {
			t.Fatal(err)
		}
		if l := f.get(id).node.Load().GetLifecycle(); l != cordoned {
			t.Fatalf("%s is %s, want cordoned: the breaker allows half of 4 nodes", id, l)
		}
	}
}

// TestFailedTerminationKeepsLiveData: a termination that cannot be saved
// leaves the node's heartbeat samples, as it leaves the node.
func TestFailedTerminationKeepsLiveData(t *testing.T) {
	f, fs := newFlakyFleet(t)
	register(t, f, "n1", 1)
	if _, err := f.Terminate(ctxT(t), "n1", "", true, 0); err != nil {
		t.Fatal(err)
	}
	ns := f.get("n1")
	ns.live.mu.Lock()
	ns.live.samples = []sample{{util: 50}}
	ns.live.mu.Unlock()
	fs.failing.Store(true)
	_, err := f.operate(ctxT(t), "n1", func(ns *nodeState, n *fleetv1.Node, c *change, now time.Time) error {
		markTerminated(ns, n, c, "terminated: test", now)
		return nil
	})
	if err == nil {
		t.Fatal("a termination was saved with a failing store")
	}
	ns.live.mu.Lock()
	defer ns.live.mu.Unlock()
	if len(ns.live.samples) != 1 || f.get("n1").node.Load().GetLifecycle() == terminated {
		t.Fatalf("after a failed termination: samples %v, lifecycle %s", ns.live.samples, f.get("n1").node.Load().GetLifecycle())
	}
}

var errDiskFull = errors.New("disk full")
