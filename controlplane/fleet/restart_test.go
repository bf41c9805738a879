package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/controlplane/watch"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
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
		// The send that cancelled ctx put its message in first before.
		select {
		case m := <-first:
			return m
		default:
		}
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

// TestBreakerWindowSurvivesRestart: the breaker's recent cordons and its
// trip outlive a restart, so a restart within the window cordons no more of
// the fleet, and the window still ends on time.
func TestBreakerWindowSurvivesRestart(t *testing.T) {
	st := openStore(t, t.TempDir())
	clock := clockwork.NewFakeClockAt(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	f := newFleet(t, Options{Store: st, Clock: clock})
	for _, id := range []string{"a", "b", "c", "d"} {
		register(t, f, id, 1)
	}
	// Half of 4 nodes may be cordoned; the third trips the breaker.
	for _, id := range []string{"a", "b", "c"} {
		if _, err := xid(t, f, id, 0, 79); err != nil {
			t.Fatal(err)
		}
	}
	before := f.breaker.status(clock.Now())
	if !before.GetTripped() || before.GetRecentAutoCordons() != 2 || before.GetSuppressedCordons() != 1 {
		t.Fatalf("before the restart the breaker is %v, want tripped after 2 cordons and 1 held back", before)
	}
	f.Close()

	clock.Advance(time.Minute)
	f = newFleet(t, Options{Store: st, Clock: clock})
	defer f.Close()
	after := f.breaker.status(clock.Now())
	if !after.GetTripped() || !after.GetTrippedAt().AsTime().Equal(before.GetTrippedAt().AsTime()) ||
		after.GetRecentAutoCordons() != 2 || after.GetSuppressedCordons() != 1 {
		t.Fatalf("after the restart the breaker is %v, want it as it was: %v", after, before)
	}
	if _, err := xid(t, f, "d", 0, 79); err != nil {
		t.Fatal(err)
	}
	if l := f.get("d").node.Load().GetLifecycle(); l != fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE {
		t.Fatalf("d is %s after a restart within the window, want it left active", l)
	}
	if got := f.breaker.status(clock.Now()).GetSuppressedCordons(); got != 2 {
		t.Fatalf("%d cordons held back, want 2", got)
	}

	clock.Advance(testConfig().AutoCordonWindow)
	if s := f.breaker.status(clock.Now()); s.GetTripped() || s.GetRecentAutoCordons() != 0 {
		t.Fatalf("once the window has passed the breaker is %v, want closed and empty", s)
	}
}
