package etcdtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/navarch/navarch/internal/testutil"
)

// Processes is a cluster whose members each run in a process of their
// own, started from the etcdmember command.
type Processes struct {
	// Endpoints are the members' client URLs, in member order.
	Endpoints []string
	t         testing.TB
	bin       string
	plan      []Member

	mu    sync.Mutex
	procs []*exec.Cmd // nil for a member not running
}

// StartProcesses builds etcdmember, starts a cluster of n members, each a
// process, and waits until every one serves. The test's cleanup stops
// them.
func StartProcesses(t testing.TB, n int) *Processes {
	t.Helper()
	plan, err := plan(t.TempDir(), n, transport.TLSInfo{})
	if err != nil {
		t.Fatal(err)
	}
	c := &Processes{t: t, bin: testutil.BuildBinary(t, "github.com/navarch/navarch/internal/etcdtest/etcdmember"), plan: plan, procs: make([]*exec.Cmd, n)}
	for _, m := range plan {
		c.Endpoints = append(c.Endpoints, m.Client)
	}
	t.Cleanup(c.stopAll)
	ready := make(chan error, n)
	for i := range plan {
		go func() { ready <- c.start(i, false) }()
	}
	for range plan {
		if err := <-ready; err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// start runs member i and waits until it says it serves.
func (c *Processes) start(i int, existing bool) error {
	m := c.plan[i]
	cmd := exec.Command(c.bin, "--name", m.Name, "--dir", m.Dir, "--peer", m.Peer, "--client", m.Client,
		"--initial", m.Initial, "--existing="+strconv.FormatBool(existing))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd member %s: %w", m.Name, err)
	}
	c.mu.Lock()
	c.procs[i] = cmd
	c.mu.Unlock()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if s != "ready\n" {
			return fmt.Errorf("etcd member %s ended before serving", m.Name)
		}
		return nil
	case <-time.After(60 * time.Second):
		return fmt.Errorf("etcd member %s not serving after 60 s", m.Name)
	}
}

// Kill kills member i with SIGKILL, as a machine that fails.
func (c *Processes) Kill(i int) {
	c.t.Helper()
	c.mu.Lock()
	cmd := c.procs[i]
	c.procs[i] = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// Restart starts killed member i again from its data, and waits until it
// serves.
func (c *Processes) Restart(i int) {
	c.t.Helper()
	if err := c.start(i, true); err != nil {
		c.t.Fatal(err)
	}
}

// stopAll stops the members still running, each given a few seconds to
// end by itself.
func (c *Processes) stopAll() {
	c.mu.Lock()
	procs := c.procs
	c.procs = make([]*exec.Cmd, len(procs))
	c.mu.Unlock()
	for _, cmd := range procs {
		if cmd != nil {
			_ = cmd.Process.Signal(os.Interrupt)
		}
	}
	for _, cmd := range procs {
		if cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-done
		}
		cancel()
	}
}
