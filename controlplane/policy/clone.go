package policy

import (
	"maps"
	"slices"
)

// Clone returns a copy of r that shares nothing with it, so a change that
// cannot be saved can put the counts back as they were. A nil r clones to
// an empty one.
func (r *Repeats) Clone() *Repeats {
	c := &Repeats{}
	if r == nil || r.times == nil {
		return c
	}
	c.times = maps.Clone(r.times)
	for k, ts := range c.times {
		c.times[k] = slices.Clone(ts)
	}
	return c
}
