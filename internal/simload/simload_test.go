package simload

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestWorkloadMovesAndStaysPlausible(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	t0 := time.Unix(0, 0)
	var g GPU
	g.Start(rng, t0, false)
	g.Advance(rng, t0.Add(20*time.Second))
	if g.Util < 60 || g.Temp <= AmbientTemp {
		t.Fatalf("busy GPU after 20s: util %.0f temp %.0f", g.Util, g.Temp)
	}
	sawIdle, sawBusy := false, false
	for i := range 2000 {
		g.Advance(rng, t0.Add(time.Duration(30+i*13)*time.Second))
		if g.Util < 0 || g.Util > 100 || g.Temp < AmbientTemp-1 || g.Temp > 80 || g.PowerMilliwatts() > PowerLimitMilliwatts {
			t.Fatalf("implausible: util %.0f temp %.0f power %d", g.Util, g.Temp, g.PowerMilliwatts())
		}
		sawIdle = sawIdle || g.Util < 10
		sawBusy = sawBusy || g.Util > 90
	}
	if !sawIdle || !sawBusy {
		t.Fatalf("phases never varied: idle %t busy %t", sawIdle, sawBusy)
	}
	var idle GPU
	idle.Start(rng, t0, true)
	idle.Advance(rng, t0.Add(time.Hour))
	if idle.Util > 1 || idle.PowerMilliwatts() != IdlePowerMilliwatts {
		t.Fatalf("idle GPU: util %.1f power %d", idle.Util, idle.PowerMilliwatts())
	}
}

// TestAllowKeepsTheGPUResting: while Allow says no, no busy phase starts.
func TestAllowKeepsTheGPUResting(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Unix(0, 0)
	allowed := false
	g := GPU{Allow: func() bool { return allowed }}
	g.Start(rng, t0, false)
	for i := range 500 {
		g.Advance(rng, t0.Add(time.Duration(i)*7*time.Second))
		if g.Busy() || g.Util > 10 {
			t.Fatalf("step %d: busy %t at %.0f%% while work is not allowed", i, g.Busy(), g.Util)
		}
	}
	allowed = true
	for i := 500; !g.Busy(); i++ {
		if i > 600 {
			t.Fatal("no busy phase once work was allowed")
		}
		g.Advance(rng, t0.Add(time.Duration(i)*7*time.Second))
	}
}
