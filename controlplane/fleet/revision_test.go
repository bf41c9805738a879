package fleet

import (
	"context"
	"testing"

	"github.com/navarch/navarch/controlplane/watch"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// TestResumeFromBeforeRestartGetsSnapshot: reachability resets at a
// restart, so a watcher resuming from the previous run's last revision
// must start from a snapshot, even when that revision was the last of the
// block the previous run reserved.
func TestResumeFromBeforeRestartGetsSnapshot(t *testing.T) {
	st := openStore(t, t.TempDir())
	f := newFleet(t, Options{Store: st})
	register(t, f, "a", 1)
	for f.revs.current() < f.revs.ceiling {
		f.hub.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeRemoved{NodeRemoved: &controlplanev1.NodeRemoved{NodeId: "x"}}})
		})
	}
	rev := f.hub.Revision()
	f.Close()

	f = newFleet(t, Options{Store: st})
	if got := f.hub.Revision(); got <= rev {
		t.Fatalf("revision %d after a restart, %d before", got, rev)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	first := make(chan *controlplanev1.WatchFleetResponse, 1)
	go func() {
		_ = f.Watch(ctx, rev, watch.SendFunc(func(m *controlplanev1.WatchFleetResponse) error {
			select {
			case first <- m:
			default:
			}
			cancel()
			return nil
		}))
	}()
	if m := <-first; m.GetSnapshot() == nil {
		t.Fatalf("resume across a restart got %v, want a snapshot", m)
	}
}
