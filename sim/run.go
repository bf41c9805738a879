package sim

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Run registers the nodes if needed, then heartbeats, reports and polls
// for commands until ctx ends. Heartbeats and reports are spread evenly
// over their intervals, as a real fleet's are.
func (f *Fleet) Run(ctx context.Context) error {
	if f.nodes[0].term().hbEvery == 0 {
		if err := f.Register(ctx); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		f.spread(ctx, func(n *node) time.Duration { return n.term().hbEvery }, &f.paces[0], f.heartbeatOne)
	}()
	go func() {
		defer wg.Done()
		f.spread(ctx, func(n *node) time.Duration { return n.term().rpEvery }, &f.paces[1], f.reportOne)
	}()
	if f.o.ChaosInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); f.chaos(ctx) }()
	}
	if !f.o.NoCommands {
		for _, n := range f.nodes {
			if n.term().longPoll {
				wg.Add(1)
				go func() { defer wg.Done(); f.commands(ctx, n) }()
			}
		}
	}
	wg.Wait()
	return nil
}

// maxInFlight bounds each kind of call in flight: enough for 10 000
// heartbeats a second answered in 200 ms, so that a busy server is sent
// its calls as a fleet would send them and their wait shows in the
// server's latency, not here; few enough that a server stalled for
// seconds has them queued here, where they wait cheaply, rather than in
// gRPC's transport, where a queue of tens of thousands would outlive the
// calls' deadlines and the server would work on calls whose callers have
// given up. With 256, a server taking 30 ms a heartbeat could be sent
// only 8 500 a second, and the simulator fell ever further behind.
const maxInFlight = 2048

// tick is how often spread sends the calls that came due.
const tick = 10 * time.Millisecond

// pace is one kind of call's schedule: call k (from 0) comes due at
// start + (k+1)·every.
type pace struct {
	start time.Time
	every float64 // nanoseconds from one call's due time to the next
	sent  atomic.Int64
}

// dueBy is how many calls came due by t.
func (p *pace) dueBy(t time.Time) int64 { return int64(float64(t.Sub(p.start)) / p.every) }

// dueAt is when call k came due.
func (p *pace) dueAt(k int64) time.Time {
	return p.start.Add(time.Duration(float64(k+1) * p.every))
}

// behind is how many calls came due more than a tick ago and are not yet
// sent.
func (p *pace) behind() int64 {
	return max(0, p.dueBy(time.Now().Add(-tick))-p.sent.Load())
}

// spread calls fn for every node once per interval, node i at offset
// i/N of the interval, with at most maxInFlight calls in flight. The
// calls due are counted from the time since the start, not per tick, so
// that the rate is exactly N per interval at every fleet size, whatever
// the ticks dropped on a busy machine. fn gets how long its call waited
// here for a slot after it came due, which the call counts in its
// latency: an agent would have waited that long for the answer. A call
// that came due while spread waited for its next tick is timed from the
// tick, whose delay is the simulator's own. The schedule is published in
// slot, for Behind.
func (f *Fleet) spread(ctx context.Context, every func(*node) time.Duration, slot *atomic.Pointer[pace], fn func(ctx context.Context, n *node, waited time.Duration)) {
	interval := every(f.nodes[0])
	if interval <= 0 {
		return
	}
	p := &pace{start: time.Now(), every: float64(interval) / float64(len(f.nodes))}
	slot.Store(p)
	sem := make(chan struct{}, maxInFlight)
	t := time.NewTicker(tick)
	defer t.Stop()
	var sent int64
	// idle is when spread last found every call due sent.
	idle := p.start
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for due := p.dueBy(now); sent < due; sent++ {
			p.sent.Store(sent)
			n := f.nodes[sent%int64(len(f.nodes))]
			if n.stopped.Load() {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			from := now
			if at := p.dueAt(sent); at.Before(idle) {
				from = at
			}
			waited := time.Since(from)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				fn(ctx, n, waited)
			}()
		}
		p.sent.Store(sent)
		idle = time.Now()
	}
}

func (f *Fleet) heartbeatOne(ctx context.Context, n *node, waited time.Duration) {
	now := time.Now()
	req := &nodev1.HeartbeatRequest{NodeId: n.id, SentAt: timestamppb.New(now), Samples: n.samples(now)}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := n.client.Heartbeat(cctx, req)
	if err != nil {
		f.failed(ctx, n, err)
		return
	}
	f.heartbeat.Add(waited + time.Since(start))
	if resp.GetPendingCommands() > 0 && !n.term().longPoll && n.fetching.CompareAndSwap(false, true) {
		go func() {
			defer n.fetching.Store(false)
			f.fetchCommands(ctx, n, 0)
		}()
	}
}

// reportOne sends the node's report: its events and its metrics, a delta
// when the control plane holds the last report, and at once a full
// snapshot when it asks for one.
func (f *Fleet) reportOne(ctx context.Context, n *node, waited time.Duration) {
	now := time.Now()
	n.mu.Lock()
	events := n.pending
	n.pending = nil
	n.mu.Unlock()
	for range 2 {
		req := &nodev1.ReportHealthRequest{NodeId: n.id, Events: events, GpuCount: uint32(len(n.gpus))}
		n.reports.Fill(req, n.metrics(now), now)
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		start := time.Now()
		resp, err := n.client.ReportHealth(cctx, req)
		cancel()
		if err != nil {
			n.mu.Lock()
			n.pending = append(events, n.pending...)
			n.mu.Unlock()
			f.failed(ctx, n, err)
			return
		}
		f.report.Add(waited + time.Since(start))
		n.reports.Answered(req, resp)
		if !resp.GetFullSnapshotWanted() {
			return
		}
		events = nil
		waited = 0
	}
}

func (f *Fleet) failed(ctx context.Context, n *node, err error) {
	if ctx.Err() != nil {
		return
	}
	f.errors.Add(1)
	if status.Code(err) == codes.NotFound && !n.stopped.Load() {
		// The control plane forgot the node (it was removed): register again.
		_ = f.register(ctx, n)
	}
}

// Errors is how many calls failed.
func (f *Fleet) Errors() int64 { return f.errors.Load() }

// Behind is how many heartbeats and health reports came due more than a
// tick ago and are not yet sent, waiting for one of the calls in flight to
// be answered: 0 while the server keeps up.
func (f *Fleet) Behind() int64 {
	var n int64
	for i := range f.paces {
		if p := f.paces[i].Load(); p != nil {
			n += p.behind()
		}
	}
	return n
}
