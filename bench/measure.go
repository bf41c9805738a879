package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/watchclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	"github.com/navarch/navarch/sim"
	"github.com/navarch/navarch/tui"
)

// xidWatcher is a console's WatchFleet stream, opened and past its
// snapshot before the window starts, so that the window measures what a
// watching console costs in the steady state and not its first snapshot
// (timed on its own, after the window).
type xidWatcher struct {
	conn   io.Closer
	cancel context.CancelFunc
	mu     sync.Mutex
	sent   map[string]time.Time
	got    []time.Duration
	// snapshotNodes is how many nodes its snapshot held, set before
	// watchXIDs returns.
	snapshotNodes int
}

// watchXIDs opens the watcher and returns once its snapshot is complete.
func watchXIDs(ctx context.Context, t rpcclient.Target) (*xidWatcher, error) {
	conn, err := rpcclient.Dial(t)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	stream, err := controlplanev1.NewControlPlaneServiceClient(conn).WatchFleet(wctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		cancel()
		_ = conn.Close()
		return nil, err
	}
	w := &xidWatcher{conn: conn, cancel: cancel, sent: map[string]time.Time{}}
	ready := make(chan error, 1)
	go func() {
		complete := false
		for {
			m, err := stream.Recv()
			if err != nil {
				if !complete {
					ready <- fmt.Errorf("watch: stream ended before its snapshot: %w", err)
				}
				return
			}
			if !complete {
				w.snapshotNodes += len(m.GetSnapshot().GetNodes())
				if m.GetSnapshot().GetComplete() {
					complete = true
					ready <- nil
				}
			}
			if e := m.GetHealthEvent(); e != nil {
				w.received(fmt.Sprintf("%s/%d", e.GetNodeId(), e.GetXid()), time.Now())
			}
		}
	}()
	if err := <-ready; err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

func (w *xidWatcher) received(key string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t0, ok := w.sent[key]; ok {
		w.got = append(w.got, at.Sub(t0))
		delete(w.sent, key)
	}
}

func (w *xidWatcher) close() {
	w.cancel()
	_ = w.conn.Close()
}

// measure injects XIDs on random nodes, one every 100 ms for the window,
// and times each from the agent's call to the watcher receiving it.
func (w *xidWatcher) measure(ctx context.Context, fleet *sim.Fleet, n int, window time.Duration) ([]time.Duration, error) {
	ids := fleet.NodeIDs()
	deadline := time.Now().Add(window - 2*time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		node := rand.IntN(n)
		xid := uint32(1000 + i)
		w.mu.Lock()
		w.sent[fmt.Sprintf("%s/%d", ids[node], xid)] = time.Now()
		w.mu.Unlock()
		if err := fleet.InjectXID(ctx, node, i%8, xid); err != nil {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(time.Second)
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got), nil
}

// waitSteady waits until every node has reported health and heartbeats.
func waitSteady(ctx context.Context, t rpcclient.Target, n int) error {
	conn, err := rpcclient.Dial(t)
	if err != nil {
		return err
	}
	defer conn.Close()
	ops := controlplanev1.NewControlPlaneServiceClient(conn)
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		st, err := ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
		if err == nil && st.GetSummary().GetHealthUnknown() == 0 && int(st.GetSummary().GetOnline()) == n {
			time.Sleep(2 * time.Second)
			return nil
		}
		time.Sleep(time.Second)
	}
	return errors.New("the fleet did not settle within 3 minutes")
}

// snapshotTime opens a fresh watch and times the complete snapshot.
func snapshotTime(ctx context.Context, t rpcclient.Target) (time.Duration, error) {
	conn, err := rpcclient.Dial(t)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ops := controlplanev1.NewControlPlaneServiceClient(conn)
	if _, err := ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{}); err != nil {
		return 0, err
	}
	began := time.Now()
	// As the console reads it: decoded on several cores.
	stream, err := watchclient.Watch(ctx, ops, &controlplanev1.WatchFleetRequest{}, tui.DecodeMessage)
	if err != nil {
		return 0, err
	}
	defer stream.Close()
	for {
		m, err := stream.Recv()
		if err != nil {
			return 0, err
		}
		if m.SnapshotComplete() {
			return time.Since(began), nil
		}
	}
}

// measureAgent runs the real agent binary on a simulated 8-GPU node at
// default intervals, joined with its own identity as on a real node, and
// measures its CPU and memory.
func (b *bench) measureAgent(ctx context.Context, t rpcclient.Target, d time.Duration) (agentResult, error) {
	conn, err := rpcclient.Dial(t)
	if err != nil {
		return agentResult{}, err
	}
	join, err := controlplanev1.NewControlPlaneServiceClient(conn).CreateToken(ctx, &controlplanev1.CreateTokenRequest{
		Name: "bench-agent", Role: controlplanev1.Role_ROLE_AGENT, Uses: 1,
	})
	_ = conn.Close()
	if err != nil {
		return agentResult{}, fmt.Errorf("join token for the agent: %w", err)
	}
	stateDir, err := os.MkdirTemp("", "navarch-bench-agent")
	if err != nil {
		return agentResult{}, err
	}
	defer os.RemoveAll(stateDir)
	trust := []string{"--ca-cert", t.CACert}
	if t.Insecure {
		trust = []string{"--insecure"}
	}
	cmd := exec.Command(filepath.Join(b.bin, "navarch-agent"), append(trust, "--server", t.Addr, "--state-dir", stateDir,
		"--node-id", "bench-agent", "--simulate", "--gpus", "8", "--log-level", "warn")...)
	cmd.Env = append(os.Environ(), "NAVARCH_JOIN_TOKEN="+join.GetToken())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return agentResult{}, err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	time.Sleep(10 * time.Second)
	pid := cmd.Process.Pid
	c0, err := cpuTime(pid)
	if err != nil {
		return agentResult{}, err
	}
	began := time.Now()
	time.Sleep(d)
	c1, _ := cpuTime(pid)
	rss, _ := rssMiB(pid)
	return agentResult{rssMiB: rss, cpuPercent: 100 * (c1 - c0).Seconds() / time.Since(began).Seconds(), measured: d}, nil
}

func quantiles(d []time.Duration, qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	if len(d) == 0 {
		return out
	}
	s := slices.Clone(d)
	slices.Sort(s)
	for i, q := range qs {
		out[i] = s[min(len(s)-1, int(q*float64(len(s))))]
	}
	return out
}
