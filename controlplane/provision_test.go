package controlplane_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestAgentCannotChooseItsInstance: an agent that registers claiming
// another instance id keeps the one its provider started, and that is the
// one stopped when the node ends.
func TestAgentCannotChooseItsInstance(t *testing.T) {
	cloud := &slowCloud{}
	h := newHarness(t, withProviders(cloud))
	ctx := ctxT(t)
	resp, err := h.ops.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{Provider: "cloud", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.GetNodes()[0].GetNodeId()
	if _, err := h.node.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: fleettest.GPUs(1), InstanceId: "vm-victim"}); err != nil {
		t.Fatal(err)
	}
	if got := h.get(id).GetNode().GetInstanceId(); got != "vm-"+id {
		t.Fatalf("instance %q after the agent claimed another", got)
	}
	if _, err := h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: id, Force: true}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "terminated", func() bool { return h.lifecycle(id) == terminated })
	cloud.mu.Lock()
	defer cloud.mu.Unlock()
	if !slices.Equal(cloud.stopped, []string{"vm-" + id}) {
		t.Fatalf("stopped %v", cloud.stopped)
	}
}

// TestLaunchOutlivesItsCaller: a caller that gives up while the provider
// is slow loses nothing: the instance is recorded when the provider
// answers. A node terminated before then has its instance stopped once it
// is known, not left running.
func TestLaunchOutlivesItsCaller(t *testing.T) {
	cloud := &slowCloud{hang: true, release: make(chan struct{})}
	h := newHarness(t, withProviders(cloud), withConfig(func(c *controlplane.Config) {
		c.ProvisionTimeout = controlplane.Duration{Duration: time.Minute}
	}))
	short, cancel := context.WithTimeout(ctxT(t), 300*time.Millisecond)
	defer cancel()
	if _, err := h.ops.ProvisionNodes(short, &controlplanev1.ProvisionNodesRequest{Provider: "cloud", Count: 2}); err == nil {
		t.Fatal("the call returned before the provider answered")
	}
	var ids []string
	testutil.Eventually(t, "two nodes recorded", func() bool {
		ids = nil
		list, err := h.ops.ListNodes(ctxT(t), &controlplanev1.ListNodesRequest{})
		for _, n := range list.GetNodes() {
			ids = append(ids, n.GetNodeId())
		}
		return err == nil && len(ids) == 2
	})
	// One is terminated while its launch is under way.
	if _, err := h.ops.TerminateNode(ctxT(t), &controlplanev1.TerminateNodeRequest{NodeId: ids[0], Force: true}); err != nil {
		t.Fatal(err)
	}
	h.fleet().Tick(ctxT(t))
	if h.lifecycle(ids[0]) != terminating {
		t.Fatalf("%s is %s before its launch answered", ids[0], h.lifecycle(ids[0]))
	}
	close(cloud.release)
	testutil.Eventually(t, "the surviving node has its instance", func() bool {
		return h.get(ids[1]).GetNode().GetInstanceId() == "vm-"+ids[1]
	})
	testutil.Eventually(t, "the terminated node's instance stopped", func() bool {
		h.fleet().Tick(ctxT(t))
		cloud.mu.Lock()
		defer cloud.mu.Unlock()
		return slices.Contains(cloud.stopped, "vm-"+ids[0]) && h.lifecycle(ids[0]) == terminated
	})
	cloud.mu.Lock()
	defer cloud.mu.Unlock()
	if len(cloud.running) != 1 || cloud.running[0].NodeID != ids[1] {
		t.Fatalf("running %v", cloud.running)
	}
}

// TestReconcileLeavesOthersNodesAlone: with unknown_instances: stop, an
// instance bearing the id of a node that joined on its own is only
// reported, never stopped.
func TestReconcileLeavesOthersNodesAlone(t *testing.T) {
	cloud := &slowCloud{}
	h := newHarness(t, withProviders(cloud), withConfig(func(c *controlplane.Config) { c.UnknownInstances = "stop" }))
	h.register("gpu-01", 1)
	cloud.mu.Lock()
	cloud.running = append(cloud.running, provider.Instance{NodeID: "gpu-01", InstanceID: "bmc-1"}, provider.Instance{NodeID: "stray", InstanceID: "vm-stray"})
	cloud.mu.Unlock()
	h.restart()
	testutil.Eventually(t, "the stray instance stopped", func() bool {
		cloud.mu.Lock()
		defer cloud.mu.Unlock()
		return slices.Contains(cloud.stopped, "vm-stray")
	})
	cloud.mu.Lock()
	defer cloud.mu.Unlock()
	if slices.Contains(cloud.stopped, "bmc-1") {
		t.Fatal("the instance of a node that joined on its own was stopped")
	}
}

// TestLaunchThatNeverAnswersIsStopped: a provider that does not answer
// within the provision timeout fails its nodes, and whatever runs under
// their ids is found by its tag and stopped, even when the monitor's
// timeout came first.
func TestLaunchThatNeverAnswersIsStopped(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Now())
	cloud := &slowCloud{hang: true, release: make(chan struct{})}
	h := newHarness(t, withFakeClock(clock), withProviders(cloud), withConfig(func(c *controlplane.Config) {
		c.ProvisionTimeout = controlplane.Duration{Duration: 2 * time.Second}
	}))
	done := make(chan error, 1)
	go func() {
		_, err := h.ops.ProvisionNodes(ctxT(t), &controlplanev1.ProvisionNodesRequest{Provider: "cloud", Count: 1})
		done <- err
	}()
	var id string
	testutil.Eventually(t, "the node recorded", func() bool {
		list, err := h.ops.ListNodes(ctxT(t), &controlplanev1.ListNodesRequest{})
		if err != nil || len(list.GetNodes()) != 1 {
			return false
		}
		id = list.GetNodes()[0].GetNodeId()
		return true
	})
	// The monitor's timeout passes while the launch is still waiting.
	clock.Advance(3 * time.Second)
	h.fleet().Tick(ctxT(t))
	if l := h.lifecycle(id); l != provisioning {
		t.Fatalf("%s is %s while its launch waits", id, l)
	}
	if err := <-done; err != nil {
		t.Logf("ProvisionNodes: %v", err)
	}
	testutil.Eventually(t, "the instance found by its tag and stopped", func() bool {
		h.fleet().Tick(ctxT(t))
		cloud.mu.Lock()
		defer cloud.mu.Unlock()
		return slices.Contains(cloud.stopped, "vm-"+id)
	})
	testutil.Eventually(t, "the node says so", func() bool {
		n := h.get(id).GetNode()
		return n.GetLifecycle() == provisionFailed && strings.Contains(n.GetLifecycleReason(), "instance vm-"+id+" stopped")
	})
	// Past the retention the failed node leaves the fleet.
	clock.Advance(h.cfg.TerminatedRetention.Duration + time.Second)
	h.fleet().Tick(ctxT(t))
	if _, err := h.ops.GetNode(ctxT(t), &controlplanev1.GetNodeRequest{NodeId: id}); status.Code(err) != codes.NotFound {
		t.Fatalf("a failed node past the retention: %v", err)
	}
}
