package tui

import (
	"context"
	"strings"
	"testing"

	"github.com/navarch/navarch/internal/cptest"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestActionStatusLines: the status line says what was done, or which
// node refused and why, naming the node once, against a real control
// plane.
func TestActionStatusLines(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	for _, id := range []string{"a", "b", "gone"} {
		gpus := []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-" + id}}
		if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: gpus}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cp.Ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: "gone", Force: true}); err != nil {
		t.Fatal(err)
	}
	d := &deps{client: cp.Ops}
	run := func(cmd func(*deps, []string) any, ids ...string) statusLineMsg {
		t.Helper()
		return cmd(d, ids).(statusLineMsg)
	}
	cordon := func(d *deps, ids []string) any { return cordonAction(d, ids)() }
	uncordon := func(d *deps, ids []string) any { return uncordonAction(d, ids)() }

	if m := run(cordon, "a", "b"); m.err || m.text != "cordoned 2 nodes" {
		t.Fatalf("bulk cordon: %+v", m)
	}
	m := run(cordon, "gone")
	if !m.err || !strings.HasPrefix(m.text, "cordon failed: gone is TERMINATING; it cannot be cordoned") {
		t.Fatalf("refused cordon: %q", m.text)
	}
	m = run(uncordon, "a", "gone", "nope")
	if !m.err || !strings.HasPrefix(m.text, "uncordoned 1 of 3 nodes; 2 failed: gone is TERMINATING") || !strings.Contains(m.text, "nope: no such node") {
		t.Fatalf("partly refused uncordon: %q", m.text)
	}
	if m := run(cordon, "gone", "nope"); !m.err || !strings.HasPrefix(m.text, "cordon failed on all 2 nodes: ") {
		t.Fatalf("all refused: %q", m.text)
	}
}
