package fleet

import (
	"bytes"
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
)

// flakyStore is the real store whose writes can be made to fail, as a full
// or broken disk would make them.
type flakyStore struct {
	store.Store
	failing atomic.Bool
}

func (s *flakyStore) Apply(ctx context.Context, w store.Write) error {
	if s.failing.Load() {
		return errDiskFull
	}
	return s.Store.Apply(ctx, w)
}

func newFlakyFleet(t *testing.T) (*Fleet, *flakyStore) {
	t.Helper()
	fs := &flakyStore{Store: openStore(t, t.TempDir())}
	return newFleet(t, Options{Store: fs}), fs
}

func openCommands(f *Fleet, id string) []*fleetv1.Command {
	ns := f.get(id)
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return append([]*fleetv1.Command(nil), ns.book.open...)
}

// TestFailedWriteKeepsOpenCommands: an action whose change cannot be saved
// leaves the node's queued commands exactly as they were, so nothing is
// handed to the agent that the store does not know, and nothing queued is
// lost.
func TestFailedWriteKeepsOpenCommands(t *testing.T) {
	ctx := ctxT(t)
	f, fs := newFlakyFleet(t)
	if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: fleettest.GPUs(1)}); err != nil {
		t.Fatal(err)
	}
	_, drain, err := f.Drain(ctx, "n1", "upgrade", time.Time{}, false)
	if err != nil {
		t.Fatal(err)
	}
	before := openCommands(f, "n1")

	fs.failing.Store(true)
	if _, err := f.Uncordon(ctx, "n1", ""); err == nil {
		t.Fatal("uncordon succeeded with a failing store")
	}
	if _, err := f.Terminate(ctx, "n1", "", false, 0); err == nil {
		t.Fatal("terminate succeeded with a failing store")
	}
	if got := openCommands(f, "n1"); len(got) != len(before) || !proto.Equal(got[0], before[0]) {
		t.Fatalf("open commands after failed writes: %v, want %v", got, before)
	}
	if _, err := f.NodeCommands(ctx, "n1", 0); err == nil {
		t.Fatal("delivery succeeded with a failing store")
	}

	fs.failing.Store(false)
	got, err := f.NodeCommands(ctx, "n1", 0)
	if err != nil || len(got) != 1 || got[0].GetId() != drain.GetId() {
		t.Fatalf("after the store recovered: %v %v", got, err)
	}
	if n := f.get("n1").node.Load(); n.GetLifecycle() != draining {
		t.Fatalf("lifecycle %s", n.GetLifecycle())
	}
}

// TestRegistrationRacingRemovalCreatesANewNode: a registration that found a
// node just before retention removed it must not write into the removed
// one; it registers a new node.
func TestRegistrationRacingRemovalCreatesANewNode(t *testing.T) {
	ctx := ctxT(t)
	f, _ := newFlakyFleet(t)
	if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: fleettest.GPUs(1)}); err != nil {
		t.Fatal(err)
	}
	old := f.get("n1")
	old.mu.Lock()
	done := make(chan error, 1)
	go func() {
		_, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: fleettest.GPUs(2)})
		done <- err
	}()
	// Wait until the registration has found the node and waits for its lock.
	testutil.Eventually(t, "the registration waiting for the node", func() bool {
		buf := make([]byte, 1<<20)
		return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("fleet.(*Fleet).withNode"))
	})
	if err := f.commit(ctx, old, &change{remove: true}); err != nil {
		t.Fatal(err)
	}
	old.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cur := f.get("n1")
	if cur == nil || cur == old || len(cur.node.Load().GetGpus()) != 2 {
		t.Fatalf("registration after removal: %v", cur)
	}
	f.setReachability(old, fleetv1.Reachability_REACHABILITY_STALE)
	if got, want := f.summary(), scanSummary(f); !proto.Equal(got, want) {
		t.Fatalf("totals %v, counted %v", got, want)
	}
	if _, err := f.Cordon(ctx, "gone", ""); err == nil {
		t.Fatal("cordon of an unknown node succeeded")
	}
}
