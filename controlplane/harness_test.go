package controlplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// harness runs a real control plane on loopback with a real Badger
// directory, and clients for both services.
type harness struct {
	t      *testing.T
	dir    string
	cfg    Config
	clock  clockwork.Clock
	provs  []Provider
	srv    *Server
	addr   string
	conn   *grpc.ClientConn
	node   nodev1.NodeServiceClient
	ops    controlplanev1.ControlPlaneServiceClient
	cancel context.CancelFunc
	done   chan error
}

type harnessOption func(*harness)

func withFakeClock(c *clockwork.FakeClock) harnessOption { return func(h *harness) { h.clock = c } }
func withConfig(fn func(*Config)) harnessOption          { return func(h *harness) { fn(&h.cfg) } }
func withProviders(p ...Provider) harnessOption          { return func(h *harness) { h.provs = p } }

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), cfg: Defaults()}
	h.cfg.Listen = "127.0.0.1:0"
	h.cfg.DataDir = h.dir
	h.cfg.CommandPollTimeout = Duration{Duration: 5 * time.Second}
	for _, o := range opts {
		o(h)
	}
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	h.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
	srv, err := New(context.Background(), Options{Config: h.cfg, Clock: h.clock, Providers: h.provs})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.srv, h.cancel, h.done = srv, cancel, make(chan error, 1)
	go func() { h.done <- srv.Serve(ctx, lis) }()
	h.addr = lis.Addr().String()
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		h.t.Fatal(err)
	}
	h.conn = conn
	h.node = nodev1.NewNodeServiceClient(conn)
	h.ops = controlplanev1.NewControlPlaneServiceClient(conn)
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("serve: %v", err)
	}
	_ = h.conn.Close()
	h.cancel = nil
}

// restart stops the server and starts a new one on the same data directory.
func (h *harness) restart() {
	h.stop()
	h.start()
}

func (h *harness) fleet() *Fleet { return h.srv.Fleet() }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func gpus(n int) []*fleetv1.Gpu {
	out := make([]*fleetv1.Gpu, n)
	for i := range out {
		out[i] = &fleetv1.Gpu{
			Index: uint32(i), Uuid: fmt.Sprintf("GPU-%04d", i), Name: "NVIDIA H100 80GB HBM3",
			MemoryTotalBytes: 80 << 30, SlowdownTemperatureCelsius: 87, NvlinkCount: 18,
		}
	}
	return out
}

func (h *harness) register(id string, n int) *nodev1.RegisterNodeResponse {
	h.t.Helper()
	resp, err := h.node.RegisterNode(ctxT(h.t), &nodev1.RegisterNodeRequest{NodeId: id, Hostname: id, Gpus: gpus(n), BootId: "boot-1"})
	if err != nil {
		h.t.Fatalf("register %s: %v", id, err)
	}
	return resp
}

// healthyReport sends a clean full snapshot so the node turns HEALTHY.
func (h *harness) healthyReport(id string, n int) {
	h.t.Helper()
	var ms []*fleetv1.GpuMetrics
	for i := range n {
		ms = append(ms, cleanMetrics(uint32(i)))
	}
	if _, err := h.node.ReportHealth(ctxT(h.t), &nodev1.ReportHealthRequest{NodeId: id, Metrics: ms, GpuCount: uint32(n)}); err != nil {
		h.t.Fatalf("report %s: %v", id, err)
	}
}

func cleanMetrics(i uint32) *fleetv1.GpuMetrics {
	m := &fleetv1.GpuMetrics{GpuIndex: i, TemperatureCelsius: 55, Ecc: &fleetv1.EccCounts{}, RowRemap: &fleetv1.RowRemapState{}, Unsupported: []string{"retired_pages"}}
	for l := range 18 {
		m.Nvlinks = append(m.Nvlinks, &fleetv1.NvLinkState{Link: uint32(l), Active: true})
	}
	return m
}

func (h *harness) xid(id string, gpu int32, code uint32) *nodev1.ReportHealthResponse {
	h.t.Helper()
	resp, err := h.node.ReportHealth(ctxT(h.t), &nodev1.ReportHealthRequest{NodeId: id, Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: gpu, Xid: code},
	}})
	if err != nil {
		h.t.Fatalf("report XID %d on %s: %v", code, id, err)
	}
	return resp
}

func (h *harness) get(id string) *controlplanev1.GetNodeResponse {
	h.t.Helper()
	resp, err := h.ops.GetNode(ctxT(h.t), &controlplanev1.GetNodeRequest{NodeId: id})
	if err != nil {
		h.t.Fatalf("get %s: %v", id, err)
	}
	return resp
}

// forceTerminate terminates a self-registered node with force, lets the
// monitor queue the TERMINATE command, and returns what the agent's next
// poll gets.
func (h *harness) forceTerminate(id string) []*fleetv1.Command {
	h.t.Helper()
	ctx := ctxT(h.t)
	if _, err := h.ops.TerminateNode(ctx, &controlplanev1.TerminateNodeRequest{NodeId: id, Force: true}); err != nil {
		h.t.Fatal(err)
	}
	h.fleet().Tick(ctx)
	polled, err := h.node.GetNodeCommands(ctx, &nodev1.GetNodeCommandsRequest{NodeId: id})
	if err != nil {
		h.t.Fatalf("poll %s: %v", id, err)
	}
	return polled.GetCommands()
}

func (h *harness) lifecycle(id string) fleetv1.LifecycleState {
	h.t.Helper()
	return h.get(id).GetNode().GetLifecycle()
}

// wantCode asserts err is a gRPC status with code and a message naming
// field (when field is not empty).
func wantCode(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("got %v (%q), want %v", st.Code(), st.Message(), code)
	}
	if field != "" && !strings.HasPrefix(st.Message(), field) {
		t.Fatalf("message %q does not name %q", st.Message(), field)
	}
}

// watch opens a WatchFleet stream and collects what arrives.
type watch struct {
	t      *testing.T
	stream controlplanev1.ControlPlaneService_WatchFleetClient
	cancel context.CancelFunc
	msgs   chan *controlplanev1.WatchFleetResponse
}

func (h *harness) watch(since uint64) *watch {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := h.ops.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{SinceRevision: since})
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	w := &watch{t: h.t, stream: stream, cancel: cancel, msgs: make(chan *controlplanev1.WatchFleetResponse, 100000)}
	go func() {
		defer close(w.msgs)
		for {
			m, err := stream.Recv()
			if err != nil {
				if err != io.EOF && status.Code(err) != codes.Canceled && status.Code(err) != codes.Unavailable {
					h.t.Logf("watch ended: %v", err)
				}
				return
			}
			w.msgs <- m
		}
	}()
	h.t.Cleanup(cancel)
	return w
}

// until reads messages until match returns true, failing after a timeout.
func (w *watch) until(what string, match func(*controlplanev1.WatchFleetResponse) bool) *controlplanev1.WatchFleetResponse {
	w.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-w.msgs:
			if !ok {
				w.t.Fatalf("stream ended waiting for %s", what)
			}
			if match(m) {
				return m
			}
		case <-timeout:
			w.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
