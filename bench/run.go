package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"

	"github.com/navarch/navarch/internal/etcdtest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/sim"
)

// runSize measures one fleet size: it starts the control plane, registers
// and runs n simulated nodes, measures the steady state over the window,
// and times a restart. delivery is the command_delivery to configure, ""
// to leave the control plane's default.
func (b *bench) runSize(ctx context.Context, n int, delivery, store string, measureAgent bool, agentFor time.Duration, agent *agentResult) (result, error) {
	r := result{nodes: n, delivery: delivery, store: store, plaintext: b.plaintext}
	dir, err := os.MkdirTemp("", fmt.Sprintf("navarch-bench-%d-", n))
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	addr := freeAddr()
	fmt.Fprintf(os.Stderr, "bench: %d nodes: starting control plane on %s\n", n, addr)
	var etcd string
	if store == "etcd" {
		// One member in this process: the row measures the control
		// plane on etcd, and its CPU shows in the simulator's column.
		cluster, err := etcdtest.Start(1)
		if err != nil {
			return r, err
		}
		defer cluster.Stop()
		etcd = cluster.Endpoints[0]
	}
	cp, _, err := b.start(ctx, dir, addr, r.delivery, etcd)
	if err != nil {
		return r, err
	}
	defer func() { cp.stop() }()

	cpTarget := target(dir, addr)
	var standby *controlPlane
	if etcd != "" {
		if standby, err = b.startStandby(ctx, dir, etcd); err != nil {
			return r, err
		}
		defer func() { standby.stop(); _ = os.RemoveAll(standby.dir) }()
		cpTarget.Addr += "," + standby.addr
	}
	fleet, err := sim.New(b.simOptions(cpTarget, n))
	if err != nil {
		return r, err
	}
	defer fleet.Close()
	began := time.Now()
	if err := fleet.Register(ctx); err != nil {
		return r, err
	}
	r.register = time.Since(began)
	fmt.Fprintf(os.Stderr, "bench: %d nodes registered in %s; steady state for %s\n", n, r.register.Round(time.Millisecond), b.window)

	runCtx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- fleet.Run(runCtx) }()

	// Warm up: every node heartbeats and reports once before measuring, so
	// the window sees the steady state, not the first reports.
	if err := waitSteady(ctx, cpTarget, n); err != nil {
		return r, err
	}
	// The console watching for XIDs joins before the window, so that its
	// snapshot is not counted in the window's CPU.
	watcher, err := watchXIDs(ctx, cpTarget)
	if err != nil {
		return r, err
	}
	defer watcher.close()
	label := rowLabel(n, delivery, store)
	caughtUp(fleet, label)
	fleet.HeartbeatLatencies().Reset()
	fleet.ReportLatencies().Reset()
	errsBefore := fleet.Errors()
	pid := cp.cmd.Process.Pid
	w, err := startWindow(pid)
	if err != nil {
		return r, err
	}
	defer w.close()
	gen, err := startWindow(os.Getpid())
	if err != nil {
		return r, err
	}
	defer gen.close()
	windowStart := time.Now()
	if b.pprof != "" {
		secs := profileSeconds(b.window)
		go b.profile(fmt.Sprintf("cpu-%s.pprof", label), fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
		go b.profileLoad(fmt.Sprintf("cpu-load-%s.pprof", label), secs)
		// What the window allocates, apart from registration's.
		go b.profile(fmt.Sprintf("allocs-%s.pprof", label), fmt.Sprintf("/debug/pprof/allocs?seconds=%d", secs))
	}
	xids, err := watcher.measure(ctx, fleet, n, b.window)
	if err != nil {
		return r, err
	}
	// The snapshot, the agent and the restart are timed without it.
	watcher.close()
	if rest := b.window - time.Since(windowStart); rest > 0 {
		time.Sleep(rest)
	}
	if r.cost, r.peakMiB, err = w.end(windowCalls(fleet)); err != nil {
		return r, err
	}
	r.behind = fleet.Behind()
	genCost, _, _ := gen.end(0)
	r.cpuPercent, r.genPercent = r.cost.percent(), genCost.percent()
	r.rssMiB, _ = rssMiB(pid)
	r.peakMiB = max(r.peakMiB, r.rssMiB)
	if b.pprof != "" {
		b.profile(fmt.Sprintf("heap-%s.pprof", label), "/debug/pprof/heap")
		b.profile(fmt.Sprintf("memstats-%s.txt", label), "/debug/pprof/heap?debug=1")
		b.profile(fmt.Sprintf("goroutines-%s.txt", label), "/debug/pprof/goroutine?debug=1")
	}
	hb := fleet.HeartbeatLatencies().Quantiles(0.5, 0.99)
	rp := fleet.ReportLatencies().Quantiles(0.5, 0.99)
	r.hbP50, r.hbP99, r.rpP50, r.rpP99 = hb[0], hb[1], rp[0], rp[1]
	r.errors = fleet.Errors() - errsBefore
	xq := quantiles(xids, 0.5, 0.99)
	r.xidP50, r.xidP99 = xq[0], xq[1]

	if r.snapshot, r.snapshotCPU, err = snapshotInProcess(ctx, cpTarget); err != nil {
		return r, err
	}
	if measureAgent {
		fmt.Fprintf(os.Stderr, "bench: measuring a simulated 8-GPU agent for %s\n", agentFor)
		if *agent, err = b.measureAgent(ctx, cpTarget, agentFor); err != nil {
			return r, err
		}
	}
	stopFleet()
	<-fleetDone

	if standby != nil {
		fmt.Fprintf(os.Stderr, "bench: %d nodes: killing the leader\n", n)
		r.restart, err = failover(ctx, cp, standby)
		return r, err
	}
	fmt.Fprintf(os.Stderr, "bench: %d nodes: restarting the control plane\n", n)
	cp.stop()
	cp2, restart, err := b.start(ctx, dir, addr, r.delivery, "")
	if err != nil {
		return r, err
	}
	r.restart = restart
	cp = cp2
	return r, nil
}

// rowLabel names a row's profiles: its size, and its command delivery and
// store when not the defaults, so that rows of one size keep their own.
func rowLabel(n int, delivery, store string) string {
	label := fmt.Sprint(n)
	if delivery != "" {
		label += "-" + delivery
	}
	if store != "" {
		label += "-" + store
	}
	return label
}

// profileSeconds is how long a CPU or allocation profile of a window
// runs: the window less five seconds' margin, and at least one.
func profileSeconds(window time.Duration) int {
	return max(int(window.Seconds())-5, 1)
}

// simOptions is the simulated fleet of n nodes the suite runs against the
// control plane at t, and the same against the floor.
func (b *bench) simOptions(t rpcclient.Target, n int) sim.Options {
	return sim.Options{Server: t, Nodes: n, GPUs: 8, Conns: 8, RegisterConcurrency: 128, NoCommands: b.noCommands}
}

// profileLoad saves the CPU profile of the suite's own process, the load
// generator, over the next secs seconds.
func (b *bench) profileLoad(name string, secs int) {
	f, err := os.Create(filepath.Join(b.profDir, name))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: profile:", err)
		return
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "bench: profile:", err)
		return
	}
	time.Sleep(time.Duration(secs) * time.Second)
	pprof.StopCPUProfile()
}

// profile saves one of the control plane's profiles.
func (b *bench) profile(name, path string) { b.profileAt(b.pprof, name, path) }

// profileAt saves into the profile directory, as name, what the pprof
// endpoint path at addr answers.
func (b *bench) profileAt(addr, name, path string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(b.profDir, name))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: profile:", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}
