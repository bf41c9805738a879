package controlplane_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// harness is a real control plane (cptest) with the helpers these tests
// share: registering nodes, reporting health, reading nodes, watching.
type harness struct {
	*cptest.ControlPlane
	t     *testing.T
	cfg   controlplane.Config
	clock clockwork.Clock
	node  nodev1.NodeServiceClient
	ops   controlplanev1.ControlPlaneServiceClient
}

type harnessOption func(*cptest.Options)

func withFakeClock(c *clockwork.FakeClock) harnessOption {
	return func(o *cptest.Options) { o.Clock = c }
}

func withConfig(fn func(*controlplane.Config)) harnessOption {
	return func(o *cptest.Options) {
		prev := o.Config
		o.Config = func(c *controlplane.Config) { prev(c); fn(c) }
	}
}

func withProviders(p ...provider.Provider) harnessOption {
	return func(o *cptest.Options) { o.Providers = func(rpcclient.Target) []provider.Provider { return p } }
}

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	o := cptest.Options{Config: func(c *controlplane.Config) { c.CommandPollTimeout = controlplane.Duration{Duration: 5 * time.Second} }}
	for _, opt := range opts {
		opt(&o)
	}
	h := &harness{ControlPlane: cptest.Start(t, o), t: t, clock: o.Clock}
	h.cfg = h.Config
	h.node, h.ops = h.Nodes, h.Ops
	return h
}

// restart stops the server and starts a new one on the same data directory.
func (h *harness) restart() {
	h.Restart()
	h.node, h.ops = h.Nodes, h.Ops
}

func (h *harness) fleet() *fleet.Fleet { return h.Server.Fleet() }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (h *harness) register(id string, n int) *nodev1.RegisterNodeResponse {
	h.t.Helper()
	resp, err := h.node.RegisterNode(ctxT(h.t), &nodev1.RegisterNodeRequest{NodeId: id, Hostname: id, Gpus: fleettest.GPUs(n), BootId: "boot-1"})
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
		ms = append(ms, fleettest.CleanMetrics(uint32(i)))
	}
	if _, err := h.node.ReportHealth(ctxT(h.t), &nodev1.ReportHealthRequest{NodeId: id, Metrics: ms, GpuCount: uint32(n)}); err != nil {
		h.t.Fatalf("report %s: %v", id, err)
	}
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
type fleetWatch struct {
	t      *testing.T
	stream controlplanev1.ControlPlaneService_WatchFleetClient
	cancel context.CancelFunc
	msgs   chan *controlplanev1.WatchFleetResponse
}

func (h *harness) watch(since uint64) *fleetWatch {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := h.ops.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{SinceRevision: since})
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	w := &fleetWatch{t: h.t, stream: stream, cancel: cancel, msgs: make(chan *controlplanev1.WatchFleetResponse, 100000)}
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
func (w *fleetWatch) until(what string, match func(*controlplanev1.WatchFleetResponse) bool) *controlplanev1.WatchFleetResponse {
	w.t.Helper()
	return w.nudgedUntil(what, match, nil)
}

// nudgedUntil is until that calls nudge first and again whenever nothing
// arrives for 50 ms, for messages that need something to happen first.
func (w *fleetWatch) nudgedUntil(what string, match func(*controlplanev1.WatchFleetResponse) bool, nudge func()) *controlplanev1.WatchFleetResponse {
	w.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		var quiet <-chan time.Time
		if nudge != nil {
			nudge()
			quiet = time.After(50 * time.Millisecond)
		}
	read:
		for {
			select {
			case m, ok := <-w.msgs:
				if !ok {
					w.t.Fatalf("stream ended waiting for %s", what)
				}
				if match(m) {
					return m
				}
			case <-quiet:
				break read
			case <-timeout:
				w.t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
}
