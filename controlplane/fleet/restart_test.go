package fleet

import (
	"context"
	"testing"

	"github.com/navarch/navarch/controlplane/watch"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// firstMessage is the first message a watcher starting from since is sent.
func firstMessage(t *testing.T, f *Fleet, since uint64) *controlplanev1.WatchFleetResponse {
	t.Helper()
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	first := make(chan *controlplanev1.WatchFleetResponse, 1)
	go func() {
		_ = f.Watch(ctx, since, watch.SendFunc(func(m *controlplanev1.WatchFleetResponse) error {
			select {
			case first <- m:
			default:
			}
			cancel()
			return nil
		}))
	}()
	select {
	case m := <-first:
		return m
	case <-ctx.Done():
		t.Fatal("no message from the watch")
		return nil
	}
}

// TestSnapshotCarriesEventsAfterRestart: the events recorded before a
// restart are in the first snapshot after it, newest first, as ListEvents
// has them.
func TestSnapshotCarriesEventsAfterRestart(t *testing.T) {
	st := openStore(t, t.TempDir())
	f := newFleet(t, Options{Store: st})
	register(t, f, "a", 2)
	for _, code := range []uint32{31, 79} {
		if _, err := xid(t, f, "a", 0, code); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	f = newFleet(t, Options{Store: st})
	defer f.Close()
	want, err := f.Events(ctxT(t), "", 0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != 2 {
		t.Fatalf("ListEvents has %d events after the restart, want 2", len(want))
	}
	snap := firstMessage(t, f, 0).GetSnapshot()
	got := snap.GetRecentEvents()
	if len(got) != len(want) {
		t.Fatalf("snapshot after a restart carries %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].GetId() != want[i].GetId() || got[i].GetXid() != want[i].GetXid() {
			t.Fatalf("snapshot event %d is %s (xid %d), want %s (xid %d)", i, got[i].GetId(), got[i].GetXid(), want[i].GetId(), want[i].GetXid())
		}
	}
}
