package fleet

import (
	"fmt"
	"slices"
	"strings"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// UnansweredPrefix starts the UUID the control plane gives a GPU that did
// not answer the agent, whose own UUID is unknown.
const UnansweredPrefix = "unanswered-gpu"

func isUnanswered(g *fleetv1.Gpu) bool { return strings.HasPrefix(g.GetUuid(), UnansweredPrefix) }

// inventory is what a registration says of the GPUs a node had that it no
// longer lists. It is decided by matchInventory alone, without the policy,
// so the matching can be tested on its own.
type inventory struct {
	// replaced maps a missing GPU to the new GPU that took its slot: the
	// old one is retired with its faults.
	replaced map[*fleetv1.Gpu]*fleetv1.Gpu
	// stands maps a placeholder to the GPU that still does not answer and
	// that it stands for.
	stands map[*fleetv1.Gpu]*nodev1.UnansweredGpu
	// unplaced are the GPUs that do not answer with no placeholder yet.
	unplaced []*nodev1.UnansweredGpu
}

// matchInventory matches the GPUs a node had and no longer lists (missing)
// with the GPUs new in this registration (fresh) and the GPUs the agent
// says do not answer.
//
// A GPU that did not answer before is kept as a placeholder (unanswered-…,
// its UUID unknown). While the agent still reports GPUs that do not answer,
// the placeholders stand for them, matched by index and then in order, as
// GPUs renumber when one vanishes; a placeholder left over has answered,
// and takes a new GPU.
//
// A new GPU in a missing GPU's slot replaced it. Slots match by PCI bus id
// first, then by index for GPUs whose bus id is unknown.
func matchInventory(missing, fresh []*fleetv1.Gpu, unansweredGPUs []*nodev1.UnansweredGpu) inventory {
	inv := inventory{replaced: map[*fleetv1.Gpu]*fleetv1.Gpu{}, stands: map[*fleetv1.Gpu]*nodev1.UnansweredGpu{}}
	bus := func(g *fleetv1.Gpu) string { return strings.ToLower(g.GetPciBusId()) }
	missingBus := map[string]bool{}
	placeholders := 0
	for _, g := range missing {
		if b := bus(g); b != "" {
			missingBus[b] = true
		}
		if isUnanswered(g) {
			placeholders++
		}
	}

	unanswered := slices.Clone(unansweredGPUs)
	slices.SortFunc(unanswered, func(a, b *nodev1.UnansweredGpu) int { return int(a.GetIndex()) - int(b.GetIndex()) })
	used := map[*nodev1.UnansweredGpu]bool{}
	stand := func(ok func(g *fleetv1.Gpu, u *nodev1.UnansweredGpu) bool) {
		for _, g := range missing {
			if !isUnanswered(g) || inv.stands[g] != nil {
				continue
			}
			for _, u := range unanswered {
				if !used[u] && ok(g, u) {
					inv.stands[g], used[u] = u, true
					break
				}
			}
		}
	}
	if placeholders != len(unanswered) || len(fresh) > 0 {
		// Some answer now, or more do not: those still at their index
		// first. (As many as before, with no new GPU, are the same GPUs:
		// they keep their order, renumbered or not.)
		stand(func(g *fleetv1.Gpu, u *nodev1.UnansweredGpu) bool { return g.GetIndex() == u.GetIndex() })
		// A known GPU that stops answering is lost under its own UUID: the
		// entry at its index needs no placeholder.
		for _, g := range missing {
			for _, u := range unanswered {
				if !isUnanswered(g) && !used[u] && g.GetIndex() == u.GetIndex() {
					used[u] = true
				}
			}
		}
	}
	stand(func(*fleetv1.Gpu, *nodev1.UnansweredGpu) bool { return true })
	for _, u := range unanswered {
		if !used[u] {
			inv.unplaced = append(inv.unplaced, u)
		}
	}

	taken := map[*fleetv1.Gpu]bool{}
	pair := func(m *fleetv1.Gpu, ok func(nw *fleetv1.Gpu) bool) {
		if inv.replaced[m] != nil || inv.stands[m] != nil {
			return
		}
		for _, nw := range fresh {
			if !taken[nw] && ok(nw) {
				inv.replaced[m], taken[nw] = nw, true
				return
			}
		}
	}
	for _, m := range missing {
		if bus(m) != "" {
			pair(m, func(nw *fleetv1.Gpu) bool { return bus(nw) == bus(m) })
		}
	}
	for _, m := range missing {
		if bus(m) == "" {
			pair(m, func(nw *fleetv1.Gpu) bool { return nw.GetIndex() == m.GetIndex() && !missingBus[bus(nw)] })
		}
	}
	for _, m := range missing {
		if isUnanswered(m) {
			pair(m, func(nw *fleetv1.Gpu) bool { return !missingBus[bus(nw)] })
		}
	}
	return inv
}

// placeholderName is a UUID for a GPU that does not answer, unique among
// names.
func placeholderName(u *nodev1.UnansweredGpu, names map[string]bool) string {
	name := UnansweredPrefix + fmt.Sprint(u.GetIndex())
	for n := 2; names[name]; n++ {
		name = fmt.Sprintf("%s%d-%d", UnansweredPrefix, u.GetIndex(), n)
	}
	names[name] = true
	return name
}
