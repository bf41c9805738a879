package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/fleettest"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/sim"
)

// TestMain lets the test binary stand in for the suite's binary when
// snapshotInProcess runs it as the snapshot client.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == snapshotCommand {
		if err := snapshotMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestSnapshotFromItsOwnProcess: the snapshot is timed by a client process
// of its own, over TLS with the operator's token, which goes to it in its
// environment; a wrong token is refused and said so.
func TestSnapshotFromItsOwnProcess(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	for i := range 20 {
		id := fmt.Sprintf("node-%02d", i)
		if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Hostname: id, Gpus: fleettest.GPUs(8)}); err != nil {
			t.Fatal(err)
		}
	}
	d, cpu, err := snapshotInProcess(ctx, cp.Target())
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || cpu <= 0 {
		t.Fatalf("snapshot took %s and %s of CPU", d, cpu)
	}
	wrong := cp.Target()
	wrong.Token = "not-a-token"
	if _, _, err := snapshotInProcess(ctx, wrong); err == nil || !strings.Contains(err.Error(), "snapshot client") {
		t.Fatalf("a wrong token: %v", err)
	}
}

// TestXIDWatcherJoinsBeforeTheWindow: the watcher returns once its
// snapshot is complete, then times the XIDs injected in the window as
// they reach it; a watcher the control plane refuses is an error, not a
// silent empty measurement.
func TestXIDWatcherJoinsBeforeTheWindow(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	ctx := context.Background()
	fleet, err := sim.New(sim.Options{Server: cp.Target(), Nodes: 20, GPUs: 8, Conns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	if err := fleet.Register(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := watchXIDs(ctx, cp.Target())
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if w.snapshotNodes != 20 {
		t.Fatalf("the watcher returned with %d nodes of its snapshot, want all 20", w.snapshotNodes)
	}
	got, err := w.measure(ctx, fleet, 20, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// One XID every 100 ms for the window less two seconds: about ten.
	if len(got) < 8 || len(got) > 11 {
		t.Errorf("timed %d XIDs in a 3 s window, want about 10", len(got))
	}
	for _, d := range got {
		if d <= 0 || d > 5*time.Second {
			t.Errorf("an XID took %s to reach the watcher", d)
		}
	}
	wrong := cp.Target()
	wrong.Token = "not-a-token"
	if w, err := watchXIDs(ctx, wrong); err == nil {
		w.close()
		t.Fatal("a watcher with a wrong token was opened")
	}
}
