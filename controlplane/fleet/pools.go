package fleet

import (
	"fmt"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// PoolNodes returns the nodes of every pool, by pool name, as operators
// see them; nodes of no pool are left out.
func (f *Fleet) PoolNodes() map[string][]*fleetv1.Node {
	out := make(map[string][]*fleetv1.Node)
	for _, ns := range f.all() {
		if n := ns.node.Load(); n.GetPool() != "" {
			out[n.GetPool()] = append(out[n.GetPool()], ns.view())
		}
	}
	return out
}

// BreakerOpen reports whether the auto-cordon breaker is open.
func (f *Fleet) BreakerOpen() bool {
	return f.breaker.status(f.clock.Now()).GetTripped()
}

// PublishPool tells watchers of a pool's change.
func (f *Fleet) PublishPool(p *fleetv1.Pool) { f.hub.PublishPool(p) }

// RemovePool tells watchers a pool is gone.
func (f *Fleet) RemovePool(name string) { f.hub.RemovePool(name) }

// AwaitsAgent reports whether a node waits for its agent's first join:
// recorded by a provider and still PROVISIONING. A launched instance's
// join token works only then.
func (f *Fleet) AwaitsAgent(nodeID string) error {
	ns := f.get(nodeID)
	if ns == nil {
		return fmt.Errorf("node %q is not being provisioned", nodeID)
	}
	n := ns.node.Load()
	if n.GetProvider() == "" || n.GetLifecycle() != provisioning {
		return fmt.Errorf("node %q is %s, not waiting for its agent", nodeID, display.Lifecycle(n.GetLifecycle()))
	}
	return nil
}
