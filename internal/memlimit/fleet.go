package memlimit

import (
	"math"
	"runtime/debug"
	"runtime/metrics"
)

// A fleet's budget: what auto lets the heap grow to once it knows the
// fleet's size. At 100 000 eight-GPU nodes on shared connections the
// control plane keeps about 7 KiB of state a node and 11 KiB for each
// agent's held command stream (gRPC's call state and a goroutine); the
// budget leaves room for that and for the garbage made between
// collections, and Base covers an empty control plane's runtime, Badger's
// caches and the watchers' queues.
const (
	BudgetBase    = 256 << 20
	BudgetPerNode = 32 << 10
)

// liveShare is how far above what is live (heap and goroutine stacks) the
// limit always stays, whatever the budget: a fleet that keeps more than
// its budget (each real agent's own connection adds about 34 KiB) gets a
// collection for every half of its live heap allocated, instead of the
// runtime's default of every whole one. Tighter, the collector's passes
// over every held call's goroutine stack come so often that at 100 000
// nodes on two cores they cost more than the calls (docs/performance.md).
const liveShare = 1.5

// Fleet sizes auto's limit to the fleet: the budget for its nodes, kept
// between half as much again as what is live and the share of the cgroup or
// machine auto found (the ceiling). A fleet of a hundred thousand nodes
// thus runs with its resident memory near its budget or one and a half
// times its live heap instead of twice it, and a small control plane on a large machine is
// not held to a large machine's limit.
type Fleet struct {
	ceiling int64
}

// NewFleet sizes the limit chosen at start (l) to the fleet from now on,
// when it is auto's (cgroup or machine). A limit the operator set, off,
// or none found is left as it is and Update does nothing.
func NewFleet(l Limit) *Fleet {
	if l.Source != FromCgroup && l.Source != FromMachine {
		return &Fleet{}
	}
	return &Fleet{ceiling: l.Bytes}
}

// Sized reports whether the limit follows the fleet.
func (f *Fleet) Sized() bool { return f.ceiling > 0 }

// Update sets the limit for a fleet of nodes and returns it (0 when the
// limit does not follow the fleet).
func (f *Fleet) Update(nodes int) int64 {
	if !f.Sized() {
		return 0
	}
	limit := fleetLimit(f.ceiling, nodes, live())
	debug.SetMemoryLimit(limit)
	return limit
}

// fleetLimit is the budget for nodes, at least liveShare times live and
// at least the minimum, at most the ceiling.
func fleetLimit(ceiling int64, nodes int, live uint64) int64 {
	budget := int64(BudgetBase) + int64(nodes)*BudgetPerNode
	if floor := float64(live) * liveShare; floor > float64(budget) {
		budget = int64(math.Min(floor, math.MaxInt64/2))
	}
	return min(ceiling, max(budget, minimum))
}

// live is the heap the last collection found live, and goroutine stacks.
func live() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			n += v.Value.Uint64()
		}
	}
	return n
}
