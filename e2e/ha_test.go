package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/navarch/navarch/internal/etcdtest"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/sim"
	"github.com/navarch/navarch/tui"
)

// haPlane is one navarch-controlplane process of an HA fleet.
type haPlane struct {
	t       *testing.T
	bin     string
	addr    string
	dataDir string
	config  string
	log     *testutil.SyncBuffer

	mu  sync.Mutex
	cmd *exec.Cmd
}

func newHAPlane(t *testing.T, bin string, endpoints []string) *haPlane {
	t.Helper()
	p := &haPlane{t: t, bin: bin, addr: testutil.FreeAddr(t), dataDir: t.TempDir(), log: &testutil.SyncBuffer{}}
	p.config = filepath.Join(p.dataDir, "controlplane.yaml")
	cfg := fmt.Sprintf(`listen: %s
data_dir: %s
store: etcd
agent_identities: false
heartbeat_interval: 500ms
health_report_interval: 1s
stale_after: 3s
offline_after: 20s
etcd:
  endpoints: [%s]
  lease_ttl: 2s
`, p.addr, p.dataDir, strings.Join(endpoints, ", "))
	if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("control plane %s logs:\n%s", p.addr, p.log.String())
		}
	})
	return p
}

func (p *haPlane) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, "--config", p.config, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
}

// kill ends the process with sig (SIGKILL: as a machine that dies) and
// waits for it.
func (p *haPlane) kill(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// shareCA gives p the CA of the plane that started first, as docs/ha.md
// says to.
func (p *haPlane) shareCA(from *haPlane) {
	p.t.Helper()
	if err := os.MkdirAll(filepath.Join(p.dataDir, "pki"), 0o700); err != nil {
		p.t.Fatal(err)
	}
	for _, f := range []string{"ca.crt", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(from.dataDir, "pki", f))
		if err != nil {
			p.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p.dataDir, "pki", f), b, 0o600); err != nil {
			p.t.Fatal(err)
		}
	}
}

// consoleScreen is what the console has drawn, escape codes stripped.
type consoleScreen struct {
	tm  *teatest.TestModel
	buf bytes.Buffer
}

// waitFor waits until the console draws want. The console redraws only
// the cells that change, so a new leader's address may come as its last
// digits alone: every half second the terminal's size moves by a column,
// which has the console draw its whole screen again.
func (s *consoleScreen) waitFor(t *testing.T, what, want string) {
	t.Helper()
	s.buf.Reset()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		b, _ := io.ReadAll(s.tm.Output())
		s.buf.Write(b)
		if strings.Contains(ansi.Strip(s.buf.String()), want) {
			return
		}
		if i%10 == 9 {
			s.buf.Reset()
			s.tm.Send(tea.WindowSizeMsg{Width: 160 + i/10%2, Height: 40})
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: the console did not show %q within 20 s", what, want)
}

// fleetEvents is a watcher that resumes as the console does: from the
// last revision it had, on whichever control plane answers, taking a
// snapshot's recent events when the revision cannot be replayed. It
// records the id of every health event it was told of.
type fleetEvents struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (w *fleetEvents) run(ctx context.Context, ops controlplanev1.ControlPlaneServiceClient) {
	var since uint64
	for ctx.Err() == nil {
		stream, err := ops.WatchFleet(ctx, &controlplanev1.WatchFleetRequest{SinceRevision: since})
		for err == nil {
			var m *controlplanev1.WatchFleetResponse
			if m, err = stream.Recv(); err != nil {
				break
			}
			w.mu.Lock()
			if s := m.GetSnapshot(); s != nil {
				for _, e := range s.GetRecentEvents() {
					w.seen[e.GetId()] = true
				}
				if s.GetComplete() {
					since = m.GetRevision()
				}
			} else if m.GetRevision() > since {
				since = m.GetRevision()
			}
			if e := m.GetHealthEvent(); e != nil {
				w.seen[e.GetId()] = true
			}
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (w *fleetEvents) has(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen[id]
}

// TestLeaderKilledUnderLoad runs three control planes on a three-member
// etcd, with simulated agents reporting XIDs, operator writes, the real
// console and a watcher that resumes as the console does, and kills the
// leader with SIGKILL several times, once with the etcd member beside it:
// each time a standby serves within 10 s and the console names it, every
// acknowledged write is there, the agents carry on with the new leader,
// and the watcher misses no event.
func TestLeaderKilledUnderLoad(t *testing.T) {
	etcd := etcdtest.StartProcesses(t, 3)
	bin := testutil.BuildBinary(t, "github.com/navarch/navarch/cmd/navarch-controlplane")
	planes := make([]*haPlane, 3)
	for i := range planes {
		planes[i] = newHAPlane(t, bin, etcd.Endpoints)
	}
	planes[0].start()
	adminToken := filepath.Join(planes[0].dataDir, "admin.token")
	testutil.EventuallyWithin(t, 30*time.Second, "the first control plane to write its CA and admin token", func() bool {
		_, err := os.Stat(adminToken)
		return err == nil
	})
	for _, p := range planes[1:] {
		p.shareCA(planes[0])
		p.start()
	}
	token, err := os.ReadFile(adminToken)
	if err != nil {
		t.Fatal(err)
	}
	addrs := make([]string, len(planes))
	for i, p := range planes {
		addrs[i] = p.addr
	}
	target := rpcclient.Target{Addr: strings.Join(addrs, ","), CACert: filepath.Join(planes[0].dataDir, "pki", "ca.crt"), Token: strings.TrimSpace(string(token))}
	conn, err := rpcclient.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ops := controlplanev1.NewControlPlaneServiceClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// call runs fn with a context of its own, ended after 5 s.
	call := func(fn func(context.Context) error) error {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return fn(c)
	}
	leader := func() string {
		var l string
		_ = call(func(c context.Context) error {
			st, err := ops.GetFleetStatus(c, &controlplanev1.GetFleetStatusRequest{})
			l = st.GetControlPlanes().GetLeader()
			return err
		})
		return l
	}
	testutil.EventuallyWithin(t, 30*time.Second, "a leader", func() bool { return leader() != "" })

	// The load: simulated agents, XIDs pushed as agents push them, and
	// operator writes. Each kept as acknowledged once its call returned.
	fleet, err := sim.New(sim.Options{Server: rpcclient.Target{Addr: target.Addr, CACert: target.CACert}, Nodes: 50, GPUs: 2, Conns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	testutil.EventuallyWithin(t, 30*time.Second, "the simulated nodes to register", func() bool { return call(fleet.Register) == nil })
	var load sync.WaitGroup
	load.Add(1)
	go func() { defer load.Done(); _ = fleet.Run(ctx) }()
	// The real console, streaming through the same connection: after each
	// failover its header names the new leader.
	console := tui.New(tui.Options{Client: ops, Server: target.Addr, Theme: tui.NewTheme(true, false)})
	t.Cleanup(console.Close)
	tm := teatest.NewTestModel(t, console, teatest.WithInitialTermSize(160, 40))
	screen := &consoleScreen{tm: tm}
	screen.waitFor(t, "the console to show the first leader", "leader "+leader())
	watcher := &fleetEvents{seen: map[string]bool{}}
	load.Add(1)
	go func() { defer load.Done(); watcher.run(ctx, ops) }()
	var ackMu sync.Mutex
	xids := map[string]int{} // acknowledged XIDs by node
	var tokens []string      // acknowledged token names
	// The writes stop before the checks; the agents and the watcher run
	// on until the watcher has caught up.
	writing, stopWrites := context.WithCancel(ctx)
	defer stopWrites()
	var writers sync.WaitGroup
	writers.Add(2)
	go func() {
		defer writers.Done()
		ids := fleet.NodeIDs()
		for i := 0; writing.Err() == nil; i++ {
			n := rand.IntN(len(ids))
			if call(func(c context.Context) error { return fleet.InjectXID(c, n, 0, 13) }) == nil {
				ackMu.Lock()
				xids[ids[n]]++
				ackMu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go func() {
		defer writers.Done()
		for i := 0; writing.Err() == nil; i++ {
			name := fmt.Sprintf("write-%d", i)
			err := call(func(c context.Context) error {
				_, err := ops.CreateToken(c, &controlplanev1.CreateTokenRequest{Name: name, Role: controlplanev1.Role_ROLE_VIEWER})
				return err
			})
			if err == nil {
				ackMu.Lock()
				tokens = append(tokens, name)
				ackMu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	byAddr := func(addr string) int {
		for i, p := range planes {
			if p.addr == addr {
				return i
			}
		}
		t.Fatalf("no control plane at %q", addr)
		return -1
	}
	for round := range 3 {
		time.Sleep(3 * time.Second) // load on the current leader
		was := leader()
		i := byAddr(was)
		withEtcd := round == 1
		planes[i].kill(syscall.SIGKILL)
		if withEtcd {
			etcd.Kill(i)
		}
		killed := time.Now()
		testutil.EventuallyWithin(t, 10*time.Second, fmt.Sprintf("round %d: a standby to serve after %s was killed", round, was), func() bool {
			l := leader()
			return l != "" && l != was
		})
		now := leader()
		t.Logf("round %d: %s killed%s; %s served after %s", round, was, map[bool]string{true: " with its etcd member"}[withEtcd], now, time.Since(killed).Round(10*time.Millisecond))
		screen.waitFor(t, fmt.Sprintf("round %d: the console to name the new leader", round), "leader "+now)
		if withEtcd {
			etcd.Restart(i)
		}
		planes[i].start() // back as a standby
	}
	// The agents carry on with the last leader by themselves: each node
	// is heard from after the last failover.
	lastFailover := time.Now()
	testutil.EventuallyWithin(t, 20*time.Second, "every simulated node to heartbeat to the last leader", func() bool {
		var nodes *controlplanev1.ListNodesResponse
		err := call(func(c context.Context) error {
			var err error
			nodes, err = ops.ListNodes(c, &controlplanev1.ListNodesRequest{PageSize: 1000})
			return err
		})
		if err != nil || len(nodes.GetNodes()) != len(fleet.NodeIDs()) {
			return false
		}
		for _, n := range nodes.GetNodes() {
			if n.GetLastHeartbeatAt().AsTime().Before(lastFailover) {
				return false
			}
		}
		return true
	})
	stopWrites()
	writers.Wait()

	check, stop := context.WithTimeout(context.Background(), 60*time.Second)
	defer stop()
	list, err := ops.ListTokens(check, &controlplanev1.ListTokensRequest{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, tok := range list.GetTokens() {
		have[tok.GetName()] = true
	}
	for _, name := range tokens {
		if !have[name] {
			t.Errorf("acknowledged token %s is gone", name)
		}
	}
	// stored reads every node's XID 13 events: each acknowledged one must
	// be there, and the watcher must have been told of every one stored,
	// acknowledged or not (a call cut off by a kill may still have been
	// kept).
	stored := func() map[string][]string {
		out := map[string][]string{}
		for _, node := range fleet.NodeIDs() {
			evs, err := ops.ListEvents(check, &controlplanev1.ListEventsRequest{NodeId: node, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs.GetEvents() {
				if e.GetKind() == fleetv1.EventKind_EVENT_KIND_XID && e.GetXid() == 13 {
					out[node] = append(out[node], e.GetId())
				}
			}
		}
		return out
	}
	total := 0
	for node, n := range xids {
		if got := len(stored()[node]); got < n {
			t.Errorf("%s: %d XID 13 events stored, %d acknowledged", node, got, n)
		}
		total += n
	}
	var missed []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		missed = missed[:0]
		for _, ids := range stored() {
			for _, id := range ids {
				if !watcher.has(id) {
					missed = append(missed, id)
				}
			}
		}
		if len(missed) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missed) > 0 {
		t.Errorf("the watcher, resuming as the console does, missed %d stored events: %v", len(missed), missed)
	}
	cancel()
	load.Wait()
	t.Logf("%d tokens and %d XIDs acknowledged across 3 failovers; all kept", len(tokens), total)
	if fleet.Errors() == 0 {
		t.Log("the simulated agents saw no error")
	}
}
