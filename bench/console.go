package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// consoleFigures are the console's frame and filter-keystroke times.
type consoleFigures struct{ frame, filter time.Duration }

var benchLine = regexp.MustCompile(`^Benchmark(FleetFrame|FilterKeystroke)/nodes=(\d+)-\d+\s+\d+\s+([\d.]+) ns/op`)

// consoleTimes runs the console's own benchmarks at the suite's sizes.
func consoleTimes(sizes []int) map[int]consoleFigures {
	var names []string
	for _, n := range sizes {
		names = append(names, strconv.Itoa(n))
	}
	pattern := fmt.Sprintf(`^(BenchmarkFleetFrame|BenchmarkFilterKeystroke)$/^nodes=(%s)$`, strings.Join(names, "|"))
	fmt.Fprintln(os.Stderr, "bench: console benchmarks")
	out, err := exec.Command("go", "test", "-run", "^$", "-bench", pattern, "-benchtime", "50x", "./tui/").CombinedOutput()
	res := map[int]consoleFigures{}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: console benchmarks failed: %v\n%s", err, out)
		return res
	}
	for _, line := range strings.Split(string(out), "\n") {
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		ns, _ := strconv.ParseFloat(m[3], 64)
		f := res[n]
		if m[1] == "FleetFrame" {
			f.frame = time.Duration(ns)
		} else {
			f.filter = time.Duration(ns)
		}
		res[n] = f
	}
	return res
}
