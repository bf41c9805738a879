package gpu

import (
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// HWSlowdown reports whether clock-event reasons show hardware slowdown for
// the GPU's temperature or an external signal. NVML's generic HW-slowdown
// reason also stands for the power brake, and is set beside it when the
// brake engages: a slowdown the brake explains is the brake's, so that
// it says check the power supply, not the cooling.
func HWSlowdown(reasons uint64) bool {
	if reasons&nvml.ClocksThrottleReasonHwThermalSlowdown != 0 {
		return true
	}
	return reasons&nvml.ClocksThrottleReasonHwSlowdown != 0 && !PowerBrake(reasons)
}

// PowerBrake reports whether clock-event reasons show the system's power
// brake slowing the GPU: a power supply problem, not the GPU's temperature.
func PowerBrake(reasons uint64) bool {
	return reasons&nvml.ClocksThrottleReasonHwPowerBrakeSlowdown != 0
}

// replayWindow is the span of readings the PCIe replay rate is taken over.
const replayWindow = time.Minute

// history is what the reader keeps of one GPU between readings, for the
// metrics that one reading cannot show alone.
type history struct {
	hwSlowdown  streak
	powerBrake  streak
	pcieReplays replayRate
	// nvlinkErrors is each link's last error counters read, in the order
	// nvlinkCounters lists them.
	nvlinkErrors map[uint32][len(nvlinkCounters)]uint64
}

func newHistory() *history {
	return &history{nvlinkErrors: make(map[uint32][len(nvlinkCounters)]uint64)}
}

// streak is how long a condition has held on every reading without a
// break.
type streak struct {
	on    bool
	since time.Time
}

// observe records whether the condition holds at now and returns for how
// many whole seconds it has held: 0 when it does not hold now, or has only
// just begun.
func (s *streak) observe(on bool, now time.Time) uint32 {
	switch {
	case !on:
		*s = streak{}
		return 0
	case !s.on || now.Before(s.since):
		// A clock that went back starts the streak again rather than
		// reporting a negative or inflated span.
		*s = streak{on: true, since: now}
	}
	return uint32(min(now.Sub(s.since)/time.Second, 1<<32-1))
}

// replayRate turns the PCIe replay counter into replays per minute over
// the readings of the last minute.
type replayRate struct {
	samples []counterSample // oldest first
	rate    uint32
}

type counterSample struct {
	at    time.Time
	count uint64
}

// observe records the counter read at now and returns the replay rate per
// minute. ok false means the counter could not be read: the last rate
// stands, so one failed read does not report the same rate as new on the
// next. The rate is 0 until two readings exist, and until the readings
// span a minute it counts the replays seen, unscaled; a counter that went down
// (a driver reload) or a clock that went back starts the window again.
func (r *replayRate) observe(count uint64, ok bool, now time.Time) uint32 {
	if !ok {
		return r.rate
	}
	if n := len(r.samples); n > 0 && (count < r.samples[n-1].count || now.Before(r.samples[n-1].at)) {
		r.samples = r.samples[:0]
	}
	// Readings older than the window go, except the newest of them when it
	// is the only one before now: a poll interval longer than the window
	// still yields a rate, over that interval.
	for len(r.samples) > 1 && now.Sub(r.samples[0].at) > replayWindow {
		r.samples = r.samples[1:]
	}
	r.samples = append(r.samples, counterSample{at: now, count: count})
	first := r.samples[0]
	elapsed := now.Sub(first.at)
	r.rate = 0
	if elapsed > 0 {
		// Over less than a minute of readings the rate is the replays seen
		// so far, not extrapolated: two replays five seconds apart are two
		// in the minute, not 24 a minute.
		perMinute := float64(count-first.count) * float64(replayWindow) / float64(max(elapsed, replayWindow))
		r.rate = uint32(min(perMinute+0.5, 1<<32-1))
	}
	return r.rate
}
