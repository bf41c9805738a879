package fleet

import (
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"

	"github.com/navarch/navarch/internal/apierr"
)

// nodeLocked runs fn with the node's lock held, creating the node first
// when create is set and it does not exist. fn sees nil for a node being
// created. When fn fails, the node's bookkeeping is put back whole: fn may
// queue or cancel commands, count repeats and set flags before its change
// is committed.
func (f *Fleet) nodeLocked(id string, create bool, fn func(ns *nodeState, cur *fleetv1.Node) error) error {
	for {
		ns := f.lookup(id, create)
		if ns == nil {
			return apierr.NodeNotFound(id)
		}
		retry, err := f.withNode(ns, id, create, fn)
		if !retry {
			return err
		}
		// The node left the fleet while this call waited for its lock: a
		// registration starts a new one, anything else finds none.
	}
}

// lookup finds the node, or the one whose first registration is under way,
// or, with create, starts creating it.
func (f *Fleet) lookup(id string, create bool) *nodeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ns := f.nodes[id]; ns != nil {
		return ns
	}
	// A node whose first registration is under way exists once it is
	// done: wait for it rather than miss it.
	if ns := f.creating[id]; ns != nil || !create {
		return ns
	}
	if f.creating == nil {
		f.creating = make(map[string]*nodeState)
	}
	ns := newNodeState(nil)
	f.creating[id] = ns
	return ns
}

func (f *Fleet) withNode(ns *nodeState, id string, create bool, fn func(ns *nodeState, cur *fleetv1.Node) error) (retry bool, err error) {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	if create {
		// Created or failed: either way the node is no longer being created.
		defer func() {
			f.mu.Lock()
			if f.creating[id] == ns {
				delete(f.creating, id)
			}
			f.mu.Unlock()
		}()
	}
	if ns.removed.Load() {
		if create {
			return true, nil
		}
		return false, apierr.NodeNotFound(id)
	}
	cur := ns.node.Load()
	if cur == nil && !create {
		return false, apierr.NodeNotFound(id)
	}
	saved := ns.book.clone()
	defer ns.recount()
	if err := fn(ns, cur); err != nil {
		ns.book = saved
		return false, err
	}
	return false, nil
}
