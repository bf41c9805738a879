package main

import (
	"fmt"
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

func printTable(rows []result, console map[int]consoleFigures, agent agentResult) {
	host, _ := os.Hostname()
	fmt.Printf("\nNavarch scale suite — %s, %d CPUs, %s/%s, %s\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Now().Format(time.RFC3339))
	fmt.Println("Control plane (real binary) and simulated fleet share the machine; heartbeat 10 s, health report 30 s, 8 GPUs per node.")
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nodes\tcommands\tregister all\tCP RSS (peak)\tCP CPU (sim)\theartbeat p50/p99\treport p50/p99\tXID→watch p50/p99\tsnapshot\trestart\tframe\tfilter key\terrors\t")
	for _, r := range rows {
		c := console[r.nodes]
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.0f (%.0f) MiB\t%.0f%% (%.0f%%)\t%s / %s\t%s / %s\t%s / %s\t%s\t%s\t%s\t%s\t%d\t\n",
			r.nodes, r.delivery, r.register.Round(100*time.Millisecond), r.rssMiB, r.peakMiB, r.cpuPercent, r.genPercent,
			ms(r.hbP50), ms(r.hbP99), ms(r.rpP50), ms(r.rpP99), ms(r.xidP50), ms(r.xidP99),
			ms(r.snapshot), ms(r.restart), ms(c.frame), ms(c.filter), r.errors)
	}
	_ = tw.Flush()
	fmt.Printf("\nAgent (real binary, simulated 8-GPU node, default intervals, %s): %.1f MiB RSS, %.2f%% of one core\n",
		agent.measured, agent.rssMiB, agent.cpuPercent)
	fmt.Println("Targets: CP memory < 2 GiB at 100 000 nodes; node RPC p99 < 25 ms; XID to console p99 < 250 ms;")
	fmt.Println("restart < 3 s; console frame < 10 ms and filter keystroke < 50 ms at 100 000 nodes; agent < 20 MiB, < 0.5% of a core.")
}
