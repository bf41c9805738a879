// Package simload is the simulated workload behind a simulated GPU, shared
// by the simulated NVML and the fleet simulator: utilisation heads for a
// target that changes in phases, as jobs start and end, or for one set from
// outside (Steer), and temperature and power follow utilisation. It also
// holds the XIDs simulated chaos picks from.
package simload

import (
	"math"
	"math/rand/v2"
	"time"
)

// H100 figures.
const (
	// AmbientTemp is an idle GPU's temperature, in degrees Celsius.
	AmbientTemp = 32.0
	// IdlePowerMilliwatts is an idle GPU's power draw.
	IdlePowerMilliwatts = 70e3
	// PowerLimitMilliwatts is the enforced power limit.
	PowerLimitMilliwatts = 700e3
)

// GPU is one GPU's workload. The zero value is a cold, idle GPU; Start
// gives it its first phase.
type GPU struct {
	Util     float32 // percent
	Temp     float32 // degrees Celsius
	target   float32
	phaseEnd time.Time
	updated  time.Time
	idle     bool
	// steered holds target at steerTo in place of the phases.
	steered bool
	steerTo float32
	// Allow, when set, is asked before a busy phase starts; when it says
	// no (the node takes no new work) the GPU rests instead.
	Allow func() bool
}

// Start sets the GPU going at now; an idle GPU stays idle.
func (g *GPU) Start(rng *rand.Rand, now time.Time, idle bool) {
	g.idle = idle
	g.updated = now
	g.Temp = AmbientTemp
	g.nextPhase(rng, now)
}

func (g *GPU) nextPhase(rng *rand.Rand, now time.Time) {
	switch {
	case g.steered:
		g.target = g.steerTo
		g.phaseEnd = now.Add(SteeredPhase)
		return
	case g.idle:
		g.target = 0
		g.phaseEnd = now.Add(time.Hour)
		return
	case g.target < 50:
		g.target = 75 + rng.Float32()*25
	case rng.Float32() < 0.3:
		g.target = rng.Float32() * 5
	default:
		g.target = 60 + rng.Float32()*40
	}
	if g.Busy() && g.Allow != nil && !g.Allow() {
		g.Rest(rng, now)
		return
	}
	g.phaseEnd = now.Add(time.Duration(30+rng.IntN(240)) * time.Second)
}

// Advance moves the workload on to now: utilisation closes on its target
// within seconds, temperature within tens of seconds. rng picks the next
// phase when one ends. It returns the seconds that passed.
func (g *GPU) Advance(rng *rand.Rand, now time.Time) float64 {
	dt := now.Sub(g.updated).Seconds()
	if dt <= 0 {
		return 0
	}
	g.updated = now
	if now.After(g.phaseEnd) {
		g.nextPhase(rng, now)
	}
	g.Util += (g.target - g.Util) * float32(1-math.Exp(-dt/5))
	eq := AmbientTemp + g.Util*0.45
	g.Temp += (eq - g.Temp) * float32(1-math.Exp(-dt/20))
	return dt
}

// PowerMilliwatts is the power draw at the current utilisation.
func (g *GPU) PowerMilliwatts() uint32 {
	return uint32(IdlePowerMilliwatts + (PowerLimitMilliwatts-IdlePowerMilliwatts)*g.Util/100*0.92)
}

// Busy reports whether the current phase is a job's: utilisation heading
// high.
func (g *GPU) Busy() bool { return g.target >= 50 }

// Remaining is how long the current phase has left at now.
func (g *GPU) Remaining(now time.Time) time.Duration { return max(0, g.phaseEnd.Sub(now)) }

// Rest ends the current phase with an idle one, as when its job ends early
// or cannot start; the phase after it is busy again. A steered GPU keeps
// its target.
func (g *GPU) Rest(rng *rand.Rand, now time.Time) {
	if g.steered {
		return
	}
	g.target = rng.Float32() * 5
	g.phaseEnd = now.Add(time.Duration(20+rng.IntN(60)) * time.Second)
}

// SteeredPhase is how long each phase of a steered GPU lasts: a busy one is
// one job, and the next starts as it ends.
const SteeredPhase = time.Minute

// Steer has utilisation head for percent (0–100) from now on, in place of
// the phases, until Release: the load a demo or a test sets from outside.
// The workload first moves on to now as it was. Steering again to the same
// percent changes nothing.
func (g *GPU) Steer(rng *rand.Rand, now time.Time, percent float32) {
	percent = min(max(percent, 0), 100)
	if g.steered && g.steerTo == percent {
		return
	}
	g.Advance(rng, now)
	g.steered, g.steerTo = true, percent
	g.target = percent
	g.phaseEnd = now.Add(SteeredPhase)
}

// Release ends a Steer: the phases resume with a new one at now.
func (g *GPU) Release(rng *rand.Rand, now time.Time) {
	if !g.steered {
		return
	}
	g.Advance(rng, now)
	g.steered = false
	g.nextPhase(rng, now)
}

// ChaosXIDs are the XIDs chaos picks from, with their weights, as a real
// fleet sees them: mostly application faults (13, 31, 43, 45), then
// recoverable ones (94, 63, 92, 32), and now and then one that takes a GPU
// out of service until a reset or a reboot.
var ChaosXIDs = weighted([]struct{ xid, weight uint32 }{
	{13, 40}, {31, 30}, {43, 20}, {45, 30},
	{94, 12}, {63, 10}, {92, 10}, {32, 4},
	{79, 1}, {48, 1}, {74, 1}, {119, 1}, {64, 1}, {95, 1}, {109, 1}, {140, 1},
})

// weighted expands (value, weight) pairs into a list to pick from at random.
func weighted(pairs []struct{ xid, weight uint32 }) []uint32 {
	var out []uint32
	for _, p := range pairs {
		for range p.weight {
			out = append(out, p.xid)
		}
	}
	return out
}
