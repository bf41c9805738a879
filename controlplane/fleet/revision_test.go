package fleet

import (
	"testing"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/store"
)

// publishTo publishes changes until the fleet's revision reaches rev.
func publishTo(f *Fleet, rev uint64) {
	for f.hub.Revision() < rev {
		f.hub.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeRemoved{NodeRemoved: &controlplanev1.NodeRemoved{NodeId: "x"}}})
		})
	}
}

// TestRevisionsAcrossRestarts: reachability resets at a restart, so a
// watcher resuming from the previous run's last revision must start from a
// snapshot, and no revision of the previous run is handed out again: after
// a clean close the next run continues right after the last revision;
// after a crash (the store closed under a fleet that never closed) it
// starts past everything the crashed run may have handed out, also the
// revisions it took while the store could not record a ceiling.
func TestRevisionsAcrossRestarts(t *testing.T) {
	cases := []struct {
		name string
		// run drives the previous run on st and ends it.
		run func(t *testing.T, f *Fleet, st store.Store)
		// maxJump bounds the first revision of the next run past the
		// previous run's last; 0 is no bound.
		maxJump uint64
	}{
		{"clean-close", func(t *testing.T, f *Fleet, st store.Store) {
			publishTo(f, f.hub.Revision()+10)
			f.Close()
		}, 1},
		{"clean-close-at-the-ceiling", func(t *testing.T, f *Fleet, st store.Store) {
			publishTo(f, f.revs.ceiling)
			f.Close()
		}, 1},
		{"crash", func(t *testing.T, f *Fleet, st store.Store) {
			publishTo(f, f.hub.Revision()+10)
			_ = st.Close()
		}, 0},
		{"crash-with-revisions-past-the-ceiling", func(t *testing.T, f *Fleet, st store.Store) {
			publishTo(f, f.revs.ceiling)
			// The store fails: the next revisions cannot reserve a block
			// and are forced past the stored ceiling.
			_ = st.Close()
			publishTo(f, f.hub.Revision()+10)
		}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			st := openStore(t, dir)
			// A run after a clean restart that crashes must not be taken
			// for a clean one.
			first := newFleet(t, Options{Store: st})
			register(t, first, "a", 1)
			first.Close()

			f := newFleet(t, Options{Store: st})
			register(t, f, "b", 1)
			c.run(t, f, st)
			rev := f.hub.Revision()
			_ = st.Close()

			st = openStore(t, dir)
			f = newFleet(t, Options{Store: st})
			defer f.Close()
			got := f.hub.Revision()
			if got <= rev {
				t.Fatalf("revision %d after the restart, %d before: a revision would repeat", got, rev)
			}
			if c.maxJump > 0 && got-rev > c.maxJump {
				t.Fatalf("revision %d after the restart, %d before: a jump of %d, want at most %d", got, rev, got-rev, c.maxJump)
			}
			if m := firstMessage(t, f, rev); m.GetSnapshot() == nil {
				t.Fatalf("resume from %d across a restart got %v, want a snapshot", rev, m)
			}
		})
	}
}
