package sim

import (
	"context"
	"sync"
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
		f.spread(ctx, func(n *node) time.Duration { return n.term().hbEvery }, f.heartbeatOne)
	}()
	go func() {
		defer wg.Done()
		f.spread(ctx, func(n *node) time.Duration { return n.term().rpEvery }, f.reportOne)
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

// spread calls fn for every node once per interval, node i at offset
// i/N of the interval, with a bounded number of calls in flight. The
// calls due are counted from the time since the start, not per tick, so
// that the rate is exactly N per interval at every fleet size, whatever
// the ticks dropped on a busy machine.
func (f *Fleet) spread(ctx context.Context, every func(*node) time.Duration, fn func(context.Context, *node)) {
	interval := every(f.nodes[0])
	if interval <= 0 {
		return
	}
	const tick = 10 * time.Millisecond
	perNode := float64(interval) / float64(len(f.nodes))
	sem := make(chan struct{}, 256)
	t := time.NewTicker(tick)
	defer t.Stop()
	start := time.Now()
	sent := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
		for due := int(float64(now.Sub(start)) / perNode); sent < due; sent++ {
			n := f.nodes[sent%len(f.nodes)]
			if n.stopped.Load() {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				fn(ctx, n)
			}()
		}
	}
}

func (f *Fleet) heartbeatOne(ctx context.Context, n *node) {
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
	f.heartbeat.Add(time.Since(start))
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
func (f *Fleet) reportOne(ctx context.Context, n *node) {
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
		f.report.Add(time.Since(start))
		n.reports.Answered(req, resp)
		if !resp.GetFullSnapshotWanted() {
			return
		}
		events = nil
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
