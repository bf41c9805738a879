package controlplane_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// The agents' process BenchmarkCommandWaits starts reads the control
// plane's address, its CA, how many nodes to wait for and how from these.
const (
	waitClientAddrEnv  = "NAVARCH_WAIT_BENCH_ADDR"
	waitClientCAEnv    = "NAVARCH_WAIT_BENCH_CA"
	waitClientNodesEnv = "NAVARCH_WAIT_BENCH_NODES"
	waitClientModeEnv  = "NAVARCH_WAIT_BENCH_MODE"
)

// waitBenchConns is how many connections the agents' process shares, as
// the fleet simulator does.
const waitBenchConns = 4

// waitBenchWindow is how long the benchmark counts the calls and the CPU
// the waits cost once they are all open.
const waitBenchWindow = 15 * time.Second

// waitModes are the ways of delivering commands the benchmark compares:
// the command_delivery it configures and how the agents wait.
var waitModes = []struct {
	name, delivery string
}{
	{"long-poll", "long_poll"},
	{"heartbeat", "heartbeat"},
	{"stream", "stream"},
}

// BenchmarkCommandWaits has N agents, in another process so that their
// memory does not mix in, wait for commands from a real control plane over
// gRPC and TLS on loopback, in each delivery mode, and reports what the
// control plane holds for each waiting node after a collection (heap,
// goroutine stacks, goroutines) and what the waits cost it while nothing
// is queued (calls a second and CPU a second, over waitBenchWindow). Run
// it once: -benchtime=1x.
func BenchmarkCommandWaits(b *testing.B) {
	for _, nodes := range []int{5000} {
		for _, mode := range waitModes {
			b.Run(fmt.Sprintf("nodes=%d/%s", nodes, mode.name), func(b *testing.B) {
				for range b.N {
					commandWaits(b, nodes, mode.name, mode.delivery)
				}
			})
		}
	}
}

func commandWaits(b *testing.B, nodes int, mode, delivery string) {
	cp := cptest.Start(b, cptest.Options{Config: func(c *controlplane.Config) {
		c.CommandDelivery = delivery
		c.MaxStreamsPerConnection = 100000
	}})
	ctx := context.Background()
	registerNodes(b, ctx, cp.Nodes, nodes)
	heapBefore, stacksBefore := testutil.MemAfterGC()
	goroutinesBefore := runtime.NumGoroutine()

	stdin, out := testutil.HelperProcess(b, waitClientAddrEnv+"="+cp.Addr, waitClientCAEnv+"="+cp.Server.CAFile(),
		fmt.Sprintf("%s=%d", waitClientNodesEnv, nodes), waitClientModeEnv+"="+mode)
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("the agents said %q (%v), want ready", line, err)
	}
	held := 0
	if mode != "heartbeat" {
		held = nodes
	}
	for deadline := time.Now().Add(time.Minute); runtime.NumGoroutine()-goroutinesBefore < held; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d waits are open", runtime.NumGoroutine()-goroutinesBefore, held)
		}
	}
	// Stacks shrink by half at most once a collection: let them settle.
	heap, stacks := testutil.MemAfterGC()
	for range 20 {
		time.Sleep(200 * time.Millisecond)
		nextHeap, nextStacks := testutil.MemAfterGC()
		settled := nextStacks == stacks && nextHeap-heap < heap/100 && heap-nextHeap < heap/100
		heap, stacks = nextHeap, nextStacks
		if settled {
			break
		}
	}
	goroutines := runtime.NumGoroutine() - goroutinesBefore

	calls := func() int64 {
		if _, err := io.WriteString(stdin, "calls\n"); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		n, err := strconv.ParseInt(line[:len(line)-1], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	callsBefore, cpuBefore, start := calls(), cpuTime(), time.Now()
	time.Sleep(waitBenchWindow)
	callsAfter, cpuAfter, took := calls(), cpuTime(), time.Since(start)

	per := float64(nodes)
	b.ReportMetric(float64(heap-heapBefore)/per, "heap-B/node")
	b.ReportMetric(float64(stacks-stacksBefore)/per, "stack-B/node")
	b.ReportMetric(float64(goroutines)/per, "goroutines/node")
	b.ReportMetric(float64(callsAfter-callsBefore)/took.Seconds(), "calls/s")
	b.ReportMetric(float64(cpuAfter-cpuBefore)/float64(time.Millisecond)/took.Seconds(), "cpu-ms/s")
}

// registerNodes registers n nodes, a few at a time.
func registerNodes(b *testing.B, ctx context.Context, c nodev1.NodeServiceClient, n int) {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			id := waitNodeID(i)
			if _, err := c.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Hostname: id, BootId: "boot-1"}); err != nil {
				failed.Store(err)
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("register: %v", err)
	}
}

func waitNodeID(i int) string { return fmt.Sprintf("wait-%06d", i) }

// cpuTime is the CPU this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runWaitClient is the agents' process: it waits for every node's
// commands as the mode says, says "ready", answers "calls" with how many
// calls it has made, and ends when its standard input closes.
func runWaitClient(addr string) int {
	nodes, err := strconv.Atoi(os.Getenv(waitClientNodesEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "wait client: nodes:", err)
		return 2
	}
	var clients []nodev1.NodeServiceClient
	for range waitBenchConns {
		conn, err := rpcclient.Dial(rpcclient.Target{Addr: addr, CACert: os.Getenv(waitClientCAEnv)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "wait client: dial:", err)
			return 1
		}
		defer conn.Close()
		clients = append(clients, nodev1.NewNodeServiceClient(conn))
	}
	var calls atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mode := os.Getenv(waitClientModeEnv)
	for i := range nodes {
		c := clients[i%len(clients)]
		switch mode {
		case "long-poll":
			go longPoll(ctx, c, waitNodeID(i), &calls)
		case "stream":
			go watchCommands(ctx, c, waitNodeID(i), &calls)
		}
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(calls.Load())
	}
	return 0
}

// longPoll keeps a GetNodeCommands call waiting for one node, as an agent
// in long-poll delivery does. The first call waits a random part of the
// bound, so the nodes poll again spread out as a fleet's agents do.
func longPoll(ctx context.Context, c nodev1.NodeServiceClient, id string, calls *atomic.Int64) {
	const bound = 30 * time.Second
	wait := rand.N(bound)
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
		_, err := c.GetNodeCommands(cctx, &nodev1.GetNodeCommandsRequest{NodeId: id, Wait: durationpb.New(wait)})
		cancel()
		calls.Add(1)
		if err != nil {
			time.Sleep(time.Second)
		}
		wait = bound
	}
}

// watchCommands keeps a WatchNodeCommands stream open for one node, as an
// agent in stream delivery does.
func watchCommands(ctx context.Context, c nodev1.NodeServiceClient, id string, calls *atomic.Int64) {
	for ctx.Err() == nil {
		stream, err := c.WatchNodeCommands(ctx, &nodev1.WatchNodeCommandsRequest{NodeId: id})
		calls.Add(1)
		for err == nil {
			_, err = stream.Recv()
		}
		time.Sleep(time.Second)
	}
}
