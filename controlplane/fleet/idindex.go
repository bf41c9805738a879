package fleet

import (
	"maps"
	"slices"
	"sort"
)

// idIndex keeps the fleet's node ids in order, so that a page of
// ListNodes without a filter costs its size rather than a pass over the
// fleet. Adding and removing a node only notes the id; the order is
// brought up to date by the next page that needs it, in one merge of the
// sorted ids with the few noted since, so registering a hundred thousand
// nodes does not move the whole list once per node.
//
// The fleet's mu guards it: ids are noted under the write lock, with the
// map they mirror, and the merge happens under the write lock too.
type idIndex struct {
	sorted []string
	// changed holds the ids added (true) or removed (false) since the
	// last merge, the latest word for each.
	changed map[string]bool
}

// load makes the index of a fleet loaded at start: its ids sorted once,
// instead of a note for each and a merge at the first page.
func (x *idIndex) load(nodes map[string]*nodeState) {
	x.sorted = slices.Sorted(maps.Keys(nodes))
	x.changed = nil
}

// note records that id was added or removed.
func (x *idIndex) note(id string, present bool) {
	if x.changed == nil {
		x.changed = make(map[string]bool)
	}
	x.changed[id] = present
}

// current reports whether the sorted ids are up to date.
func (x *idIndex) current() bool { return len(x.changed) == 0 }

// merge brings the sorted ids up to date: the ids noted are sorted on
// their own and merged into the rest in one pass.
func (x *idIndex) merge() {
	if x.current() {
		return
	}
	var added []string
	for id, present := range x.changed {
		if present {
			added = append(added, id)
		}
	}
	slices.Sort(added)
	out := make([]string, 0, len(x.sorted)+len(added))
	i := 0
	for _, id := range x.sorted {
		for i < len(added) && added[i] < id {
			out = append(out, added[i])
			i++
		}
		if i < len(added) && added[i] == id {
			i++ // noted again while present: one entry
		}
		if present, noted := x.changed[id]; noted && !present {
			continue
		}
		out = append(out, id)
	}
	out = append(out, added[i:]...)
	x.sorted, x.changed = out, nil
}

// after returns the position of the first id greater than after.
func (x *idIndex) after(after string) int {
	return sort.Search(len(x.sorted), func(i int) bool { return x.sorted[i] > after })
}

// putNode adds or replaces node id's state; the caller holds f.mu for
// writing.
func (f *Fleet) putNode(id string, ns *nodeState) {
	if _, ok := f.nodes[id]; !ok {
		f.byID.note(id, true)
	}
	f.nodes[id] = ns
}

// deleteNode drops node id; the caller holds f.mu for writing.
func (f *Fleet) deleteNode(id string) {
	if _, ok := f.nodes[id]; ok {
		f.byID.note(id, false)
	}
	delete(f.nodes, id)
}

// pageByID returns the nodes of an unfiltered page in id order: up to
// pageSize nodes with ids after after, and whether more follow. Each is
// read with its state and reachability at the time it is taken.
func (f *Fleet) pageByID(pageSize int, after string) (page []*nodeState, more bool, total int) {
	f.mu.RLock()
	if f.byID.current() {
		defer f.mu.RUnlock()
		return f.readPage(pageSize, after)
	}
	f.mu.RUnlock()
	// The page is read under the lock it was merged under: nodes removed
	// between the two would leave a short page that says more follow.
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byID.merge()
	return f.readPage(pageSize, after)
}

// readPage reads an unfiltered page from the merged index; the caller
// holds f.mu.
func (f *Fleet) readPage(pageSize int, after string) (page []*nodeState, more bool, total int) {
	sorted := f.byID.sorted
	start := f.byID.after(after)
	end := min(len(sorted), start+max(pageSize, 0))
	page = make([]*nodeState, 0, end-start)
	for _, id := range sorted[start:end] {
		if ns := f.nodes[id]; ns != nil {
			page = append(page, ns)
		}
	}
	return page, end < len(sorted), len(f.nodes)
}
