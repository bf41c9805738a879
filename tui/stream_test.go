package tui

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// proxy forwards TCP to a backend and can cut every connection, as a
// flaky network would.
type proxy struct {
	lis     net.Listener
	backend string
	mu      sync.Mutex
	conns   []net.Conn
	down    bool
}

func newProxy(t *testing.T, backend string) *proxy {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, backend: backend}
	t.Cleanup(func() { _ = lis.Close(); p.cut() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			p.mu.Unlock()
			if down {
				_ = c.Close()
				continue
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(b, c); _ = b.Close() }()
			go func() { _, _ = io.Copy(c, b); _ = c.Close() }()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.cut()
	}
}

// TestWatcherReconnectsAndResumes: the stream breaks, changes happen while
// the console is away, and on reconnect the console resumes from its
// revision and receives exactly those changes, without a new snapshot.
func TestWatcherReconnectsAndResumes(t *testing.T) {
	cp := cptest.Start(t, cptest.Options{})
	nodeAPI, ops := cp.Nodes, cp.Ops
	ctx := context.Background()
	if _, err := nodeAPI.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}

	p := newProxy(t, cp.Addr)
	target := cp.Target()
	target.Addr = p.lis.Addr().String()
	viaProxy, err := rpcclient.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close()
	m := New(Options{Client: controlplanev1.NewControlPlaneServiceClient(viaProxy), Server: "proxy", Now: clock, Theme: NewTheme(true, false)})
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.watcher.run(wctx)
	next := func(what string, match func(tea.Msg) bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			got := make(chan tea.Msg, 1)
			go func() { got <- m.watcher.listen()() }()
			select {
			case msg := <-got:
				m.Update(msg)
				if match(msg) {
					return
				}
			case <-deadline:
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	next("first connection", func(msg tea.Msg) bool { _, ok := msg.(connectedMsg); return ok })
	next("snapshot", func(tea.Msg) bool { return m.d.fleet.loaded })
	if _, ok := m.d.fleet.rows["n1"]; !ok {
		t.Fatal("snapshot lacks n1")
	}
	before := m.d.fleet.revision

	p.setDown(true)
	next("disconnect", func(msg tea.Msg) bool { _, ok := msg.(disconnectedMsg); return ok })
	if plain := m.Frame(); !contains(plain, "CONNECTION LOST") {
		t.Fatalf("no banner:\n%s", plain)
	}
	// The fleet moves on while the console is away.
	if _, err := ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodeAPI.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "n2"}); err != nil {
		t.Fatal(err)
	}
	p.setDown(false)
	var resumed bool
	next("reconnect", func(msg tea.Msg) bool {
		c, ok := msg.(connectedMsg)
		resumed = c.resumed
		return ok
	})
	if !resumed {
		t.Fatal("reconnected with a snapshot instead of resuming")
	}
	next("the changes made while away", func(tea.Msg) bool {
		r1, r2 := m.d.fleet.rows["n1"], m.d.fleet.rows["n2"]
		return r1 != nil && r1.lifecycle == fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED && r2 != nil
	})
	if m.d.fleet.revision <= before {
		t.Fatalf("revision %d after resuming from %d", m.d.fleet.revision, before)
	}
	if contains(m.Frame(), "CONNECTION LOST") {
		t.Fatal("banner stayed")
	}
}

func contains(frame, s string) bool { return strings.Contains(ansi.Strip(frame), s) }
