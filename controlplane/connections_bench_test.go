package controlplane_test

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// The agents' process BenchmarkAgentConnections starts reads the control
// plane's address, its CA, the join token and how many agents to run from
// these.
const (
	connClientAddrEnv  = "NAVARCH_CONN_BENCH_ADDR"
	connClientCAEnv    = "NAVARCH_CONN_BENCH_CA"
	connClientTokenEnv = "NAVARCH_CONN_BENCH_TOKEN"
	connClientNodesEnv = "NAVARCH_CONN_BENCH_NODES"
)

// connBenchHeavy is each agent's heartbeat interval in the heartbeat-heavy
// part of the benchmark: N/connBenchHeavy calls a second, each on its own
// connection.
const connBenchHeavy = time.Second

// connBenchWindow is how long the benchmark counts heartbeats and CPU.
const connBenchWindow = 15 * time.Second

// The agents' process is this test binary started again: it runs the
// agents before the tests would start, and never runs them.
func init() {
	if addr := os.Getenv(connClientAddrEnv); addr != "" {
		os.Exit(runConnClient(addr))
	}
}

// BenchmarkAgentConnections is what each real agent's own connection costs
// the control plane. N agents, in another process so that their memory
// does not mix in, each join with their own key, take a certificate and
// call a real control plane (TLS, agent identities on, as by default) over
// a connection of their own, heartbeating at the default interval with
// eight GPUs' samples and holding a command stream. It reports what the
// control plane holds per connection once they all are open, against the
// same nodes registered with no connection open: heap and goroutine stacks
// after a collection, goroutines, and resident memory with free pages
// returned; then the control plane's CPU per heartbeat with every agent
// heartbeating once per connBenchHeavy. Run it once: -benchtime=1x.
func BenchmarkAgentConnections(b *testing.B) {
	for _, nodes := range []int{2000} {
		b.Run(fmt.Sprintf("agents=%d", nodes), func(b *testing.B) {
			for range b.N {
				agentConnections(b, nodes)
			}
		})
	}
}

func agentConnections(b *testing.B, nodes int) {
	cp := cptest.Start(b, cptest.Options{Config: func(c *controlplane.Config) { c.AgentIdentities = true }})
	ctx := context.Background()
	tok, err := cp.Ops.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "bench", Role: controlplanev1.Role_ROLE_AGENT, Uses: uint32(nodes)})
	if err != nil {
		b.Fatal(err)
	}
	stdin, out := testutil.HelperProcess(b, connClientAddrEnv+"="+cp.Addr, connClientCAEnv+"="+cp.Server.CAFile(),
		connClientTokenEnv+"="+tok.GetToken(), fmt.Sprintf("%s=%d", connClientNodesEnv, nodes))
	ask := func(what, want string) string {
		if _, err := io.WriteString(stdin, what+"\n"); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadString('\n')
		if err != nil || (want != "" && line != want+"\n") {
			b.Fatalf("the agents answered %q to %s (%v), want %q", line, what, err, want)
		}
		return strings.TrimSuffix(line, "\n")
	}

	ask("register", "registered")
	heapBefore, stacksBefore := settledMem()
	goroutinesBefore, rssBefore := runtime.NumGoroutine(), residentAfterFree(b)
	ask("connect", "connected")
	heap, stacks := settledMem()
	goroutines, rss := runtime.NumGoroutine()-goroutinesBefore, residentAfterFree(b)

	heartbeats := func() int64 {
		n, err := strconv.ParseInt(ask("heartbeats", ""), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	ask("heavy", "heavy")
	time.Sleep(connBenchHeavy + time.Second)
	hbBefore, cpuBefore, start := heartbeats(), cpuTime(), time.Now()
	time.Sleep(connBenchWindow)
	hbAfter, cpuAfter, took := heartbeats(), cpuTime(), time.Since(start)

	per := float64(nodes)
	b.ReportMetric(float64(heap-heapBefore)/per, "heap-B/conn")
	b.ReportMetric(float64(stacks-stacksBefore)/per, "stack-B/conn")
	b.ReportMetric(float64(goroutines)/per, "goroutines/conn")
	b.ReportMetric(float64(rss-rssBefore)/per, "rss-B/conn")
	b.ReportMetric(float64(hbAfter-hbBefore)/took.Seconds(), "heartbeats/s")
	b.ReportMetric(float64(cpuAfter-cpuBefore)/float64(time.Microsecond)/float64(max(hbAfter-hbBefore, 1)), "cpu-µs/heartbeat")
}

// settledMem is the live heap and goroutine stacks after collections, once
// stacks, which shrink by half at most once a collection, have settled.
func settledMem() (heap, stacks int64) {
	heap, stacks = testutil.MemAfterGC()
	for range 20 {
		time.Sleep(200 * time.Millisecond)
		nextHeap, nextStacks := testutil.MemAfterGC()
		settled := nextStacks == stacks && nextHeap-heap < heap/100 && heap-nextHeap < heap/100
		heap, stacks = nextHeap, nextStacks
		if settled {
			break
		}
	}
	return heap, stacks
}

// residentAfterFree is this process's resident memory, in bytes, once the
// runtime has returned what it can to the system.
func residentAfterFree(b *testing.B) int64 {
	debug.FreeOSMemory()
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(statm))
	if len(fields) < 2 {
		b.Fatalf("statm: %q", statm)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

// connAgent is one agent of the agents' process: its node, its key and
// certificate, and its own connection once it has one.
type connAgent struct {
	id     string
	target rpcclient.Target
	conn   *grpc.ClientConn
	nodes  nodev1.NodeServiceClient
}

// runConnClient is the agents' process. It answers each line on its
// standard input: "register" joins and registers every agent, each on a
// connection it closes again; "connect" opens every agent's connection,
// with its command stream and heartbeats at the default interval;
// "heavy" makes every agent heartbeat once per connBenchHeavy;
// "heartbeats" is how many heartbeats were answered. It ends when its
// standard input closes.
func runConnClient(addr string) int {
	nodes, err := strconv.Atoi(os.Getenv(connClientNodesEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "agents: nodes:", err)
		return 2
	}
	base := rpcclient.Target{Addr: addr, CACert: os.Getenv(connClientCAEnv)}
	agents := make([]*connAgent, nodes)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	heavy := make(chan struct{})
	var heartbeats atomic.Int64
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var err error
		switch in.Text() {
		case "register":
			err = joinAll(ctx, base, agents)
			fmt.Println("registered")
		case "connect":
			err = connectAll(ctx, agents, heavy, &heartbeats)
			fmt.Println("connected")
		case "heavy":
			close(heavy)
			fmt.Println("heavy")
		case "heartbeats":
			fmt.Println(heartbeats.Load())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "agents:", err)
			return 1
		}
	}
	return 0
}

// joinAll joins every agent with the token, on one connection without a
// certificate as a new machine calls, then registers each on a connection
// of its own with its certificate, closed again.
func joinAll(ctx context.Context, base rpcclient.Target, agents []*connAgent) error {
	conn, err := rpcclient.Dial(base)
	if err != nil {
		return fmt.Errorf("dial to join: %w", err)
	}
	defer conn.Close()
	joins := nodev1.NewNodeServiceClient(conn)
	token := os.Getenv(connClientTokenEnv)
	return forEach(len(agents), func(i int) error {
		a := &connAgent{id: fmt.Sprintf("conn-%06d", i), target: base}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: a.id}}, key)
		if err != nil {
			return err
		}
		resp, err := joins.JoinNode(ctx, &nodev1.JoinNodeRequest{NodeId: a.id, JoinToken: token, CertificateRequest: csr})
		if err != nil {
			return fmt.Errorf("join %s: %w", a.id, err)
		}
		cert := &tls.Certificate{Certificate: [][]byte{resp.GetCertificate()}, PrivateKey: key}
		a.target.Certificate = func() (*tls.Certificate, error) { return cert, nil }
		agents[i] = a
		own, err := rpcclient.Dial(a.target)
		if err != nil {
			return fmt.Errorf("dial %s: %w", a.id, err)
		}
		defer own.Close()
		_, err = nodev1.NewNodeServiceClient(own).RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: a.id, Hostname: a.id, BootId: "boot-1", Gpus: fleettest.GPUs(8)})
		if err != nil {
			return fmt.Errorf("register %s: %w", a.id, err)
		}
		return nil
	})
}

// connectAll opens every agent's own connection and command stream and
// starts its heartbeats; it returns once every stream is taken.
func connectAll(ctx context.Context, agents []*connAgent, heavy <-chan struct{}, heartbeats *atomic.Int64) error {
	return forEach(len(agents), func(i int) error {
		a := agents[i]
		conn, err := rpcclient.Dial(a.target)
		if err != nil {
			return fmt.Errorf("dial %s: %w", a.id, err)
		}
		a.conn, a.nodes = conn, nodev1.NewNodeServiceClient(conn)
		stream, err := a.nodes.WatchNodeCommands(ctx, &nodev1.WatchNodeCommandsRequest{NodeId: a.id})
		if err == nil {
			_, err = stream.Header()
		}
		if err != nil {
			return fmt.Errorf("command stream of %s: %w", a.id, err)
		}
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					return
				}
			}
		}()
		go a.heartbeat(ctx, heavy, heartbeats)
		return nil
	})
}

// heartbeat sends the agent's heartbeats, at the default interval and
// once per connBenchHeavy after heavy closes, each at a random phase as a
// fleet's agents are.
func (a *connAgent) heartbeat(ctx context.Context, heavy <-chan struct{}, heartbeats *atomic.Int64) {
	every := controlplane.Defaults().HeartbeatInterval.Duration
	samples := make([]*fleetv1.GpuSample, 8)
	for g := range samples {
		samples[g] = &fleetv1.GpuSample{GpuIndex: uint32(g), UtilizationGpuPercent: 87, TemperatureCelsius: 64, PowerUsageMilliwatts: 512000, MemoryUsedBytes: 60 << 30, ProcessCount: 1}
	}
	wait := mathrand.N(every)
	for {
		select {
		case <-ctx.Done():
			return
		case <-heavy:
			heavy, every, wait = nil, connBenchHeavy, mathrand.N(connBenchHeavy)
			continue
		case <-time.After(wait):
		}
		if _, err := a.nodes.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: a.id, SentAt: timestamppb.Now(), Samples: samples}); err == nil {
			heartbeats.Add(1)
		}
		wait = every
	}
}

// forEach runs do for 0..n-1, 32 at a time, and returns the first error.
func forEach(n int, do func(i int) error) error {
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := do(i); err != nil {
				mu.Lock()
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}
