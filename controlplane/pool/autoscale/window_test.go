package autoscale

import (
	"math"
	"testing"
	"time"
)

func TestWindowSamples(t *testing.T) {
	var w Window
	start := monday
	w.Samples(start, 5*time.Minute)
	now := start
	for i := range 120 {
		now = start.Add(time.Duration(i) * 10 * time.Second)
		w.Add(now, float64(i))
	}
	got := w.Samples(now, 5*time.Minute)
	// The one at the window's start and the 30 after it.
	if len(got) != 31 || !got[0].At.Equal(now.Add(-5*time.Minute)) || !got[30].At.Equal(now) {
		t.Fatalf("Samples = %d from %s to %s, want 31 from the window's start to now", len(got), got[0].At, got[len(got)-1].At)
	}
	for i, s := range got {
		if want := float64(89 + i); s.Percent != want {
			t.Fatalf("sample %d is %v%%, want %v%%", i, s.Percent, want)
		}
	}
	if w.n > 32 {
		t.Errorf("the window holds %d samples, more than its 5 minutes need", w.n)
	}
	if got := w.Samples(now.Add(-time.Minute), time.Minute); len(got) != 7 || !got[6].At.Equal(now.Add(-time.Minute)) {
		t.Errorf("Samples a minute ago = %+v, want 7, none after then", got)
	}
}

// TestWindowBounded: samples far more frequent than the window needs are
// merged, so memory stays bounded and the window still covers its span.
func TestWindowBounded(t *testing.T) {
	var w Window
	w.Samples(monday, time.Hour)
	now := monday
	for i := range 100_000 {
		now = monday.Add(time.Duration(i) * 100 * time.Millisecond)
		w.Add(now, float64(100*(i%2)))
	}
	if w.n > len(w.buf) {
		t.Fatalf("the window holds %d samples, over its %d", w.n, len(w.buf))
	}
	got := w.Samples(now, time.Hour)
	if len(got) < windowSlots || got[0].At.After(now.Add(-time.Hour)) {
		t.Fatalf("Samples = %d from %s, want the hour covered", len(got), now.Sub(got[0].At))
	}
	mean, ok := meanOver(got, now, time.Hour)
	if !ok || math.Abs(mean-50) > 1 {
		t.Errorf("mean of samples alternating 0%% and 100%% = %v, %v; want 50%%", mean, ok)
	}
}

func TestWindowLeavesOutOlderSamples(t *testing.T) {
	var w Window
	w.Samples(monday, time.Minute)
	w.Add(monday, 10)
	w.Add(monday.Add(-time.Second), 90)
	if got := w.Samples(monday, time.Minute); len(got) != 1 || got[0].Percent != 10 {
		t.Errorf("Samples = %+v, want the first sample alone", got)
	}
}

// TestWindowGrows: a longer window asked for keeps samples for it from
// then on, besides the shorter window's it held; until they cover it,
// the rule does not decide.
func TestWindowGrows(t *testing.T) {
	var w Window
	now := monday
	add := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(10 * time.Second) {
			w.Add(now, 50)
			w.Samples(now, time.Minute)
		}
	}
	add(10 * time.Minute)
	if _, ok := meanOver(w.Samples(now, 5*time.Minute), now, 5*time.Minute); ok {
		t.Fatal("a window kept for a minute covers five")
	}
	add(3 * time.Minute)
	if _, ok := meanOver(w.Samples(now, 5*time.Minute), now, 5*time.Minute); ok {
		t.Fatal("four minutes of samples cover five")
	}
	add(time.Minute + 10*time.Second)
	if mean, ok := meanOver(w.Samples(now, 5*time.Minute), now, 5*time.Minute); !ok || mean != 50 {
		t.Fatalf("five minutes of samples at 50%% = %v, %v", mean, ok)
	}
}

// TestWindowAfterRestart: a Window new after a restart makes the
// utilisation rule wait a whole window.
func TestWindowAfterRestart(t *testing.T) {
	cfg := Config{Utilization: util(1)}
	var w Window
	for i := 0; ; i++ {
		now := monday.Add(time.Duration(i) * 15 * time.Second)
		w.Add(now, 99)
		d := Decide(cfg, Inputs{Now: now, Min: 1, Max: 5, Wanted: 2, Utilization: w.Samples(now, 5*time.Minute)})
		if d.Wanted == 3 {
			if since := now.Sub(monday); since < 5*time.Minute {
				t.Fatalf("scaled up %s after the restart, within the window", since)
			}
			return
		}
		if i > 100 {
			t.Fatal("never scaled up")
		}
	}
}
