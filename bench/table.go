package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"text/tabwriter"
	"time"
)

func ms(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// micros is a CPU time per call in microseconds.
func micros(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond))
}

// whole is a figure rounded to a whole number, or a dash when unknown.
func whole(x float64) string {
	if x <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", x)
}

// times is a multiple of the floor.
func times(x float64) string {
	if x <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", x)
}

// commands is how a row's agents got their commands: the delivery it
// configured, or the control plane's default, named; and the store and
// transport when not the defaults.
func commands(r result) string {
	d := r.delivery
	if d == "" {
		d = floorDelivery + " (default)"
	}
	if r.store != "" {
		d += ", " + r.store
	}
	if r.plaintext {
		d += ", plaintext"
	}
	return d
}

func printTable(w io.Writer, rows []result, console map[int]consoleFigures, agent agentResult) {
	host, _ := os.Hostname()
	fmt.Fprintf(w, "\nNavarch scale suite — %s, %d CPUs, %s/%s, %s\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Now().Format(time.RFC3339))
	fmt.Fprintln(w, "Control plane (real binary) and simulated fleet share the machine; heartbeat 10 s, health report 30 s, 8 GPUs per node.")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nodes\tcommands\tregister all\tCP RSS (peak)\tfloor peak (live)\tCP CPU (sim)\tcalls/s (floor) of offered\tCPU/call (floor)\t× floor\theartbeat p50/p99\treport p50/p99\tfloor p99 hb/report\tXID→watch p50/p99\tsnapshot (client CPU)\trestart\tframe\tfilter key\terrors\tbehind (floor)\t")
	for _, r := range rows {
		c := console[r.nodes]
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.0f (%.0f) MiB\t%s (%s) MiB\t%.0f%% (%.0f%%)\t%s (%s) of %.0f\t%s (%s) µs\t%s\t%s / %s\t%s / %s\t%s / %s\t%s / %s\t%s (%s)\t%s\t%s\t%s\t%d\t%d (%d)\t\n",
			r.nodes, commands(r), r.register.Round(100*time.Millisecond), r.rssMiB, r.peakMiB, whole(r.floor.peakMiB), whole(r.floor.liveMiB), r.cpuPercent, r.genPercent,
			whole(r.cost.rate()), whole(r.floor.cost.rate()), offeredRate(r.nodes),
			micros(r.cost.perCall()), micros(r.floor.cost.perCall()), times(r.cost.times(r.floor.cost)),
			ms(r.hbP50), ms(r.hbP99), ms(r.rpP50), ms(r.rpP99), ms(r.floor.hbP99), ms(r.floor.rpP99), ms(r.xidP50), ms(r.xidP99),
			ms(r.snapshot), ms(r.snapshotCPU), ms(r.restart), ms(c.frame), ms(c.filter), r.errors, r.behind, r.floor.behind)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\ncommands: how agents wait for commands, the control plane's default command_delivery unless the plan names another.")
	fmt.Fprintln(w, "CPU/call: CPU per heartbeat or health report over the window; the floor is a gRPC server with the same TLS that only")
	fmt.Fprintln(w, "decodes the same calls under the same load, and × floor is the control plane's CPU per call as a multiple of it.")
	fmt.Fprintln(w, "calls/s: heartbeats and reports answered a second in the window, and what the simulator is told to send; it holds")
	fmt.Fprintln(w, "a bounded number of each in flight, so it falls behind when answers are slow or the cores are saturated. A call's")
	fmt.Fprintln(w, "latency counts from when it came due, its wait for a slot included. behind: calls due and not yet sent as the window")
	fmt.Fprintln(w, "ended; each window starts once the simulator has caught up, or after a minute.")
	fmt.Fprintln(w, "snapshot: a new WatchFleet stream's complete snapshot, read as the console reads it by a client process of its own,")
	fmt.Fprintln(w, "and the CPU that process used: on shared cores the rest of the wait is the control plane's part and the wait for a core.")
	fmt.Fprintln(w, "floor peak (live): the floor's peak RSS in its window at Go's default GOGC, and in brackets its heap and goroutine")
	fmt.Fprintln(w, "stacks after a collection at the window's end: what gRPC itself holds for the load. floor p99: its clients' tails.")
	fmt.Fprintln(w, "etcd rows: the store is one etcd member in the suite's process (its CPU is in the sim column), a standby control plane")
	fmt.Fprintln(w, "runs beside the leader, and restart is the failover: from killing the leader (SIGKILL) to the standby serving the fleet.")
	fmt.Fprintf(w, "\nAgent (real binary, simulated 8-GPU node, default intervals, %s): %.1f MiB RSS, %.2f%% of one core\n",
		agent.measured, agent.rssMiB, agent.cpuPercent)
	fmt.Fprintln(w, "Targets: CP memory < 2 GiB at 100 000 nodes; node RPC p99 < 25 ms; CPU per call within 1.15× the floor; XID to console p99 < 250 ms;")
	fmt.Fprintln(w, "restart < 3 s; console frame < 10 ms and filter keystroke < 50 ms at 100 000 nodes; agent < 20 MiB, < 0.5% of a core.")
}
