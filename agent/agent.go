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
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/agent/gpu"
	"github.com/navarch/navarch/internal/healthdelta"
	"github.com/navarch/navarch/internal/sdnotify"
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
	// BootID identifies this boot of the node at start; a simulated
	// reboot gives the agent another (see Reboot).
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
	// ResetGPU resets the GPU with NVML index index through the driver's
	// tool and returns what the tool said; nil means this agent cannot
	// reset GPUs, and refuses to.
	ResetGPU func(ctx context.Context, index int) (output string, err error)
	// Reboot reboots the node. A real reboot returns once it has begun,
	// with an empty boot id, and the agent dies with the node; a simulated
	// one returns the new boot's id, and the agent registers again with
	// it at once. Nil means this agent cannot reboot, and refuses to.
	Reboot func(ctx context.Context) (newBootID string, err error)
	// RemediesDisabled makes the agent refuse every GPU reset and reboot;
	// the control plane learns it at registration and asks for none.
	RemediesDisabled bool
	// Rejoin, when set, gets the node a new identity after the control
	// plane refused its certificate (an operator reset it): RegisterNode
	// answered Unauthenticated. When it succeeds the agent registers again
	// at once; when it fails the agent says why once and asks again every
	// rejoinRetry. Nil makes the refusal final.
	Rejoin func(context.Context) error
	// KernelLog opens the node's kernel log, read as /dev/kmsg reads, for
	// the driver's XID lines, which carry the driver's text and the
	// kernel's sequence number. Nil means none is read: XIDs come from
	// NVML alone.
	KernelLog func() (io.ReadCloser, error)
	// KernelBoot is when the boot whose log KernelLog opens began, which
	// the log's timestamps count from; nil means this host's boot.
	KernelBoot func() (time.Time, error)
	// Scheduler, when set, is the workload scheduler beside the agent
	// (Slurm), told of every cordon, drain and uncordon (see Scheduler).
	Scheduler Scheduler
	// SchedulerInterval is how often the scheduler's state is read and
	// brought in line with the node's lifecycle; 0 means 30s.
	SchedulerInterval time.Duration
}

// rejoinRetry is how long a refused agent waits before it asks again, so
// that a node waiting for an operator does not flood the control plane
// (which answers too many failed authentications with ResourceExhausted).
const rejoinRetry = time.Minute

// Agent is one node's agent.
type Agent struct {
	o     Options
	node  nodev1.NodeServiceClient
	clock clockwork.Clock
	log   *slog.Logger
	buf   *eventBuffer
	// reports numbers the health reports and makes their metrics a full
	// snapshot or a delta.
	reports *healthdelta.Sender
	reader  *gpu.Reader
	inv     *gpu.Inventory

	pollMu   sync.Mutex // held for a whole poll
	mu       sync.Mutex
	latest   []gpu.Reading
	heartbIv time.Duration
	reportIv time.Duration
	pollWait time.Duration
	drains   map[string]context.CancelFunc // running drains by command id
	telling  map[string]bool               // commands whose result waits for the scheduler
	handled  map[string]bool               // commands already carried out
	delivery nodev1.CommandDelivery
	hint     chan struct{} // a heartbeat said commands are pending

	upMu sync.Mutex
	up   chan struct{} // closed when heartbeats get through again after failing

	results *resultQueue
	stop    context.CancelFunc
	// life is Run's context: work a command starts that must outlive a
	// session (a re-registration) but not the agent. bg counts that work,
	// which Run waits for.
	life   context.Context
	bg     sync.WaitGroup
	remedy remedyState
	sched  *schedulerState

	// lcMu orders what OnLifecycle learns; lcSeq counts the lifecycle
	// changes the agent's commands made, so that an answer to a request
	// sent before one of them cannot undo it. lifecycle is the node's as
	// the agent knows it, which a reboot checks.
	lcMu      sync.Mutex
	lcSeq     uint64
	lifecycle fleetv1.LifecycleState

	// What the metrics show beside the readings: the XIDs reported, and
	// when a call to the control plane last succeeded (Unix nanoseconds,
	// 0 before the first).
	metrics *prometheus.Registry
	xids    xidTally
	contact atomic.Int64
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
	if o.SchedulerInterval <= 0 {
		o.SchedulerInterval = 30 * time.Second
	}
	if o.Signal == nil {
		o.Signal = func(pid int, sig syscall.Signal) error { return syscall.Kill(pid, sig) }
	}
	a := &Agent{
		o:        o,
		clock:    o.Clock,
		log:      o.Logger.With("node", o.NodeID),
		buf:      newEventBuffer(o.EventBuffer),
		reports:  healthdelta.NewSender(),
		heartbIv: 10 * time.Second,
		reportIv: 30 * time.Second,
		pollWait: 30 * time.Second,
		drains:   make(map[string]context.CancelFunc),
		telling:  make(map[string]bool),
		handled:  make(map[string]bool),
		hint:     make(chan struct{}, 1),
		up:       make(chan struct{}),
		remedy:   remedyState{bootID: o.BootID, running: make(map[string]int)},
		sched:    newSchedulerState(),
	}
	a.node = nodev1.NewNodeServiceClient(contactConn{o.Conn, a.contacted})
	a.results = newResultQueue(a)
	a.metrics = newMetrics(a)
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
	a.mu.Lock() // the metrics read them from a scrape
	a.reader, a.inv = reader, inv
	a.mu.Unlock()
	a.log.Info("GPUs found", "count", len(inv.GPUs), "driver", inv.DriverVersion, "cuda", inv.CUDAVersion, "simulated", a.o.Simulated)
	// Under systemd (Type=notify), `systemctl start` returns once the GPUs
	// are read; reaching the control plane may take longer, and the agent
	// buffers what it sees meanwhile.
	if _, err := sdnotify.Ready(fmt.Sprintf("watching %d GPUs", len(inv.GPUs))); err != nil {
		a.log.Warn("telling systemd the agent is ready", "err", err)
	}
	for _, g := range reader.Absent() {
		// Registered as unanswered: the control plane marks it lost.
		a.log.Warn("GPU did not answer; watching the others", "gpu", g.Index, "err", g.Reason)
	}

	ctx, stop := context.WithCancel(ctx)
	a.stop, a.life = stop, ctx
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
		a.bg.Wait()
	}()
	a.poll(a.clock.Now()) // the first reports carry real metrics
	goLoop := func(fn func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); fn(ctx) }()
	}
	goLoop(a.pollLoop)
	goLoop(a.xidLoop)
	goLoop(a.results.run)
	if a.o.Scheduler != nil {
		goLoop(a.schedulerLoop)
	}

	if a.o.Scheduler != nil {
		// The registration carries what the scheduler shows, unless it
		// does not answer soon.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, _, _ = a.syncScheduler(cctx, "")
		cancel()
	}
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
		NodeId:           a.o.NodeID,
		Hostname:         a.o.Hostname,
		Labels:           a.o.Labels,
		Gpus:             a.inv.GPUs,
		UnansweredGpus:   unanswered(a.reader.Absent()),
		DriverVersion:    a.inv.DriverVersion,
		CudaVersion:      a.inv.CUDAVersion,
		AgentVersion:     a.o.Version,
		Simulated:        a.o.Simulated,
		InstanceId:       a.o.InstanceID,
		BootId:           a.bootID(),
		RemediesDisabled: a.o.RemediesDisabled,
	}
	b := newBackoff(500*time.Millisecond, 30*time.Second)
	refused := false  // said once while the certificate stays refused
	rejoined := false // the last refusal was followed by a successful join
	for attempt := 1; ; attempt++ {
		seq := a.lifecycleSeq()
		req.Scheduler = a.schedulerReport()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := a.node.RegisterNode(cctx, req)
		cancel()
		if err == nil {
			a.log.Info("registered", "lifecycle", resp.GetLifecycle(), "heartbeat", resp.GetHeartbeatInterval().AsDuration())
			a.answeredLifecycle(resp.GetLifecycle(), seq)
			return resp, nil
		}
		if status.Code(err) == codes.Unauthenticated && a.o.Rejoin != nil {
			if rejoined {
				// The certificate just issued is refused too: joining
				// again at once would spend the token's uses in a loop.
				a.log.Warn("the control plane refused the certificate it just issued; waiting before joining again", "err", status.Convert(err).Message(), "retry_in", rejoinRetry)
				if err := sleep(ctx, a.clock, rejoinRetry); err != nil {
					return nil, err
				}
			}
			if rejoined, err = a.rejoin(ctx, &refused); err != nil {
				return nil, err
			}
			continue
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

// rejoin asks Rejoin for a new identity after the control plane refused
// the node's certificate, and says whether it got one. A failure is logged
// once while refused stays set, then at debug level, and is followed by a
// wait of rejoinRetry; it returns an error only when ctx ends.
func (a *Agent) rejoin(ctx context.Context, refused *bool) (bool, error) {
	err := a.o.Rejoin(ctx)
	if err == nil {
		*refused = false
		a.log.Info("joined again after the control plane refused the node certificate")
		return true, nil
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if !*refused {
		*refused = true
		a.log.Error("the control plane refused this node's certificate: its identity was reset, and an operator must give the agent a join token (--join-token or NAVARCH_JOIN_TOKEN) to join again; retrying", "err", err, "retry_every", rejoinRetry)
	} else {
		a.log.Debug("node certificate still refused", "err", err)
	}
	return false, sleep(ctx, a.clock, rejoinRetry)
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
	a.sessionStarted(cancel)
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context, context.CancelFunc){a.heartbeatLoop, a.reportLoop, a.commandLoop} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(sctx, cancel) }()
	}
	wg.Wait()
	if ctx.Err() == nil {
		a.log.Warn("control plane does not know this node, or refused its certificate; registering again")
	}
}

// background runs fn on a goroutine of its own that Run waits for.
func (a *Agent) background(fn func()) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		fn()
	}()
}

// mustRegister reports whether err means the control plane lost the node,
// or no longer takes its certificate: registering again finds out which,
// and joins again if it is the certificate.
func mustRegister(err error) bool {
	switch status.Code(err) {
	case codes.NotFound, codes.Unauthenticated:
		return true
	}
	return false
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
