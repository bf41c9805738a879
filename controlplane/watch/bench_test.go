package watch

import (
	"testing"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// benchOptions are the hub's sizes in the default configuration.
var benchOptions = Options{Buffer: 65536, Replay: 16384}

// BenchmarkWatchFanOut publishes one change to 100 watchers.
func BenchmarkWatchFanOut(b *testing.B) {
	h := newHub(b, fleetOf(10), benchOptions)
	for range 100 {
		w, _, _ := h.subscribe(0)
		go func() {
			lagged := w.lagged
			for {
				select {
				case <-w.ready:
					h.take(w)
				case <-lagged:
					h.resync(w)
					lagged = w.lagged
				case <-h.done:
					return
				}
			}
		}()
	}
	gpus := make([]*fleetv1.Gpu, 8)
	for i := range gpus {
		gpus[i] = &fleetv1.Gpu{Index: uint32(i), Health: fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY}
	}
	n := &fleetv1.Node{NodeId: "node-000000", Gpus: gpus, Health: fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.Publish(func(emit func(*controlplanev1.WatchFleetResponse)) {
			emit(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_NodeUpsert{NodeUpsert: n}})
		})
	}
}

// BenchmarkSnapshot is a new watcher's start on a 10 000-node fleet after
// a change, so that it cannot share the last snapshot: the entries taken at
// its revision, their views built and chunked.
func BenchmarkSnapshot(b *testing.B) {
	h := newHub(b, fleetOf(10000), benchOptions)
	discard := SendFunc(func(*controlplanev1.WatchFleetResponse) error { return nil })
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.TotalsChanged()
		w, st, _ := h.subscribe(0)
		if err := h.sendStart(discard, st); err != nil {
			b.Fatal(err)
		}
		h.unsubscribe(w)
	}
}
