package healthdelta

import (
	"runtime"
	"sync"
	"weak"

	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// interned holds one GpuMetrics per distinct set of parts in use, as the
// unique package does for comparable values: most GPUs of a fleet have all
// their links up and no errors counted, so a hundred thousand nodes hold a
// handful of parts between them. It is process-wide for the same reason
// unique's table is: sharing across every user is the point. An entry
// goes when no held state refers to its parts any more.
var interned = struct {
	mu    sync.Mutex
	byKey map[string]weak.Pointer[fleetv1.GpuMetrics]
}{byKey: make(map[string]weak.Pointer[fleetv1.GpuMetrics])}

// intern returns the shared parts equal to p, making p the shared one
// when there are none. p and its messages must not change afterwards.
func intern(p *fleetv1.GpuMetrics) *fleetv1.GpuMetrics {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return p
	}
	interned.mu.Lock()
	defer interned.mu.Unlock()
	if w, ok := interned.byKey[string(b)]; ok {
		if q := w.Value(); q != nil {
			return q
		}
	}
	key := string(b)
	interned.byKey[key] = weak.Make(p)
	runtime.AddCleanup(p, forget, key)
	return p
}

// forget drops key's entry once its parts are gone, unless other parts
// took the key since.
func forget(key string) {
	interned.mu.Lock()
	defer interned.mu.Unlock()
	if w, ok := interned.byKey[key]; ok && w.Value() == nil {
		delete(interned.byKey, key)
	}
}
