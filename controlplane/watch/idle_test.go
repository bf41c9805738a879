package watch

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"

	"github.com/navarch/navarch/internal/testutil"
)

// idleWatchers starts n watchers whose streams take one message and then
// read nothing, as a client that never reads; it returns once every one is
// stuck on its first snapshot chunk. The watchers end with ctx; wait
// returns when they have.
func idleWatchers(ctx context.Context, h *Hub, n int) (wait func()) {
	var stuck, ended sync.WaitGroup
	stuck.Add(n)
	ended.Add(n)
	for range n {
		go func() {
			defer ended.Done()
			var first sync.Once
			_ = h.Serve(ctx, 0, SendFunc(func(*controlplanev1.WatchFleetResponse) error {
				first.Do(stuck.Done)
				<-ctx.Done()
				return ctx.Err()
			}))
		}()
	}
	stuck.Wait()
	return ended.Wait
}

// heapAfterGC is the live heap, in bytes, once the collector has run.
func heapAfterGC() int64 {
	heap, _ := testutil.MemAfterGC()
	return heap
}

// changeFleet publishes changes to some of f's nodes and flushes
// heartbeats of all of them, a few rounds of each.
func changeFleet(h *Hub, f *fakeFleet, rounds int) {
	for round := range rounds {
		for i := 0; i < len(f.nodes); i += 10 {
			upsert(h, &fleetv1.Node{NodeId: f.nodes[i].state.GetNodeId(), Health: fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED})
		}
		for _, n := range f.nodes {
			f.beat(h, n.state.GetNodeId(), uint32(round))
		}
		h.Flush()
	}
}

// TestIdleWatchersMemory: watchers that read nothing cost memory for what
// waits for them, not for their bound, and share one snapshot: a thousand
// of them on a thousand-node fleet, with the default 65 536-change bound,
// while changes and heartbeats flow, add well under 32 KiB each to the
// heap. A queue allocated at its bound would be 512 KiB each.
func TestIdleWatchersMemory(t *testing.T) {
	const watchers = 1000
	const perWatcher = 32 << 10
	f := fleetOf(1000)
	h := newHub(t, f, Options{Buffer: 65536, Replay: 16384})
	changeFleet(h, f, 1) // the ring and the fleet at their working size
	before := heapAfterGC()
	ctx, cancel := context.WithCancel(context.Background())
	wait := idleWatchers(ctx, h, watchers)
	defer wait()
	defer cancel()
	changeFleet(h, f, 3)
	grown := heapAfterGC() - before
	if grown > watchers*perWatcher {
		t.Fatalf("%d idle watchers grew the heap by %d MiB, %d KiB each; want under %d KiB each",
			watchers, grown>>20, grown/watchers>>10, perWatcher>>10)
	}
	t.Logf("%d idle watchers: %d KiB of heap each", watchers, grown/watchers>>10)
}

// gpuFleetOf is a fleet of n nodes with eight GPUs each, described as
// agents register them, so that its snapshot is the size of a real one.
func gpuFleetOf(n int) *fakeFleet {
	f := fleetOf(n)
	for i, node := range f.nodes {
		for g := range 8 {
			node.state.Gpus = append(node.state.Gpus, &fleetv1.Gpu{
				Index:                      uint32(g),
				Uuid:                       fmt.Sprintf("GPU-%08x-5f1c-4e2b-9a7d-%012x", i, g),
				Name:                       "NVIDIA H100 80GB HBM3",
				Serial:                     fmt.Sprintf("165432%07d", i*8+g),
				PciBusId:                   fmt.Sprintf("0000:%02x:00.0", 0x18+g*0x10),
				MemoryTotalBytes:           80 << 30,
				SlowdownTemperatureCelsius: 90,
				PowerLimitMilliwatts:       700000,
				NvlinkCount:                18,
				Health:                     fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY,
			})
		}
	}
	return f
}

// The client process BenchmarkIdleWatchers starts reads the server's
// address and how many streams to open from these.
const (
	watchClientAddrEnv    = "NAVARCH_WATCH_BENCH_ADDR"
	watchClientStreamsEnv = "NAVARCH_WATCH_BENCH_STREAMS"
)

// runWatchClient is the client process: it opens the streams on one
// connection, reads nothing from them, says "ready" and waits for its
// standard input to close. Each stream's window is gRPC's smallest, 64 KiB,
// so what the server cannot send stays on the server.
func runWatchClient(addr string) int {
	streams, err := strconv.Atoi(os.Getenv(watchClientStreamsEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "watch client: streams:", err)
		return 2
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithInitialWindowSize(64<<10))
	if err != nil {
		fmt.Fprintln(os.Stderr, "watch client: dial:", err)
		return 1
	}
	defer conn.Close()
	client := controlplanev1.NewControlPlaneServiceClient(conn)
	for i := range streams {
		if _, err := client.WatchFleet(context.Background(), &controlplanev1.WatchFleetRequest{}); err != nil {
			fmt.Fprintf(os.Stderr, "watch client: open stream %d: %v\n", i, err)
			return 1
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// BenchmarkIdleWatchers opens WatchFleet streams that read nothing, from a
// client in another process, on a 1 000-node fleet of eight-GPU nodes with
// the default 65 536-change bound; publishes changes and flushes
// heartbeats while they sit; and reports what the server holds for each
// stream: heap and goroutine stacks, after a collection, over what it held
// before they opened. Run it once: -benchtime=1x.
func BenchmarkIdleWatchers(b *testing.B) {
	for _, watchers := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("watchers=%d", watchers), func(b *testing.B) {
			for range b.N {
				idleWatchersOverGRPC(b, watchers)
			}
		})
	}
}

func idleWatchersOverGRPC(b *testing.B, watchers int) {
	f := gpuFleetOf(1000)
	h := newHub(b, f, Options{Buffer: 65536, Replay: 16384})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serveGRPC(b, h, lis)
	changeFleet(h, f, 1) // the ring and the fleet at their working size
	heapBefore, stacksBefore := testutil.MemAfterGC()

	_, out := testutil.HelperProcess(b, watchClientAddrEnv+"="+lis.Addr().String(), fmt.Sprintf("%s=%d", watchClientStreamsEnv, watchers))
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("the client said %q (%v), want ready", line, err)
	}
	for deadline := time.Now().Add(time.Minute); watching(h) < watchers; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d streams are watching", watching(h), watchers)
		}
	}
	changeFleet(h, f, 3)
	// The transport sends what the client's windows take; wait until the
	// server holds a steady amount.
	heap, stacks := testutil.MemAfterGC()
	for range 20 {
		time.Sleep(500 * time.Millisecond)
		nextHeap, nextStacks := testutil.MemAfterGC()
		settled := nextHeap-heap < heap/100 && heap-nextHeap < heap/100
		heap, stacks = nextHeap, nextStacks
		if settled {
			break
		}
	}
	b.ReportMetric(float64(heap-heapBefore)/float64(watchers), "heap-B/watcher")
	b.ReportMetric(float64(stacks-stacksBefore)/float64(watchers), "stack-B/watcher")
	b.ReportMetric(float64(snapshotBytes(h, f))/1000, "snapshot-B/node")
}

// watching is how many watchers the hub has.
func watching(h *Hub) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

// snapshotBytes is the encoded size of a snapshot of f.
func snapshotBytes(h *Hub, f Fleet) int {
	h.mu.Lock()
	s := h.snap
	h.mu.Unlock()
	if s == nil {
		s = &snapshot{entries: f.Entries()}
	}
	n := 0
	for _, m := range s.messages(f) {
		n += proto.Size(m)
	}
	return n
}
