package agent

import (
	"context"
	"io"
	"math/rand/v2"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

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

// reportLoop sends events as soon as they arrive and the GPUs' metrics
// every report interval: a full snapshot at the start of a session, when
// the control plane asks for one and every healthdelta.FullEvery, else a
// delta against the last report the control plane acknowledged. Events
// leave the buffer only once delivered.
func (a *Agent) reportLoop(ctx context.Context, reregister context.CancelFunc) {
	_, iv, _ := a.intervals()
	t := a.clock.NewTicker(iv)
	defer t.Stop()
	// A registration may follow a control plane that lost the node: what
	// it acknowledged before is no base.
	a.reports.Forget()
	withMetrics := true
	// sched is set when the scheduler's state changed: it goes out at once.
	sched := false
	// Events matter most right after an outage: retries stay short, and a
	// heartbeat getting through again wakes them at once.
	b := newBackoff(time.Second, 5*time.Second)
	for {
		events := a.buf.peek(256)
		if withMetrics || sched || len(events) > 0 {
			req := &nodev1.ReportHealthRequest{NodeId: a.o.NodeID, Events: events, DroppedEvents: a.buf.droppedCount(), Scheduler: a.schedulerReport()}
			if withMetrics {
				var metrics []*fleetv1.GpuMetrics
				metrics, req.GpuCount = a.snapshot()
				a.reports.Fill(req, metrics, a.clock.Now())
			}
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			resp, err := a.node.ReportHealth(cctx, req)
			cancel()
			switch {
			case err == nil:
				a.buf.remove(events)
				a.reports.Answered(req, resp)
				withMetrics, sched = false, false
				if resp.GetFullSnapshotWanted() && len(req.GetMetricChanges()) > 0 {
					// A delta on a base the control plane no longer holds
					// (a report lost or reordered, or it restarted): the
					// full snapshot goes at once. Asked again after a full
					// one, it waits for the next report, never looping.
					a.log.Debug("control plane asks for a full health snapshot", "held_sequence", resp.GetHeldSequence(), "base_sequence", req.GetBaseSequence())
					withMetrics = true
				}
				b.reset()
				continue
			case mustRegister(err):
				reregister()
				return
			case ctx.Err() != nil:
				return
			case status.Code(err) == codes.InvalidArgument:
				// The control plane will never take these; keeping them would
				// block every later event. The next metrics go whole.
				a.log.Error("control plane rejected health report; dropping its events", "events", len(events), "err", status.Convert(err).Message())
				a.buf.remove(events)
				a.reports.Forget()
				withMetrics, sched = false, false
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
		case <-a.schedulerChanged():
			sched = true
		case <-t.Chan():
			withMetrics = true
		}
	}
}

// commandLoop fetches commands and carries each out: from a command
// stream held open, with a long poll always waiting, or, in heartbeat
// delivery, whenever a heartbeat says some are pending (and once at the
// start of each session).
func (a *Agent) commandLoop(ctx context.Context, reregister context.CancelFunc) {
	b := newBackoff(time.Second, 30*time.Second)
	fetchNow := true
	// A control plane that offers the stream but answers Unimplemented
	// (an older one behind the same address) gets long polls for the rest
	// of the session.
	noStream := false
	for ctx.Err() == nil {
		_, _, wait := a.intervals()
		var err error
		switch {
		case a.streams() && !noStream:
			err = a.watchCommands(ctx, b)
			if status.Code(err) == codes.Unimplemented {
				a.log.Info("the control plane has no command stream; long-polling instead")
				noStream = true
				continue
			}
		case !a.longPolls():
			if !fetchNow {
				select {
				case <-ctx.Done():
					return
				case <-a.hint:
				}
			}
			fetchNow = false
			err = a.fetchCommands(ctx, 0)
		default:
			err = a.fetchCommands(ctx, wait)
		}
		switch {
		case err == nil:
			b.reset()
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

// streams says whether the control plane asked for command streams.
func (a *Agent) streams() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.delivery == nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM
}

// fetchCommands calls GetNodeCommands once, waiting up to wait, and
// carries out what it returns.
func (a *Agent) fetchCommands(ctx context.Context, wait time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
	resp, err := a.node.GetNodeCommands(cctx, &nodev1.GetNodeCommandsRequest{NodeId: a.o.NodeID, Wait: durationpb.New(wait)})
	cancel()
	if err != nil {
		return err
	}
	for _, cmd := range resp.GetCommands() {
		a.handle(ctx, cmd)
	}
	return nil
}

// watchCommands holds the node's command stream open and carries out what
// it sends, until the stream ends; it always returns why. Once the control
// plane has taken the stream (its headers arrive) the backoff starts again
// from its base, so a stream that breaks after a while is opened again
// soon.
func (a *Agent) watchCommands(ctx context.Context, b *backoff) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := a.node.WatchNodeCommands(sctx, &nodev1.WatchNodeCommandsRequest{NodeId: a.o.NodeID})
	if err != nil {
		return err
	}
	// Headers without an error are the control plane taking the stream;
	// none, and the status follows with the first Recv.
	md, err := stream.Header()
	if err != nil {
		return err
	}
	if md != nil {
		b.reset()
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return status.Error(codes.Unavailable, "the control plane ended the command stream")
		}
		if err != nil {
			return err
		}
		for _, cmd := range resp.GetCommands() {
			a.handle(ctx, cmd)
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
