package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/health"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Judge classifies ev, which happened on gpu, and updates gpu's faults and
// health. It fills the event's health, cause, remedy, repeat count and
// escalation. It reports whether the GPU's fault state changed.
func (p *Policy) Judge(gpu *fleetv1.Gpu, ev *fleetv1.HealthEvent, rep *Repeats, now time.Time) bool {
	if ev.GetKind() == fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED {
		ev.Health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
		ev.Remedy = fleetv1.Remedy_REMEDY_NONE
		if ev.GetCause() == "" {
			ev.Cause = "GPU recovered"
		}
		changed := p.clear(gpu, keyOf(fleetv1.EventKind_EVENT_KIND_GPU_LOST, 0))
		gpu.Lost = false
		return changed
	}
	rule, clears, ok := p.ruleFor(ev)
	if !ok {
		ev.Health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
		ev.Remedy = fleetv1.Remedy_REMEDY_NONE
		return false
	}
	k := keyOf(ev.GetKind(), ev.GetXid())
	if ev.GetKernelSeq() > 0 && ev.GetTime() != nil && gpu.GetLastResetAt() != nil && ev.GetTime().AsTime().Before(gpu.GetLastResetAt().AsTime()) {
		// A line the agent read again from the kernel log (the control
		// plane never saw this boot's log before), older than the GPU's
		// last reset: the reset answered it.
		ev.Health = rule.Health
		ev.Remedy = fleetv1.Remedy_REMEDY_NONE
		ev.Cause = rule.Meaning + " (before the GPU's last reset, which answered it)"
		return false
	}
	if clears {
		// The driver says the earlier recovery action is done.
		ev.Health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
		ev.Remedy = fleetv1.Remedy_REMEDY_NONE
		ev.Cause = rule.Meaning
		return p.clear(gpu, k)
	}
	ev.Health = rule.Health
	ev.Remedy = rule.Remedy
	ev.Cause = rule.Meaning
	window := time.Hour
	if rule.Repeat != nil {
		window = rule.Repeat.Window
	}
	n := 1
	if rep != nil {
		n = rep.add(k, now, window, p.burst, awaitsRemedy(gpu, k))
	}
	ev.RepeatCount = uint32(n)
	if r := rule.Repeat; r != nil && n >= r.Count {
		if health.Worse(r.Health, ev.Health) {
			ev.Health = r.Health
			ev.Escalated = true
		}
		if r.Remedy != fleetv1.Remedy_REMEDY_UNSPECIFIED && r.Remedy != ev.Remedy {
			ev.Remedy = r.Remedy
			ev.Escalated = true
		}
		if ev.Escalated {
			ev.Cause = fmt.Sprintf("%s, repeated %d times within %s", rule.Meaning, n, r.Window)
		}
	}
	if ev.GetKind() == fleetv1.EventKind_EVENT_KIND_GPU_LOST {
		gpu.Lost = true
	}
	if !health.Worse(ev.Health, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY) {
		return false
	}
	p.raise(gpu, k, ev, now)
	p.Rollup(gpu)
	return true
}

// raise records or refreshes the fault for k, counting a new reset or
// reboot episode and escalating the remedy past the policy's limit.
func (p *Policy) raise(gpu *fleetv1.Gpu, k faultKey, ev *fleetv1.HealthEvent, now time.Time) {
	ts := timestamppb.New(now)
	for _, f := range gpu.Faults {
		if keyOf(f.GetKind(), f.GetXid()) == k {
			f.LastSeen = ts
			f.Count++
			if health.Worse(ev.GetHealth(), f.GetHealth()) {
				f.Health = ev.GetHealth()
			}
			switch {
			case ev.GetEscalated() && !f.GetEscalated() && ev.GetRemedy() != f.GetRemedy():
				// The signal repeated: its repeat remedy replaces the rule's.
				f.Remedy = ev.GetRemedy()
				f.Escalated = true
				if resetOrReboot(f.GetRemedy()) && !f.GetAwaitsRemedy() {
					p.joinEpisode(gpu, f, ev, now)
				}
			case f.GetEscalated() && ev.GetRemedy() != f.GetRemedy():
				ev.Remedy = f.GetRemedy()
				ev.Escalated = true
			case remedyWeight(ev.GetRemedy()) > remedyWeight(f.GetRemedy()):
				// The same signal now asks for more (a decoded line, the
				// driver's recovery action going from a reset to a reboot):
				// the fault takes the weightier remedy, so a reset cannot
				// clear what now needs a reboot.
				f.Remedy = ev.GetRemedy()
				if resetOrReboot(f.GetRemedy()) && !f.GetAwaitsRemedy() {
					p.joinEpisode(gpu, f, ev, now)
				}
			}
			if !health.Worse(f.GetHealth(), ev.GetHealth()) {
				f.Cause = ev.GetCause()
			}
			return
		}
	}
	f := &fleetv1.Fault{
		Kind:      ev.GetKind(),
		Xid:       ev.GetXid(),
		Health:    ev.GetHealth(),
		Cause:     ev.GetCause(),
		Remedy:    ev.GetRemedy(),
		Since:     ts,
		LastSeen:  ts,
		Count:     1,
		Escalated: ev.GetEscalated(),
	}
	if resetOrReboot(f.GetRemedy()) {
		p.joinEpisode(gpu, f, ev, now)
	}
	gpu.Faults = append(gpu.Faults, f)
}

// joinEpisode makes f, which asks for a GPU reset or a node reboot, part of
// the GPU's remedy episode, opening one if none is open: faults raised
// while the GPU already awaits a reset or reboot (XID 48 with its ECC count
// and pending remap, XID 79 with the lost GPU) are one episode, answered by
// one remedy. Episodes count within the policy's lookback; past its limit
// the remedy escalates.
func (p *Policy) joinEpisode(gpu *fleetv1.Gpu, f *fleetv1.Fault, ev *fleetv1.HealthEvent, now time.Time) {
	open := awaitingRemedy(gpu)
	f.AwaitsRemedy = true
	times := slices.DeleteFunc(gpu.RemedyEpisodeTimes, func(t *timestamppb.Timestamp) bool {
		return now.Sub(t.AsTime()) >= p.lookback
	})
	if !open {
		times = append(times, timestamppb.New(now))
	}
	// A condition that flaps all week opens an episode each time: the
	// count past a few dozen says no more, and the node record stays small.
	if len(times) > maxEpisodeTimes {
		times = slices.Delete(times, 0, len(times)-maxEpisodeTimes)
	}
	gpu.RemedyEpisodeTimes = times
	gpu.RemedyEpisodes = uint32(len(times))
	if int(gpu.RemedyEpisodes) > p.escalateAfter {
		f.Remedy = p.escalateRemedy
		f.Escalated = true
		f.Cause = fmt.Sprintf("%s; needed a reset or reboot %d times", f.Cause, gpu.RemedyEpisodes)
		ev.Remedy = f.Remedy
		ev.Cause = f.Cause
		ev.Escalated = true
	}
}

// maxEpisodeTimes bounds the remedy episodes a GPU keeps.
const maxEpisodeTimes = 64

// remedyWeight orders remedies by how much they ask: hardware first, then
// a reboot, a reset, cooling, the application, watching, nothing.
func remedyWeight(r fleetv1.Remedy) int {
	switch r {
	case fleetv1.Remedy_REMEDY_REPLACE_GPU:
		return 9
	case fleetv1.Remedy_REMEDY_INSPECT_HARDWARE:
		return 8
	case fleetv1.Remedy_REMEDY_CONTACT_SUPPORT:
		return 7
	case fleetv1.Remedy_REMEDY_REBOOT_NODE, fleetv1.Remedy_REMEDY_RESTART_VM:
		return 6
	case fleetv1.Remedy_REMEDY_RESET_GPU:
		return 5
	case fleetv1.Remedy_REMEDY_CHECK_COOLING, fleetv1.Remedy_REMEDY_CHECK_POWER, fleetv1.Remedy_REMEDY_UPDATE_SOFTWARE:
		return 4
	case fleetv1.Remedy_REMEDY_RESTART_APPLICATION:
		return 3
	case fleetv1.Remedy_REMEDY_CHECK_APPLICATION:
		return 2
	case fleetv1.Remedy_REMEDY_WATCH:
		return 1
	}
	return 0
}

// awaitingRemedy reports whether the GPU's remedy episode is open: a fault
// that asked for a reset or reboot is active. When the last one clears, a
// remedy was applied, and the next such fault starts a new episode.
func awaitingRemedy(gpu *fleetv1.Gpu) bool {
	return slices.ContainsFunc(gpu.GetFaults(), (*fleetv1.Fault).GetAwaitsRemedy)
}

// endEpisode closes the GPU's remedy episode: the faults still active no
// longer hold it open.
func endEpisode(gpu *fleetv1.Gpu) {
	for _, f := range gpu.GetFaults() {
		f.AwaitsRemedy = false
	}
}

// awaitsRemedy reports whether the fault for k is active and awaits its
// reset or reboot.
func awaitsRemedy(gpu *fleetv1.Gpu, k faultKey) bool {
	return slices.ContainsFunc(gpu.GetFaults(), func(f *fleetv1.Fault) bool {
		return keyOf(f.GetKind(), f.GetXid()) == k && f.GetAwaitsRemedy()
	})
}

func resetOrReboot(r fleetv1.Remedy) bool {
	return r == fleetv1.Remedy_REMEDY_RESET_GPU || r == fleetv1.Remedy_REMEDY_REBOOT_NODE
}

func (p *Policy) clear(gpu *fleetv1.Gpu, k faultKey) bool {
	n := len(gpu.Faults)
	gpu.Faults = slices.DeleteFunc(gpu.Faults, func(f *fleetv1.Fault) bool {
		return keyOf(f.GetKind(), f.GetXid()) == k
	})
	if len(gpu.Faults) == n {
		return false
	}
	p.Rollup(gpu)
	return true
}

// Changes reports whether Observe would change the GPU's faults for this
// snapshot. It changes nothing, so a report that changes nothing costs no
// copy of the node.
func (p *Policy) Changes(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics) bool {
	for _, c := range conditions {
		if c.level == nil {
			continue
		}
		if r := c.level.read(gpu, m); r.known && r.present != hasFault(gpu, keyOf(c.kind, 0)) {
			return true
		}
	}
	return false
}

// Observe re-checks the level conditions against a metrics snapshot. It
// raises faults the snapshot shows and clears those it no longer shows, and
// returns one event for each change so the event log tells the story.
func (p *Policy) Observe(gpu *fleetv1.Gpu, m *fleetv1.GpuMetrics, now time.Time) []*fleetv1.HealthEvent {
	var out []*fleetv1.HealthEvent
	for _, c := range conditions {
		if c.level == nil {
			continue
		}
		r := c.level.read(gpu, m)
		if !r.known {
			continue
		}
		k := keyOf(c.kind, 0)
		active := hasFault(gpu, k)
		switch {
		case r.present && !active:
			ev := &fleetv1.HealthEvent{
				Kind:     c.kind,
				GpuIndex: int32(gpu.GetIndex()),
				GpuUuid:  gpu.GetUuid(),
				Time:     timestamppb.New(now),
				Message:  "seen in health snapshot",
				Value:    r.value,
			}
			p.Judge(gpu, ev, nil, now)
			out = append(out, ev)
		case !r.present && active:
			rule := p.conditions[c.kind]
			p.clear(gpu, k)
			out = append(out, recovered(gpu, now, "cleared: "+rule.Meaning, r.value))
		}
	}
	return out
}

func hasFault(gpu *fleetv1.Gpu, k faultKey) bool {
	for _, f := range gpu.GetFaults() {
		if keyOf(f.GetKind(), f.GetXid()) == k {
			return true
		}
	}
	return false
}

func recovered(gpu *fleetv1.Gpu, now time.Time, cause string, value uint64) *fleetv1.HealthEvent {
	return &fleetv1.HealthEvent{
		Kind:     fleetv1.EventKind_EVENT_KIND_GPU_RECOVERED,
		GpuIndex: int32(gpu.GetIndex()),
		GpuUuid:  gpu.GetUuid(),
		Time:     timestamppb.New(now),
		Health:   fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY,
		Cause:    cause,
		Remedy:   fleetv1.Remedy_REMEDY_NONE,
		Value:    value,
	}
}

// Expire clears DEGRADED faults raised by events (not level conditions)
// whose signal has been quiet for the degraded hold. It returns an event per
// cleared fault.
func (p *Policy) Expire(gpu *fleetv1.Gpu, now time.Time) []*fleetv1.HealthEvent {
	var out []*fleetv1.HealthEvent
	kept := gpu.Faults[:0]
	for _, f := range gpu.Faults {
		if !isLevel(f.GetKind()) && f.GetHealth() == fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED &&
			now.Sub(f.GetLastSeen().AsTime()) >= p.degradedHold {
			out = append(out, recovered(gpu, now, fmt.Sprintf("cleared after %s without recurrence: %s", p.degradedHold, f.GetCause()), 0))
			continue
		}
		kept = append(kept, f)
	}
	clear(gpu.Faults[len(kept):])
	gpu.Faults = kept
	if len(out) > 0 {
		p.Rollup(gpu)
	}
	return out
}

// ClearAfterReboot drops the faults a reboot or GPU reset remedies, keeping
// the level conditions (the next snapshot re-checks them) and the remedy
// episode count. It is called when a node registers with a new boot id, and
// returns a GPU_RECOVERED event naming what it cleared, or nil.
func (p *Policy) ClearAfterReboot(gpu *fleetv1.Gpu, now time.Time) *fleetv1.HealthEvent {
	var cleared []string
	gpu.Faults = slices.DeleteFunc(gpu.Faults, func(f *fleetv1.Fault) bool {
		if isLevel(f.GetKind()) {
			return false
		}
		cleared = append(cleared, f.GetCause())
		return true
	})
	gpu.Lost = false
	// The reboot was the remedy: a fault raised from now on starts a new
	// episode, even beside a level condition the reboot did not mend,
	// which no longer holds an episode open.
	endEpisode(gpu)
	if len(cleared) == 0 {
		return nil
	}
	p.Rollup(gpu)
	return recovered(gpu, now, "cleared by reboot: "+strings.Join(cleared, "; "), 0)
}

// ClearAfterReset drops the faults a completed GPU reset remedies: those
// raised by events whose remedy is a reset or asks less (restarting or
// checking the application, watching). A fault that asks for more (a
// reboot, an inspection, a replacement, support) stays, as do level
// conditions, which the next snapshot re-checks. The reset was the remedy:
// the episode ends unless a fault that asks for a reboot still awaits it.
// The reset's time is kept, so a kernel-log line older than it, read again
// later, raises nothing. It is called when the agent reports a
// reset that succeeded, and returns a GPU_RECOVERED event naming what it
// cleared, or nil.
func (p *Policy) ClearAfterReset(gpu *fleetv1.Gpu, now time.Time) *fleetv1.HealthEvent {
	var cleared []string
	gpu.Faults = slices.DeleteFunc(gpu.Faults, func(f *fleetv1.Fault) bool {
		if isLevel(f.GetKind()) || !resetRemedies(f.GetRemedy()) {
			return false
		}
		cleared = append(cleared, f.GetCause())
		return true
	})
	gpu.LastResetAt = timestamppb.New(now)
	// The reset ends the episode for what it answers; a fault that asks for
	// more (a reboot) still awaits it, while a level condition the reset
	// did not mend holds nothing open, as after a reboot.
	for _, f := range gpu.GetFaults() {
		if isLevel(f.GetKind()) {
			f.AwaitsRemedy = false
		}
	}
	if len(cleared) == 0 {
		return nil
	}
	p.Rollup(gpu)
	return recovered(gpu, now, "cleared by GPU reset: "+strings.Join(cleared, "; "), 0)
}

// resetRemedies reports whether a GPU reset answers a fault with remedy r:
// the reset itself, and what asks less of the GPU.
func resetRemedies(r fleetv1.Remedy) bool {
	switch r {
	case fleetv1.Remedy_REMEDY_RESET_GPU, fleetv1.Remedy_REMEDY_RESTART_APPLICATION,
		fleetv1.Remedy_REMEDY_CHECK_APPLICATION, fleetv1.Remedy_REMEDY_WATCH, fleetv1.Remedy_REMEDY_NONE:
		return true
	}
	return false
}

// LostAgain records that a lost GPU is still lost after a reboot: the
// reboot was a remedy that failed. Its earlier faults stay, as the story of
// how it was lost; the loss is raised anew, as a new remedy episode, so a
// GPU that reboots do not bring back escalates.
func (p *Policy) LostAgain(gpu *fleetv1.Gpu, ev *fleetv1.HealthEvent, now time.Time) {
	endEpisode(gpu)
	p.clear(gpu, keyOf(fleetv1.EventKind_EVENT_KIND_GPU_LOST, 0))
	p.Judge(gpu, ev, nil, now)
}

// Found clears a lost GPU that is back without a reboot: only the GPU_LOST
// fault goes, the GPU's other faults stay. It returns a GPU_RECOVERED event,
// or nil when the GPU was not lost.
func (p *Policy) Found(gpu *fleetv1.Gpu, now time.Time) *fleetv1.HealthEvent {
	if !gpu.GetLost() && !hasFault(gpu, keyOf(fleetv1.EventKind_EVENT_KIND_GPU_LOST, 0)) {
		return nil
	}
	ev := recovered(gpu, now, "GPU is back in the inventory", 0)
	p.Judge(gpu, ev, nil, now)
	return ev
}

// Rollup orders a GPU's faults worst first and sets its health, cause and
// remedy from the worst.
func (p *Policy) Rollup(gpu *fleetv1.Gpu) {
	// Worst first; among equally bad faults the one with the weightiest
	// remedy, which is the one to follow (an inspection over a reboot, a
	// reset over checking the application).
	sort.SliceStable(gpu.Faults, func(i, j int) bool {
		a, b := gpu.Faults[i], gpu.Faults[j]
		if ra, rb := health.Rank(a.GetHealth()), health.Rank(b.GetHealth()); ra != rb {
			return ra > rb
		}
		return remedyWeight(a.GetRemedy()) > remedyWeight(b.GetRemedy())
	})
	if len(gpu.Faults) == 0 {
		gpu.Health = fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY
		gpu.HealthCause = ""
		gpu.Remedy = fleetv1.Remedy_REMEDY_UNSPECIFIED
		return
	}
	worst := gpu.Faults[0]
	gpu.Health = worst.GetHealth()
	gpu.Remedy = worst.GetRemedy()
	gpu.HealthCause = worst.GetCause()
	if len(gpu.Faults) > 1 {
		gpu.HealthCause = fmt.Sprintf("%s (+%d more)", worst.GetCause(), len(gpu.Faults)-1)
	}
}
