// Package agent is navarch-agent: it reads a node's GPUs through NVML and
// reports to the control plane's NodeService. The agent always dials; the
// control plane never dials a node.
//
// Its loops: register (with backoff and jitter until the control plane
// answers), heartbeat, periodic health reports, an immediate push of every
// new event, and the command long poll. NVML reads run on their own
// goroutines and never wait on the network; events wait in a bounded buffer
// while the control plane is unreachable.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/agent/gpu"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Options configures New.
type Options struct {
	// NodeID is the node's id. Required.
	NodeID string
	// Hostname is reported at registration.
	Hostname string
	// Labels are sent at registration.
	Labels map[string]string
	// InstanceID is the provider's id for this node, if a provider started it.
	InstanceID string
	// BootID identifies this boot of the node.
	BootID string
	// Simulated marks the node's GPUs as simulated.
	Simulated bool
	// Version is the agent's version.
	Version string
	// Conn reaches the control plane. Required.
	Conn grpc.ClientConnInterface
	// NVML is the GPU library: the real driver or a simulated one. Required.
	NVML nvml.Interface
	// Clock drives every interval; nil means real time.
	Clock clockwork.Clock
	// Logger receives the agent's logs; nil discards them.
	Logger *slog.Logger
	// EventBuffer is how many events wait while the control plane is
	// unreachable; 0 means 4096.
	EventBuffer int
	// PollInterval is how often the GPUs are read; 0 means 5s.
	PollInterval time.Duration
	// KillGrace is how long a forced drain waits between TERM and KILL; 0
	// means 10s.
	KillGrace time.Duration
	// Signal sends a signal to a process; nil means syscall.Kill.
	Signal func(pid int, sig syscall.Signal) error
	// OnLifecycle, when set, learns the node's lifecycle as the agent does:
	// at registration, from heartbeat answers, and from each command it
	// carries out. A scheduler hook can stop placing work on a node that
	// is not ACTIVE; the simulated GPUs use it to stop starting jobs.
	OnLifecycle func(fleetv1.LifecycleState)
}

// Agent is one node's agent.
type Agent struct {
	o      Options
	node   nodev1.NodeServiceClient
	clock  clockwork.Clock
	log    *slog.Logger
	buf    *eventBuffer
	reader *gpu.Reader
	inv    *gpu.Inventory

	mu       sync.Mutex
	latest   []gpu.Reading
	heartbIv time.Duration
	reportIv time.Duration
	pollWait time.Duration
	drains   map[string]context.CancelFunc // running drains by command id
	handled  map[string]bool               // commands already carried out
	delivery nodev1.CommandDelivery
	hint     chan struct{} // a heartbeat said commands are pending

	upMu sync.Mutex
	up   chan struct{} // closed when heartbeats get through again after failing

	results *resultQueue
	stop    context.CancelFunc

	// lcMu orders what OnLifecycle learns; lcSeq counts the lifecycle
	// changes the agent's commands made, so that an answer to a request
	// sent before one of them cannot undo it.
	lcMu  sync.Mutex
	lcSeq uint64
}

// New checks the options. Run starts the agent.
func New(o Options) (*Agent, error) {
	if o.NodeID == "" {
		return nil, errors.New("new agent: node id is required")
	}
	if o.Conn == nil {
		return nil, errors.New("new agent: connection is required")
	}
	if o.NVML == nil {
		return nil, errors.New("new agent: NVML library is required")
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 4096
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 5 * time.Second
	}
	if o.KillGrace <= 0 {
		o.KillGrace = 10 * time.Second
	}
	if o.Signal == nil {
		o.Signal = func(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }
	}
	a := &Agent{
		o:        o,
		node:     nodev1.NewNodeServiceClient(o.Conn),
		clock:    o.Clock,
		log:      o.Logger.With("node", o.NodeID),
		buf:      newEventBuffer(o.EventBuffer),
		heartbIv: 10 * time.Second,
		reportIv: 30 * time.Second,
		pollWait: 30 * time.Second,
		drains:   make(map[string]context.CancelFunc),
		handled:  make(map[string]bool),
		hint:     make(chan struct{}, 1),
		up:       make(chan struct{}),
	}
	a.results = newResultQueue(a)
	return a, nil
}

// Dropped is how many events were dropped because the buffer overflowed.
func (a *Agent) Dropped() uint64 { return a.buf.droppedCount() }

// Pending is how many events wait to be delivered.
func (a *Agent) Pending() int { return a.buf.len() }

// Run opens NVML, registers and runs the loops until ctx ends or the
// control plane tells the agent to terminate. It fails at once when NVML
// cannot be used, and when the control plane rejects the registration as
// invalid.
func (a *Agent) Run(ctx context.Context) error {
	reader, err := gpu.Open(a.o.NVML)
	if err != nil {
		return err
	}
	defer reader.Close()
	inv, err := reader.Inventory()
	if err != nil {
		return fmt.Errorf("read GPU inventory: %w", err)
	}
	a.reader, a.inv = reader, inv
	a.log.Info("GPUs found", "count", len(inv.GPUs), "driver", inv.DriverVersion, "cuda", inv.CUDAVersion, "simulated", a.o.Simulated)
	for _, g := range reader.Absent() {
		// Registered as unanswered: the control plane marks it lost.
		a.log.Warn("GPU did not answer; watching the others", "gpu", g.Index, "err", g.Reason)
	}

	ctx, stop := context.WithCancel(ctx)
	a.stop = stop
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	a.poll(a.clock.Now()) // the first reports carry real metrics
	goLoop := func(fn func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); fn(ctx) }()
	}
	goLoop(a.pollLoop)
	goLoop(a.xidLoop)
	goLoop(a.results.run)

	for ctx.Err() == nil {
		resp, err := a.register(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		a.applyIntervals(resp)
		a.session(ctx)
	}
	return nil
}

// register calls RegisterNode until it succeeds, backing off with jitter.
// An InvalidArgument or FailedPrecondition answer is final.
func (a *Agent) register(ctx context.Context) (*nodev1.RegisterNodeResponse, error) {
	req := &nodev1.RegisterNodeRequest{
		NodeId:         a.o.NodeID,
		Hostname:       a.o.Hostname,
		Labels:         a.o.Labels,
		Gpus:           a.inv.GPUs,
		UnansweredGpus: unanswered(a.reader.Absent()),
		DriverVersion:  a.inv.DriverVersion,
		CudaVersion:    a.inv.CUDAVersion,
		AgentVersion:   a.o.Version,
		Simulated:      a.o.Simulated,
		InstanceId:     a.o.InstanceID,
		BootId:         a.o.BootID,
	}
	b := newBackoff(500*time.Millisecond, 30*time.Second)
	for attempt := 1; ; attempt++ {
		seq := a.lifecycleSeq()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := a.node.RegisterNode(cctx, req)
		cancel()
		if err == nil {
			a.log.Info("registered", "lifecycle", resp.GetLifecycle(), "heartbeat", resp.GetHeartbeatInterval().AsDuration())
			a.answeredLifecycle(resp.GetLifecycle(), seq)
			return resp, nil
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied, codes.Unauthenticated:
			return nil, fmt.Errorf("control plane refused the registration: %s", status.Convert(err).Message())
		}
		wait := b.next()
		a.log.Warn("control plane not reachable; will retry", "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", status.Convert(err).Message())
		if err := sleep(ctx, a.clock, wait); err != nil {
			return nil, err
		}
	}
}

func (a *Agent) applyIntervals(resp *nodev1.RegisterNodeResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d := resp.GetHeartbeatInterval().AsDuration(); d > 0 {
		a.heartbIv = d
	}
	if d := resp.GetHealthReportInterval().AsDuration(); d > 0 {
		a.reportIv = d
	}
	if d := resp.GetCommandPollTimeout().AsDuration(); d > 0 {
		a.pollWait = d
	}
	a.delivery = resp.GetCommandDelivery()
}

func (a *Agent) longPolls() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.delivery != nodev1.CommandDelivery_COMMAND_DELIVERY_HEARTBEAT
}

func (a *Agent) intervals() (heartbeat, report, poll time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.heartbIv, a.reportIv, a.pollWait
}

// session runs the loops that talk to the control plane until ctx ends or
// one of them learns the node must register again.
func (a *Agent) session(ctx context.Context) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context, context.CancelFunc){a.heartbeatLoop, a.reportLoop, a.commandLoop} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(sctx, cancel) }()
	}
	wg.Wait()
	if ctx.Err() == nil {
		a.log.Warn("control plane does not know this node; registering again")
	}
}

// lifecycleSeq is the count of command-made lifecycle changes, taken before
// a request whose answer carries the lifecycle.
func (a *Agent) lifecycleSeq() uint64 {
	a.lcMu.Lock()
	defer a.lcMu.Unlock()
	return a.lcSeq
}

// answeredLifecycle passes a lifecycle from the control plane's answer to
// OnLifecycle, unless a command changed the lifecycle after the request
// went out (seq is from lifecycleSeq): the answer is older than that.
func (a *Agent) answeredLifecycle(l fleetv1.LifecycleState, seq uint64) {
	if a.o.OnLifecycle == nil || l == fleetv1.LifecycleState_LIFECYCLE_STATE_UNSPECIFIED {
		return
	}
	a.lcMu.Lock()
	defer a.lcMu.Unlock()
	if a.lcSeq == seq {
		a.o.OnLifecycle(l)
	}
}

// commandLifecycle passes the lifecycle a command puts the node in to
// OnLifecycle.
func (a *Agent) commandLifecycle(l fleetv1.LifecycleState) {
	if a.o.OnLifecycle == nil {
		return
	}
	a.lcMu.Lock()
	defer a.lcMu.Unlock()
	a.lcSeq++
	a.o.OnLifecycle(l)
}

// mustRegister reports whether err means the control plane lost the node.
func mustRegister(err error) bool { return status.Code(err) == codes.NotFound }

// pollLoop reads the GPUs on its own schedule, so NVML never waits on the
// network and the network never waits on NVML.
func (a *Agent) pollLoop(ctx context.Context) {
	t := a.clock.NewTicker(a.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
			a.poll(a.clock.Now())
		}
	}
}

// poll reads every GPU, keeps the reading, and pushes an event for every
// condition that started since the last poll.
func (a *Agent) poll(now time.Time) {
	readings := a.reader.Read(now)
	a.mu.Lock()
	prev := a.latest
	a.latest = readings
	a.mu.Unlock()
	for i := range readings {
		var p *gpu.Reading
		if prev != nil {
			p = &prev[i]
		}
		evs := detect(a.inv.GPUs[i], p, &readings[i])
		for _, e := range evs {
			a.log.Warn("GPU condition", "gpu", i, "kind", e.GetKind(), "detail", e.GetMessage())
		}
		a.buf.push(evs...)
	}
}

// xidLoop pushes every XID the moment NVML reports it.
func (a *Agent) xidLoop(ctx context.Context) {
	xids := make(chan gpu.XIDEvent, 64)
	done := make(chan error, 1)
	go func() {
		done <- a.reader.WatchXIDs(ctx, xids, func(g int, err error) {
			a.log.Warn("GPU cannot report XIDs", "gpu", g, "err", err)
		}, a.clock.Now)
	}()
	for {
		select {
		case err := <-done:
			if err != nil {
				a.log.Error("XID events unavailable; XIDs will not be reported", "err", err)
			}
			return
		case x := <-xids:
			a.log.Warn("XID", "gpu", x.GPU, "xid", x.XID)
			a.buf.push(xidEvent(x))
		}
	}
}

func (a *Agent) samples() []*fleetv1.GpuSample {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*fleetv1.GpuSample, 0, len(a.latest))
	for _, r := range a.latest {
		if r.Lost {
			continue
		}
		m := r.Metrics
		out = append(out, &fleetv1.GpuSample{
			GpuIndex:              m.GetGpuIndex(),
			UtilizationGpuPercent: m.GetUtilizationGpuPercent(),
			TemperatureCelsius:    m.GetTemperatureCelsius(),
			PowerUsageMilliwatts:  m.GetPowerUsageMilliwatts(),
			MemoryUsedBytes:       m.GetMemoryUsedBytes(),
			ProcessCount:          uint32(len(m.GetProcesses())),
		})
	}
	return out
}

func (a *Agent) snapshot() ([]*fleetv1.GpuMetrics, uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*fleetv1.GpuMetrics
	for _, r := range a.latest {
		if !r.Lost {
			out = append(out, r.Metrics)
		}
	}
	return out, uint32(len(out))
}

// heartbeatRetry is about how soon a failed heartbeat is tried again
// (jittered, so a fleet does not knock in step).
const heartbeatRetry = 2 * time.Second

// reconnectSpread spreads the retries a returning control plane wakes, so
// a whole fleet does not call it in the same instant.
const reconnectSpread = time.Second

func (a *Agent) heartbeatLoop(ctx context.Context, reregister context.CancelFunc) {
	hb, _, _ := a.intervals()
	t := a.clock.NewTicker(hb)
	defer t.Stop()
	failing := false
	for {
		seq := a.lifecycleSeq()
		cctx, cancel := context.WithTimeout(ctx, max(hb, 5*time.Second))
		resp, err := a.node.Heartbeat(cctx, &nodev1.HeartbeatRequest{
			NodeId:  a.o.NodeID,
			SentAt:  timestamppb.New(a.clock.Now()),
			Samples: a.samples(),
		})
		cancel()
		switch {
		case err == nil:
			if failing {
				a.log.Info("heartbeats reach the control plane again")
				a.reconnected()
			}
			failing = false
			a.answeredLifecycle(resp.GetLifecycle(), seq)
			if resp.GetPendingCommands() > 0 {
				select {
				case a.hint <- struct{}{}:
				default:
				}
			}
		case mustRegister(err):
			reregister()
			return
		case ctx.Err() != nil:
			return
		case !failing:
			failing = true
			a.log.Warn("heartbeat failed", "err", status.Convert(err).Message())
		}
		// While they fail, heartbeats are tried more often, so the agent
		// learns soon that the control plane is back.
		var retry <-chan time.Time
		var rt clockwork.Timer
		if failing {
			d := min(hb, heartbeatRetry)
			rt = a.clock.NewTimer(d/2 + rand.N(d/2+1))
			retry = rt.Chan()
		}
		select {
		case <-ctx.Done():
		case <-t.Chan():
		case <-retry:
		}
		if rt != nil {
			rt.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// reportLoop sends events as soon as they arrive and a full snapshot every
// report interval. Events leave the buffer only once delivered.
func (a *Agent) reportLoop(ctx context.Context, reregister context.CancelFunc) {
	_, iv, _ := a.intervals()
	t := a.clock.NewTicker(iv)
	defer t.Stop()
	full := true
	// Events matter most right after an outage: retries stay short, and a
	// heartbeat getting through again wakes them at once.
	b := newBackoff(time.Second, 5*time.Second)
	for {
		events := a.buf.peek(256)
		if full || len(events) > 0 {
			req := &nodev1.ReportHealthRequest{NodeId: a.o.NodeID, Events: events, DroppedEvents: a.buf.droppedCount()}
			if full {
				req.Metrics, req.GpuCount = a.snapshot()
			}
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err := a.node.ReportHealth(cctx, req)
			cancel()
			switch {
			case err == nil:
				a.buf.remove(events)
				full = false
				b.reset()
				continue
			case mustRegister(err):
				reregister()
				return
			case ctx.Err() != nil:
				return
			case status.Code(err) == codes.InvalidArgument:
				// The control plane will never take these; keeping them would
				// block every later event.
				a.log.Error("control plane rejected health report; dropping its events", "events", len(events), "err", status.Convert(err).Message())
				a.buf.remove(events)
				full = false
				continue
			}
			wait := b.next()
			a.log.Warn("health report failed; will retry", "events", len(events), "retry_in", wait.Round(time.Millisecond), "err", status.Convert(err).Message())
			if a.retryAfter(ctx, wait) != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-a.buf.ready:
		case <-t.Chan():
			full = true
		}
	}
}

// commandLoop fetches commands and carries each out: with a long poll
// always waiting, or, in heartbeat delivery, whenever a heartbeat says some
// are pending (and once at the start of each session).
func (a *Agent) commandLoop(ctx context.Context, reregister context.CancelFunc) {
	b := newBackoff(time.Second, 30*time.Second)
	fetchNow := true
	for ctx.Err() == nil {
		_, _, wait := a.intervals()
		if !a.longPolls() {
			wait = 0
			if !fetchNow {
				select {
				case <-ctx.Done():
					return
				case <-a.hint:
				}
			}
			fetchNow = false
		}
		cctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
		resp, err := a.node.GetNodeCommands(cctx, &nodev1.GetNodeCommandsRequest{NodeId: a.o.NodeID, Wait: durationpb.New(wait)})
		cancel()
		switch {
		case err == nil:
			b.reset()
			for _, cmd := range resp.GetCommands() {
				a.handle(ctx, cmd)
			}
		case mustRegister(err):
			reregister()
			return
		case ctx.Err() != nil:
			return
		default:
			fetchNow = true
			if a.retryAfter(ctx, b.next()) != nil {
				return
			}
		}
	}
}

// backoff is exponential with full jitter.
type backoff struct {
	base, max, cur time.Duration
}

func newBackoff(base, maxWait time.Duration) *backoff {
	return &backoff{base: base, max: maxWait, cur: base}
}

func (b *backoff) next() time.Duration {
	d := b.cur/2 + rand.N(b.cur/2+1)
	b.cur = min(b.cur*2, b.max)
	return d
}

func (b *backoff) reset() { b.cur = b.base }

// reconnected wakes every retry waiting in retryAfter.
func (a *Agent) reconnected() {
	a.upMu.Lock()
	defer a.upMu.Unlock()
	close(a.up)
	a.up = make(chan struct{})
}

// retryAfter waits d before a retry, or less: until heartbeats get through
// again after failing, and then a moment more, picked at random within
// reconnectSpread.
func (a *Agent) retryAfter(ctx context.Context, d time.Duration) error {
	a.upMu.Lock()
	up := a.up
	a.upMu.Unlock()
	woken, err := wait(ctx, a.clock, d, up)
	if !woken || err != nil {
		return err
	}
	return sleep(ctx, a.clock, rand.N(reconnectSpread))
}

func sleep(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	_, err := wait(ctx, clock, d, nil)
	return err
}

// wait waits d, or until wake is closed (woken), or until ctx ends.
func wait(ctx context.Context, clock clockwork.Clock, d time.Duration, wake <-chan struct{}) (woken bool, err error) {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.Chan():
		return false, nil
	case <-wake:
		return true, nil
	}
}

// Labels parses "k=v" pairs; used by the command line.
func Labels(pairs []string) (map[string]string, error) {
	out := make(map[string]string)
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not KEY=VALUE", p)
		}
		out[k] = v
	}
	return out, nil
}

func unanswered(absent []gpu.Absent) []*nodev1.UnansweredGpu {
	var out []*nodev1.UnansweredGpu
	for _, g := range absent {
		out = append(out, &nodev1.UnansweredGpu{Index: g.Index, Reason: g.Reason})
	}
	return out
}
