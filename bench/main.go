// Command bench is Navarch's scale suite: for each fleet size it runs the
// real navarch-controlplane binary, drives it with the fleet simulator over
// loopback at production intervals (heartbeat 10 s, health report 30 s),
// measures what docs/performance.md reports, and prints one table.
//
//	go run ./bench --bin bin --sizes 1000,10000,100000
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/sim"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding navarch-controlplane and navarch-agent")
	plan := flag.String("plan", "1000,10000,100000,100000:heartbeat", "fleet sizes to run, comma-separated; SIZE:heartbeat runs with command_delivery heartbeat")
	window := flag.Duration("window", 30*time.Second, "steady-state measurement window per size")
	agentFor := flag.Duration("agent", time.Minute, "how long to measure the agent")
	profDir := flag.String("profile", "", "write the control plane's heap and CPU profiles for each size to this directory")
	noCommands := flag.Bool("no-commands", false, "leave out the agents' command long polls (to measure what they cost)")
	flag.Parse()
	type run struct {
		nodes     int
		heartbeat bool
	}
	var runs []run
	var ns []int
	for _, s := range strings.Split(*plan, ",") {
		size, mode, _ := strings.Cut(strings.TrimSpace(s), ":")
		n, err := strconv.Atoi(size)
		if err != nil || n < 1 || (mode != "" && mode != "heartbeat" && mode != "long_poll") {
			fmt.Fprintf(os.Stderr, "bench: --plan: %q is not SIZE or SIZE:heartbeat\n", s)
			os.Exit(2)
		}
		runs = append(runs, run{n, mode == "heartbeat"})
		if !slices.Contains(ns, n) {
			ns = append(ns, n)
		}
	}
	b := &bench{bin: *bin, window: *window, profDir: *profDir, noCommands: *noCommands}
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
	for i, r := range runs {
		res, err := b.runSize(ctx, r.nodes, r.heartbeat, i == 0, *agentFor, &agent)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %d nodes: %v\n", r.nodes, err)
			os.Exit(1)
		}
		rows = append(rows, res)
	}
	console := consoleTimes(ns)
	printTable(rows, console, agent)
}

type bench struct {
	bin        string
	window     time.Duration
	pprof      string // control plane profiling address, when profiling
	profDir    string // where profiles go
	noCommands bool
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
	delivery        string
	register        time.Duration
	rssMiB, peakMiB float64
	cpuPercent      float64
	genPercent      float64 // the load generator's own CPU
	hbP50, hbP99    time.Duration
	rpP50, rpP99    time.Duration
	errors          int64
	xidP50, xidP99  time.Duration
	snapshot        time.Duration
	restart         time.Duration
}

type agentResult struct {
	rssMiB     float64
	cpuPercent float64
	measured   time.Duration
}

// controlPlane is the real binary under test.
type controlPlane struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	log  *os.File
}

func (b *bench) start(ctx context.Context, dir, addr, delivery string) (*controlPlane, time.Duration, error) {
	cfg := filepath.Join(dir, "bench.yaml")
	body := fmt.Sprintf("listen: %s\ndata_dir: %s\nlog_level: warn\ncommand_delivery: %s\nlocal_provider:\n  enabled: false\n", addr, filepath.Join(dir, "store"), delivery)
	if b.pprof != "" {
		body += "pprof_listen: " + b.pprof + "\n"
	}
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return nil, 0, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "controlplane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(filepath.Join(b.bin, "navarch-controlplane"), "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	cp := &controlPlane{cmd: cmd, addr: addr, dir: dir, log: logf}
	if err := waitServing(ctx, addr); err != nil {
		cp.kill()
		return nil, 0, err
	}
	return cp, time.Since(began), nil
}

func (cp *controlPlane) stop() {
	_ = cp.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cp.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cp.kill()
	}
	_ = cp.log.Close()
}

func (cp *controlPlane) kill() {
	_ = cp.cmd.Process.Kill()
	_ = cp.cmd.Wait()
}

// waitServing waits until the control plane answers its health check and
// a listing, which means its state is loaded.
func waitServing(ctx context.Context, addr string) error {
	conn, err := rpcclient.Dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := grpc_health_v1.NewHealthClient(conn)
	ops := controlplanev1.NewControlPlaneServiceClient(conn)
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &grpc_health_v1.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == grpc_health_v1.HealthCheckResponse_SERVING {
			_, err = ops.ListNodes(cctx, &controlplanev1.ListNodesRequest{PageSize: 1})
		}
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("control plane did not serve within 2 minutes")
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (b *bench) runSize(ctx context.Context, n int, heartbeatDelivery, measureAgent bool, agentFor time.Duration, agent *agentResult) (result, error) {
	r := result{nodes: n, delivery: "long_poll"}
	if heartbeatDelivery {
		r.delivery = "heartbeat"
	}
	dir, err := os.MkdirTemp("", fmt.Sprintf("navarch-bench-%d-", n))
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	addr := freeAddr()
	fmt.Fprintf(os.Stderr, "bench: %d nodes: starting control plane on %s\n", n, addr)
	cp, _, err := b.start(ctx, dir, addr, r.delivery)
	if err != nil {
		return r, err
	}
	defer func() { cp.stop() }()

	fleet, err := sim.New(sim.Options{Server: addr, Nodes: n, GPUs: 8, Conns: 8, RegisterConcurrency: 128, NoCommands: b.noCommands})
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
	if err := waitSteady(ctx, addr, n); err != nil {
		return r, err
	}
	fleet.HeartbeatLatencies().Reset()
	fleet.ReportLatencies().Reset()
	errsBefore := fleet.Errors()
	pid := cp.cmd.Process.Pid
	cpu0, err := cpuTime(pid)
	if err != nil {
		return r, err
	}
	gen0, _ := cpuTime(os.Getpid())
	var peak float64
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				if rss, err := rssMiB(pid); err == nil && rss > peak {
					peak = rss
				}
			}
		}
	}()
	windowStart := time.Now()
	if b.pprof != "" {
		go b.profile(fmt.Sprintf("cpu-%d.pprof", n), fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(b.window.Seconds())-5))
	}
	xids, err := measureXIDs(ctx, addr, fleet, n, b.window)
	if err != nil {
		return r, err
	}
	if rest := b.window - time.Since(windowStart); rest > 0 {
		time.Sleep(rest)
	}
	cpu1, _ := cpuTime(pid)
	gen1, _ := cpuTime(os.Getpid())
	if b.pprof != "" {
		b.profile(fmt.Sprintf("heap-%d.pprof", n), "/debug/pprof/heap")
		b.profile(fmt.Sprintf("memstats-%d.txt", n), "/debug/pprof/heap?debug=1")
		b.profile(fmt.Sprintf("goroutines-%d.txt", n), "/debug/pprof/goroutine?debug=1")
	}
	close(stopSampling)
	sampler.Wait()
	r.cpuPercent = 100 * (cpu1 - cpu0).Seconds() / time.Since(windowStart).Seconds()
	r.genPercent = 100 * (gen1 - gen0).Seconds() / time.Since(windowStart).Seconds()
	r.rssMiB, _ = rssMiB(pid)
	r.peakMiB = max(peak, r.rssMiB)
	hb := fleet.HeartbeatLatencies().Quantiles(0.5, 0.99)
	rp := fleet.ReportLatencies().Quantiles(0.5, 0.99)
	r.hbP50, r.hbP99, r.rpP50, r.rpP99 = hb[0], hb[1], rp[0], rp[1]
	r.errors = fleet.Errors() - errsBefore
	xq := quantiles(xids, 0.5, 0.99)
	r.xidP50, r.xidP99 = xq[0], xq[1]

	if r.snapshot, err = snapshotTime(ctx, addr); err != nil {
		return r, err
	}
	if measureAgent {
		fmt.Fprintf(os.Stderr, "bench: measuring a simulated 8-GPU agent for %s\n", agentFor)
		if *agent, err = b.measureAgent(ctx, addr, agentFor); err != nil {
			return r, err
		}
	}
	stopFleet()
	<-fleetDone

	fmt.Fprintf(os.Stderr, "bench: %d nodes: restarting the control plane\n", n)
	cp.stop()
	cp2, restart, err := b.start(ctx, dir, addr, r.delivery)
	if err != nil {
		return r, err
	}
	r.restart = restart
	cp = cp2
	return r, nil
}

// profile saves one of the control plane's profiles.
func (b *bench) profile(name, path string) {
	resp, err := http.Get("http://" + b.pprof + path)
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

// measureXIDs injects XIDs on random nodes, one every 100 ms for the
// window, and times each from the agent's call to a watcher receiving it.
func measureXIDs(ctx context.Context, addr string, fleet *sim.Fleet, n int, window time.Duration) ([]time.Duration, error) {
	conn, err := rpcclient.Dial(addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := controlplanev1.NewControlPlaneServiceClient(conn).WatchFleet(wctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	sent := map[string]time.Time{}
	var got []time.Duration
	ready := make(chan struct{})
	go func() {
		readyOnce := sync.OnceFunc(func() { close(ready) })
		for {
			m, err := stream.Recv()
			if err != nil {
				readyOnce()
				return
			}
			if m.GetSnapshot().GetComplete() {
				readyOnce()
			}
			if e := m.GetHealthEvent(); e != nil {
				at := time.Now()
				key := fmt.Sprintf("%s/%d", e.GetNodeId(), e.GetXid())
				mu.Lock()
				if t0, ok := sent[key]; ok {
					got = append(got, at.Sub(t0))
					delete(sent, key)
				}
				mu.Unlock()
			}
		}
	}()
	<-ready
	ids := fleet.NodeIDs()
	deadline := time.Now().Add(window - 2*time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		node := rand.IntN(n)
		xid := uint32(1000 + i)
		key := fmt.Sprintf("%s/%d", ids[node], xid)
		mu.Lock()
		sent[key] = time.Now()
		mu.Unlock()
		if err := fleet.InjectXID(ctx, node, i%8, xid); err != nil {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	return got, nil
}

// waitSteady waits until every node has reported health and heartbeats.
func waitSteady(ctx context.Context, addr string, n int) error {
	conn, err := rpcclient.Dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ops := controlplanev1.NewControlPlaneServiceClient(conn)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
		if err == nil && st.GetSummary().GetHealthUnknown() == 0 && int(st.GetSummary().GetOnline()) == n {
			time.Sleep(2 * time.Second)
			return nil
		}
		time.Sleep(time.Second)
	}
	return errors.New("the fleet did not settle within 3 minutes")
}

// snapshotTime opens a fresh watch and times the complete snapshot.
func snapshotTime(ctx context.Context, addr string) (time.Duration, error) {
	conn, err := rpcclient.Dial(addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ops := controlplanev1.NewControlPlaneServiceClient(conn)
	if _, err := ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{}); err != nil {
		return 0, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	began := time.Now()
	stream, err := ops.WatchFleet(wctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		return 0, err
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return 0, err
		}
		if m.GetSnapshot().GetComplete() {
			return time.Since(began), nil
		}
	}
}

// measureAgent runs the real agent binary on a simulated 8-GPU node at
// default intervals and measures its CPU and memory.
func (b *bench) measureAgent(ctx context.Context, addr string, d time.Duration) (agentResult, error) {
	cmd := exec.Command(filepath.Join(b.bin, "navarch-agent"), "--server", addr, "--node-id", "bench-agent", "--simulate", "--gpus", "8", "--log-level", "warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return agentResult{}, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	time.Sleep(10 * time.Second)
	pid := cmd.Process.Pid
	c0, err := cpuTime(pid)
	if err != nil {
		return agentResult{}, err
	}
	began := time.Now()
	time.Sleep(d)
	c1, _ := cpuTime(pid)
	rss, _ := rssMiB(pid)
	return agentResult{rssMiB: rss, cpuPercent: 100 * (c1 - c0).Seconds() / time.Since(began).Seconds(), measured: d}, nil
}

// cpuTime reads a process's user plus system time from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// rssMiB reads a process's resident set size.
func rssMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

func quantiles(d []time.Duration, qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	if len(d) == 0 {
		return out
	}
	s := slices.Clone(d)
	slices.Sort(s)
	for i, q := range qs {
		out[i] = s[min(len(s)-1, int(q*float64(len(s))))]
	}
	return out
}

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
