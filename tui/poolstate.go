package tui

import (
	"maps"
	"slices"
	"strings"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The pools are part of the console's copy of the fleet, kept by the same
// stream: the snapshot's last chunk holds every pool, then each upsert
// brings one in full, with its status, and each removal names one. Which
// pool a node belongs to is the node's own (Node.pool); the fleet indexes
// the rows by it as nodes come, change and go, so that a pool's nodes are
// found without walking the fleet.

// setPools replaces every pool with a snapshot's.
func (f *fleet) setPools(pools []*fleetv1.Pool) {
	clear(f.pools)
	for _, p := range pools {
		f.pools[p.GetName()] = p
	}
	f.poolNames = slices.Sorted(maps.Keys(f.pools))
	// The members were indexed afresh too.
	f.joins++
}

// putPool adds or replaces one pool.
func (f *fleet) putPool(p *fleetv1.Pool) {
	_, known := f.pools[p.GetName()]
	f.pools[p.GetName()] = p
	if !known {
		f.poolNames = slices.Sorted(maps.Keys(f.pools))
	}
}

// removePool forgets a pool. Its nodes stay, and say which pool they were
// in until they change.
func (f *fleet) removePool(name string) {
	delete(f.pools, name)
	if i, ok := slices.BinarySearch(f.poolNames, name); ok {
		f.poolNames = slices.Delete(f.poolNames, i, i+1)
	}
}

// poolRemoved reports whether m removes a pool. The name alone cannot
// say: the oneof is what tells a removal apart.
func poolRemoved(m *controlplanev1.WatchFleetResponse) bool {
	_, ok := m.GetChange().(*controlplanev1.WatchFleetResponse_PoolRemoved)
	return ok
}

// join moves r, which was in pool was, into the pool it names now.
func (f *fleet) join(r *row, was string) {
	if was != r.pool {
		f.leave(r, was)
	}
	if r.pool == "" || f.members[r.pool][r.id] == r {
		return
	}
	f.joins++
	if f.members[r.pool] == nil {
		f.members[r.pool] = make(map[string]*row)
	}
	f.members[r.pool][r.id] = r
}

// leave takes r out of pool name's index.
func (f *fleet) leave(r *row, name string) {
	if _, ok := f.members[name][r.id]; !ok {
		return
	}
	f.joins++
	delete(f.members[name], r.id)
	if len(f.members[name]) == 0 {
		delete(f.members, name)
	}
}

// poolRows are the rows of pool name's nodes, ordered by node id.
func (f *fleet) poolRows(name string) []*row {
	rows := make([]*row, 0, len(f.members[name]))
	for _, r := range f.members[name] {
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b *row) int { return strings.Compare(a.id, b.id) })
	return rows
}
