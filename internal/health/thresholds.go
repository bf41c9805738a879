package health

import (
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The thresholds below are shared by the agent, which pushes an event when
// a condition starts, and the control plane's policy, which re-checks the
// condition on every snapshot: both judge by the same numbers.

// SustainedSlowdown is how long hardware slowdown or the power brake must
// hold a GPU's clocks down without a break before it is a fault of its own,
// not a passing clock event.
const SustainedSlowdown = 60 * time.Second

// Retired-page limits, as DCGM judges them: a GPU with RetiredPagesLimit or
// more retired pages in all, or more than RetiredDoubleBitLimit pages
// retired for double-bit errors with more than one of them in the last
// week, should be replaced.
const (
	RetiredPagesLimit     = 63
	RetiredDoubleBitLimit = 15
)

// RetiredPagesExceeded reports whether a GPU's retired pages are past the
// limits at which it should be replaced.
func RetiredPagesExceeded(rp *fleetv1.RetiredPages) bool {
	if rp.GetSingleBit()+rp.GetDoubleBit() >= RetiredPagesLimit {
		return true
	}
	return rp.GetDoubleBit() > RetiredDoubleBitLimit && rp.GetDoubleBitLastWeek() > 1
}

// pcieReplaysPerMinuteGen4x16 is the replay rate at which a PCIe Gen4 x16
// link is taken to be failing, as DCGM warns.
const pcieReplaysPerMinuteGen4x16 = 16

// PCIeReplayLimit is the PCIe replay rate per minute past which a link of
// this generation and width is taken to be failing: the Gen4 x16 limit,
// scaled by the link's transfer rate against Gen4 x16's, so a slower link,
// which sends fewer packets to replay, has a lower limit. It is never
// below 1. An unknown generation or width is taken as Gen4 x16.
func PCIeReplayLimit(gen, width uint32) uint32 {
	rate := map[uint32]float64{1: 2.5, 2: 5, 3: 8, 4: 16, 5: 32, 6: 64}
	gts, ok := rate[gen]
	if !ok {
		gts = 16
	}
	if width == 0 {
		width = 16
	}
	limit := pcieReplaysPerMinuteGen4x16 * (gts / 16) * (float64(width) / 16)
	return max(1, uint32(limit+0.5))
}
