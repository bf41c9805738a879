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

// TestSteerHoldsTheTargetUntilReleased: a steered GPU heads for its
// percent and stays there however long its phases would have lasted, busy
// or idle, whether or not work is allowed; released, its phases resume.
func TestSteerHoldsTheTargetUntilReleased(t *testing.T) {
	tests := []struct {
		name    string
		idle    bool
		allowed bool
		percent float32
	}{
		{"busy-held-high", false, true, 95},
		{"busy-held-low", false, true, 3},
		{"idle-held-high", true, true, 95},
		{"not-allowed-held-high", false, false, 80},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, 6))
			t0 := time.Unix(0, 0)
			g := GPU{Allow: func() bool { return tt.allowed }}
			g.Start(rng, t0, tt.idle)
			g.Advance(rng, t0.Add(10*time.Second))
			g.Steer(rng, t0.Add(10*time.Second), tt.percent)
			for i := range 360 {
				now := t0.Add(40*time.Second + time.Duration(i)*10*time.Second)
				g.Advance(rng, now)
				g.Rest(rng, now)
				if d := g.Util - tt.percent; d < -3 || d > 3 {
					t.Fatalf("after %s steered to %.0f%%: %.1f%%", now.Sub(t0), tt.percent, g.Util)
				}
			}
			if g.Busy() != (tt.percent >= 50) {
				t.Fatalf("steered to %.0f%%: busy %t", tt.percent, g.Busy())
			}
			end := t0.Add(time.Hour)
			g.Release(rng, end)
			varied := false
			for i := range 2000 {
				g.Advance(rng, end.Add(time.Duration(i)*13*time.Second))
				if d := g.Util - tt.percent; d < -20 || d > 20 {
					varied = true
					break
				}
			}
			if !varied {
				t.Fatalf("released from %.0f%%, the GPU never left it", tt.percent)
			}
		})
	}
}
