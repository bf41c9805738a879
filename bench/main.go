// Command bench is Navarch's scale suite: for each fleet size it runs the
// real navarch-controlplane binary, drives it with the fleet simulator over
// loopback at production intervals (heartbeat 10 s, health report 30 s),
// measures what docs/performance.md reports, runs the same load against a
// bare gRPC server that only decodes it (the floor, floor.go) and prints
// one table.
//
//	go run ./bench --bin bin --plan 1000,10000,100000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 {
		var sub func([]string) error
		switch os.Args[1] {
		case floorCommand:
			sub = floorMain
		case snapshotCommand:
			sub = snapshotMain
		}
		if sub != nil {
			if err := sub(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
				os.Exit(1)
			}
			return
		}
	}
	bin := flag.String("bin", "bin", "directory holding navarch-controlplane and navarch-agent")
	plan := flag.String("plan", "1000,10000,100000,100000:heartbeat,10000:etcd", "fleet sizes to run, comma-separated; SIZE runs the control plane's defaults, SIZE:long_poll and SIZE:heartbeat that command_delivery, SIZE:etcd the etcd store with a standby beside the leader")
	window := flag.Duration("window", 30*time.Second, "steady-state measurement window per size")
	agentFor := flag.Duration("agent", time.Minute, "how long to measure the agent")
	profDir := flag.String("profile", "", "write the control plane's CPU, allocation and heap profiles, memory statistics and goroutines, and the CPU profiles of the floor and of the load generator (this process), for each row to this directory")
	noCommands := flag.Bool("no-commands", false, "leave out the agents' command streams and long polls (to measure what they cost)")
	plaintext := flag.Bool("plaintext", false, "serve and dial without TLS (the control plane's insecure, and the floor likewise), to measure what TLS costs")
	flag.Parse()
	type run struct {
		nodes    int
		delivery string // command_delivery, "" for the control plane's default
		store    string // "etcd", or "" for the default (Badger)
	}
	var runs []run
	var ns []int
	for _, s := range strings.Split(*plan, ",") {
		size, mode, _ := strings.Cut(strings.TrimSpace(s), ":")
		n, err := strconv.Atoi(size)
		if err != nil || n < 1 || (mode != "" && mode != "heartbeat" && mode != "long_poll" && mode != "etcd") {
			fmt.Fprintf(os.Stderr, "bench: --plan: %q is not SIZE, SIZE:long_poll, SIZE:heartbeat or SIZE:etcd\n", s)
			os.Exit(2)
		}
		r := run{nodes: n, delivery: mode}
		if mode == "etcd" {
			r = run{nodes: n, store: mode}
		}
		runs = append(runs, r)
		if !slices.Contains(ns, n) {
			ns = append(ns, n)
		}
	}
	b := &bench{bin: *bin, window: *window, profDir: *profDir, noCommands: *noCommands, plaintext: *plaintext}
	if *profDir != "" {
		b.pprof = freeAddr()
		if err := os.MkdirAll(*profDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if err := b.checkBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	var rows []result
	var agent agentResult
	// The load generator stands for agents on other machines, yet shares
	// these cores with the server it measures. Its collector, walking the
	// simulated fleet and its 100 000 client streams, took a fifth of its
	// CPU at Go's default; run less often, it leaves the servers more of
	// the machine, for a few more GB of its own memory. The etcd member of
	// an etcd row runs in this process and collects likewise. The console's
	// benchmarks run in a process of their own, at Go's default.
	debug.SetGCPercent(loadGOGC)
	for i, r := range runs {
		res, err := b.runSize(ctx, r.nodes, r.delivery, r.store, i == 0, *agentFor, &agent)
		if err == nil {
			res.floor, err = b.runFloor(ctx, r.nodes, res.delivery, rowLabel(r.nodes, r.delivery, r.store))
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %d nodes: %v\n", r.nodes, err)
			os.Exit(1)
		}
		rows = append(rows, res)
	}
	console := consoleTimes(ns)
	printTable(os.Stdout, rows, console, agent)
}

// loadGOGC is the load generator's GOGC while it puts load on a server.
const loadGOGC = 400

type bench struct {
	bin        string
	window     time.Duration
	pprof      string // control plane profiling address, when profiling
	profDir    string // where profiles go
	noCommands bool
	plaintext  bool // serve and dial without TLS
}

func (b *bench) checkBinaries() error {
	for _, name := range []string{"navarch-controlplane", "navarch-agent"} {
		if _, err := os.Stat(filepath.Join(b.bin, name)); err != nil {
			return fmt.Errorf("%s not found in %s; run 'go tool task build' first", name, b.bin)
		}
	}
	return nil
}

// result is one fleet size's figures.
type result struct {
	nodes           int
	delivery        string // command_delivery, "" for the control plane's default
	store           string // "etcd", or "" for Badger
	plaintext       bool   // served and dialled without TLS
	register        time.Duration
	rssMiB, peakMiB float64
	cpuPercent      float64
	genPercent      float64 // the load generator's own CPU
	hbP50, hbP99    time.Duration
	rpP50, rpP99    time.Duration
	errors          int64
	// behind is the calls the simulator had due and not yet sent as the
	// window ended (sim.Fleet.Behind).
	behind         int64
	xidP50, xidP99 time.Duration
	snapshot       time.Duration
	// snapshotCPU is the CPU the snapshot's client process used, process
	// start and TLS included.
	snapshotCPU time.Duration
	// restart is how long a restarted control plane took to serve; on
	// etcd, how long the standby took to serve once the leader was
	// killed.
	restart time.Duration
	// cost is the control plane's CPU per node call in the window; floor
	// is what the floor server measured under the same load (floor.go).
	cost  callCost
	floor floorFigures
}

type agentResult struct {
	rssMiB     float64
	cpuPercent float64
	measured   time.Duration
}
