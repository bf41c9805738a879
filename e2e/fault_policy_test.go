package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/faultspec"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

const (
	healthy   = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
	unhealthy = fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
	active    = fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE
	cordoned  = fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED
)

// xidEvents returns the node's events of XID code, oldest first.
func (f *fleet) xidEvents(id string, code uint32) []*fleetv1.HealthEvent {
	var out []*fleetv1.HealthEvent
	evs := f.node(id).GetEvents()
	for i := len(evs) - 1; i >= 0; i-- {
		if e := evs[i]; e.GetKind() == fleetv1.EventKind_EVENT_KIND_XID && e.GetXid() == code {
			out = append(out, e)
		}
	}
	return out
}

func (f *fleet) gpu(id string, index int) *fleetv1.Gpu {
	for _, g := range f.node(id).GetNode().GetGpus() {
		if int(g.GetIndex()) == index && !g.GetLost() {
			return g
		}
	}
	return nil
}

// TestCatalogJudgementEndToEnd: simulated nodes raise XIDs as a driver
// does, in the kernel log with their text and through NVML; the agent
// sends each once, and the control plane judges it as NVIDIA's catalog
// says.
func TestCatalogJudgementEndToEnd(t *testing.T) {
	// Two nodes go UNHEALTHY at once here; the breaker is not under test.
	f := startControlPlane(t, func(cfg *controlplane.Config) { cfg.AutoCordon.MaxFraction = 1 })
	// A copy-engine exception: restart the application, nothing more.
	f.startNode("app", "", "xid=39@gpu0+1s")
	// A fatal NVLink5 error: reset the GPU, so the node is cordoned.
	f.startNode("nvl5", "", "xid=150:MSE_WATCHDOG Fatal XC0 i0 Link -1 (0x00000000 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)@gpu1+1s")
	// The driver's recovery action asks for a GPU reset.
	f.startNode("rec", "", "xid=154:GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)@gpu2+1s")

	f.waitFor("node nvl5 cordoned for its XID 150", func() bool {
		n := f.node("nvl5").GetNode()
		return n.GetHealth() == unhealthy && n.GetLifecycle() == cordoned
	})
	if g := f.gpu("nvl5", 1); g.GetRemedy() != fleetv1.Remedy_REMEDY_RESET_GPU || !strings.Contains(g.GetHealthCause(), "MSE_WATCHDOG") {
		t.Fatalf("nvl5 gpu1: remedy %s, cause %q", g.GetRemedy(), g.GetHealthCause())
	}

	f.waitFor("node rec's XID 154 judged", func() bool { return len(f.xidEvents("rec", 154)) > 0 })
	ev := f.xidEvents("rec", 154)[0]
	if ev.GetRemedy() != fleetv1.Remedy_REMEDY_RESET_GPU || ev.GetHealth() != unhealthy || ev.GetKernelSeq() == 0 ||
		!strings.Contains(ev.GetMessage(), "GPU Reset Required") {
		t.Fatalf("XID 154 event: %s/%s, kernel seq %d, message %q", ev.GetHealth(), ev.GetRemedy(), ev.GetKernelSeq(), ev.GetMessage())
	}
	if g := f.gpu("rec", 2); g.GetRemedy() != fleetv1.Remedy_REMEDY_RESET_GPU {
		t.Fatalf("rec gpu2 remedy %s", g.GetRemedy())
	}

	f.waitFor("node app's XID 39 recorded", func() bool { return len(f.xidEvents("app", 39)) > 0 })
	// The NVML event of the same XID is held, then dropped: one event.
	time.Sleep(6 * time.Second)
	evs := f.xidEvents("app", 39)
	if len(evs) != 1 || evs[0].GetRemedy() != fleetv1.Remedy_REMEDY_RESTART_APPLICATION || evs[0].GetKernelSeq() == 0 {
		t.Fatalf("XID 39 events: %v", evs)
	}
	if n := f.node("app").GetNode(); n.GetHealth() != healthy || n.GetLifecycle() != active {
		t.Fatalf("node app after a restart-the-application XID: %s %s", n.GetHealth(), n.GetLifecycle())
	}
}

// TestRemediesEndToEnd follows one GPU through the story the policy
// tells: a burst of XID 74s is one incident; a reset from the console
// clears it; the XID coming back after the reset asks for an inspection;
// an agent restart on the same boot keeps that; a reboot clears it.
func TestRemediesEndToEnd(t *testing.T) {
	f := startControlPlane(t)
	state := t.TempDir()
	node := f.startNode("gpu-n1", state, "xid=74@gpu0+1s", "xid=74@gpu0+1500ms")
	ctx := context.Background()

	f.waitFor("both XID 74s of the burst recorded, gpu0 waiting for a reset", func() bool {
		return len(f.xidEvents("gpu-n1", 74)) == 2 && f.gpu("gpu-n1", 0).GetRemedy() == fleetv1.Remedy_REMEDY_RESET_GPU
	})
	for _, e := range f.xidEvents("gpu-n1", 74) {
		if e.GetEscalated() || e.GetRepeatCount() != 1 {
			t.Fatalf("an XID 74 of one burst escalated: %v", e)
		}
	}
	if n := f.node("gpu-n1").GetNode(); n.GetHealth() != unhealthy || n.GetLifecycle() != cordoned {
		t.Fatalf("after the burst: %s %s", n.GetHealth(), n.GetLifecycle())
	}

	// The reset, from the console: open the node, r, the form starts at the
	// GPU that needs it, confirm.
	tm, waitScreen := f.console(140, 40)
	waitScreen("the node listed", func(s string) bool { return strings.Contains(s, "gpu-n1") && strings.Contains(s, "UNHEALTHY") })
	tm.Send(tea.KeyPressMsg{Code: tea.KeyEnter})
	// The fleet's WHY column names the XID too: wait for the node view's
	// own events list.
	waitScreen("the node view", func(s string) bool {
		return strings.Contains(s, "EVENTS (newest first)") && strings.Contains(s, "XID 74")
	})
	tm.Send(tea.KeyPressMsg{Code: 'r', Text: "r"})
	waitScreen("the reset form at GPU 0", func(s string) bool { return strings.Contains(s, "Reset a GPU of gpu-n1") })
	tm.Send(tea.KeyPressMsg{Code: tea.KeyEnter})
	waitScreen("the confirmation", func(s string) bool { return strings.Contains(s, "Reset GPU 0 of gpu-n1") })
	tm.Send(tea.KeyPressMsg{Code: 'y', Text: "y"})
	f.waitFor("the reset done and gpu0 HEALTHY again", func() bool {
		return f.gpu("gpu-n1", 0).GetHealth() == healthy && f.node("gpu-n1").GetNode().GetHealth() == healthy
	})
	reset := lastCommand(t, f, "gpu-n1", fleetv1.CommandType_COMMAND_TYPE_RESET_GPU)
	if reset.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED || reset.GetGpuIndex() != 0 {
		t.Fatalf("reset command %v", reset)
	}
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}

	// The XID comes back after its remedy: inspect the hardware.
	node.sim.Inject(faultspec.Spec{Kind: faultspec.XID, GPU: 0, Value: 74})
	f.waitFor("the returning XID 74 escalated", func() bool {
		return f.gpu("gpu-n1", 0).GetRemedy() == fleetv1.Remedy_REMEDY_INSPECT_HARDWARE
	})
	evs := f.xidEvents("gpu-n1", 74)
	if last := evs[len(evs)-1]; !last.GetEscalated() || last.GetRepeatCount() != 2 {
		t.Fatalf("the returning XID 74: %v", last)
	}
	boot := f.node("gpu-n1").GetNode().GetBootId()

	// The agent restarts on the same boot: the fault stays.
	node.stop()
	registered := f.node("gpu-n1").GetNode().GetRegisteredAt().AsTime()
	f.startNode("gpu-n1", state) // stopped at the end of the test
	f.waitFor("the agent registered again", func() bool {
		return f.node("gpu-n1").GetNode().GetRegisteredAt().AsTime().After(registered)
	})
	n := f.node("gpu-n1").GetNode()
	if n.GetBootId() != boot || f.gpu("gpu-n1", 0).GetRemedy() != fleetv1.Remedy_REMEDY_INSPECT_HARDWARE || n.GetHealth() != unhealthy {
		t.Fatalf("after an agent restart on boot %s (was %s): gpu0 %s, node %s", n.GetBootId(), boot, f.gpu("gpu-n1", 0).GetRemedy(), n.GetHealth())
	}
	// A second reading of the kernel log repeats none of its XIDs.
	if got := len(f.xidEvents("gpu-n1", 74)); got != 3 {
		t.Fatalf("%d XID 74 events after the restart, want 3", got)
	}

	// GPU 1 falls off the bus too; the reboot brings it back.
	f.sims["gpu-n1"].Inject(faultspec.Spec{Kind: faultspec.XID, GPU: 1, Value: 79})
	f.waitFor("gpu1 lost", func() bool { return f.gpu("gpu-n1", 1) == nil })

	// A reboot (forced: the node is cordoned, not drained) comes back with
	// a new boot id, which clears the faults.
	rebootAt := time.Now()
	if _, err := f.ops.RebootNode(ctx, &controlplanev1.RebootNodeRequest{NodeId: "gpu-n1", Reason: "clear XID 74", Force: true}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the reboot confirmed by a new boot id", func() bool {
		c := lastCommand(t, f, "gpu-n1", fleetv1.CommandType_COMMAND_TYPE_REBOOT)
		return c.GetStatus() == fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED
	})
	f.waitFor("every GPU back and HEALTHY after the reboot", func() bool {
		n = f.node("gpu-n1").GetNode()
		return n.GetHealth() == healthy && f.gpu("gpu-n1", 0).GetHealth() == healthy && f.gpu("gpu-n1", 1).GetHealth() == healthy
	})
	if n.GetBootId() == boot {
		t.Fatalf("after the reboot: boot %s, the same as before", n.GetBootId())
	}
	// The first reports of the new boot show the GPU that came back as it
	// is, not as the old boot last saw it.
	time.Sleep(2 * time.Second)
	for _, e := range f.node("gpu-n1").GetEvents() {
		if e.GetKind() == fleetv1.EventKind_EVENT_KIND_GPU_LOST && e.GetTime().AsTime().After(rebootAt) {
			t.Fatalf("a GPU reported lost after the reboot: %v", e)
		}
	}
}

func lastCommand(t *testing.T, f *fleet, id string, typ fleetv1.CommandType) *fleetv1.Command {
	t.Helper()
	for _, c := range f.node(id).GetCommands() {
		if c.GetType() == typ {
			return c
		}
	}
	return nil
}
