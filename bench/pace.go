package main

import (
	"fmt"
	"os"
	"time"

	"github.com/navarch/navarch/sim"
)

// The load the suite offers, and how it waits for the simulator to send it.

// offeredRate is the node calls a second the simulator is told to send to
// a fleet of n nodes at the suite's intervals: a heartbeat every 10 s and
// a health report every 30 s from each. It falls behind when the server
// answers too slowly for the calls it holds in flight, and the calls that
// waited count the wait in their latency.
func offeredRate(n int) float64 {
	return float64(n)/floorHeartbeat.Seconds() + float64(n)/floorReport.Seconds()
}

// caughtUp waits, for up to a minute, until the simulator has sent every
// call due, so that a window does not start with a backlog it would then
// send faster than the offered rate. A fleet still behind after that is
// measured as it is: the rate column and the backlog at the window's end
// show it.
func caughtUp(f *sim.Fleet, label string) {
	deadline := time.Now().Add(time.Minute)
	for f.Behind() > 0 {
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "bench: %s: the simulator is still %d calls behind after a minute; measuring as it is\n", label, f.Behind())
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
