package agent

import (
	"testing"

	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestStreamDelivery: told to hold a command stream, the agent gets its
// commands there and makes no long poll, and opens the stream again when
// the control plane comes back.
func TestStreamDelivery(t *testing.T) {
	cp := newFakeCP(t)
	cp.delivery = nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM
	startAgent(t, cp, simnvml.Options{})
	cp.commands <- &fleetv1.Command{Id: "cmd-1", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_CORDON}
	testutil.Eventually(t, "cordon carried out", func() bool { return cp.result("cmd-1", true) != nil })
	cp.stop()
	cp.start()
	testutil.Eventually(t, "a new stream", func() bool {
		cp.mu.Lock()
		defer cp.mu.Unlock()
		return cp.streams >= 2
	})
	cp.commands <- &fleetv1.Command{Id: "cmd-2", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_UNCORDON}
	testutil.Eventually(t, "uncordon carried out after the restart", func() bool { return cp.result("cmd-2", true) != nil })
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if len(cp.polls) != 0 {
		t.Fatalf("the agent long-polled %d times in stream delivery", len(cp.polls))
	}
}

// TestStreamFallsBackToLongPolls: a control plane that asks for a stream
// but has none (Unimplemented, as an older one answers) gets long polls,
// and the command still arrives.
func TestStreamFallsBackToLongPolls(t *testing.T) {
	cp := newFakeCP(t)
	cp.delivery = nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM
	cp.noStream = true
	startAgent(t, cp, simnvml.Options{})
	cp.commands <- &fleetv1.Command{Id: "cmd-1", NodeId: "node-a", Type: fleetv1.CommandType_COMMAND_TYPE_CORDON}
	testutil.Eventually(t, "cordon carried out", func() bool { return cp.result("cmd-1", true) != nil })
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.streams != 1 {
		t.Fatalf("the agent opened %d streams, want one, then long polls", cp.streams)
	}
	var waited bool
	for _, w := range cp.polls {
		waited = waited || w > 0
	}
	if !waited {
		t.Fatalf("the agent made no long poll after the stream was refused: polls %v", cp.polls)
	}
}
