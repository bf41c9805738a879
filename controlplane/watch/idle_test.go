package watch

import (
	"context"
	"runtime"
	"sync"
	"testing"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// idleWatchers starts n watchers whose streams take one message and then
// read nothing, as a client that never reads; it returns once every one is
// stuck on its first snapshot chunk. The watchers end with ctx; wait
// returns when they have.
func idleWatchers(ctx context.Context, h *Hub, n int) (wait func()) {
	var stuck, ended sync.WaitGroup
	stuck.Add(n)
	ended.Add(n)
	for range n {
		go func() {
			defer ended.Done()
			var first sync.Once
			_ = h.Serve(ctx, 0, SendFunc(func(*controlplanev1.WatchFleetResponse) error {
				first.Do(stuck.Done)
				<-ctx.Done()
				return ctx.Err()
			}))
		}()
	}
	stuck.Wait()
	return ended.Wait
}

// heapAfterGC is the live heap, in bytes, once the collector has run.
func heapAfterGC() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// changeFleet publishes changes to some of f's nodes and flushes
// heartbeats of all of them, a few rounds of each.
func changeFleet(h *Hub, f *fakeFleet, rounds int) {
	for round := range rounds {
		for i := 0; i < len(f.nodes); i += 10 {
			upsert(h, &fleetv1.Node{NodeId: f.nodes[i].state.GetNodeId(), Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED})
		}
		for _, n := range f.nodes {
			f.beat(h, n.state.GetNodeId(), uint32(round))
		}
		h.Flush()
	}
}

// TestIdleWatchersMemory: watchers that read nothing cost memory for what
// waits for them, not for their bound, and share one snapshot: a thousand
// of them on a thousand-node fleet, with the default 65 536-change bound,
// while changes and heartbeats flow, add well under 32 KiB each to the
// heap. A queue allocated at its bound would be 512 KiB each.
func TestIdleWatchersMemory(t *testing.T) {
	const watchers = 1000
	const perWatcher = 32 << 10
	f := fleetOf(1000)
	h := newHub(t, f, Options{Buffer: 65536, Replay: 16384})
	changeFleet(h, f, 1) // the ring and the fleet at their working size
	before := heapAfterGC()
	ctx, cancel := context.WithCancel(context.Background())
	wait := idleWatchers(ctx, h, watchers)
	defer wait()
	defer cancel()
	changeFleet(h, f, 3)
	grown := heapAfterGC() - before
	if grown > watchers*perWatcher {
		t.Fatalf("%d idle watchers grew the heap by %d MiB, %d KiB each; want under %d KiB each",
			watchers, grown>>20, grown/watchers>>10, perWatcher>>10)
	}
	t.Logf("%d idle watchers: %d KiB of heap each", watchers, grown/watchers>>10)
}
