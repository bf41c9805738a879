package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "navarch-cp-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "navarch-controlplane")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func TestFlagsAndConfigErrors(t *testing.T) {
	rows := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown-flag", []string{"--bogus"}, 2, "bogus"},
		{"stray-argument", []string{"serve"}, 2, `unexpected argument "serve"`},
		{"bad-listen", []string{"--listen", "nowhere", "--data-dir", t.TempDir()}, 2, "listen"},
		{"bad-level", []string{"--log-level", "loud", "--data-dir", t.TempDir()}, 2, `--log-level: "loud" is not debug, info, warn or error`},
		{"bad-format", []string{"--log-format", "xml", "--data-dir", t.TempDir()}, 2, `--log-format: "xml" is not text or json`},
		{"bad-format-key", []string{"--config", writeConfig(t, "log_format: logfmt\n")}, 2, `log_format: "logfmt" is not text or json`},
		{"plaintext-off-loopback", []string{"--insecure", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir()}, 2, "insecure: plaintext is served only on a loopback address"},
		{"missing-config", []string{"--config", "/nonexistent.yaml"}, 2, "read config"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(row.args, &out, &errOut); code != row.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, row.code, errOut.String())
			}
			if !strings.Contains(errOut.String(), row.want) {
				t.Fatalf("stderr %q does not mention %q", errOut.String(), row.want)
			}
		})
	}
	var out bytes.Buffer
	if code := run([]string{"--print-default-policy"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), "fallen off the bus") {
		t.Fatalf("--print-default-policy: %d %q", code, out.String())
	}
}

// controlPlane is the real binary, started on a free port.
type controlPlane struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex // guards logs, written as the process logs
	logs *bytes.Buffer
}

// output is what the control plane has logged so far.
func (cp *controlPlane) output() string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.logs.String()
}

var servingRE = regexp.MustCompile(`msg="control plane serving" listen=(\S+)`)

func startBinary(t *testing.T, args ...string) *controlPlane {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{cmd: cmd, logs: &bytes.Buffer{}}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			cp.mu.Lock()
			cp.logs.WriteString(sc.Text() + "\n")
			cp.mu.Unlock()
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	select {
	case cp.addr = <-found:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("control plane did not start; logs:\n%s", cp.logs.String())
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cp
}

// dial connects over TLS, trusting the CA the control plane created in its
// data directory, as the admin it made there.
func dial(t *testing.T, addr, dataDir string) (nodev1.NodeServiceClient, controlplanev1.ControlPlaneServiceClient) {
	token, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rpcclient.Dial(rpcclient.Target{Addr: addr, CACert: filepath.Join(dataDir, "pki", "ca.crt"), Token: strings.TrimSpace(string(token))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return nodev1.NewNodeServiceClient(conn), controlplanev1.NewControlPlaneServiceClient(conn)
}

// acked records the writes the control plane acknowledged.
type acked struct {
	mu       sync.Mutex
	nodes    []string
	cordoned []string
	events   map[string][]string // node -> event messages
}

// TestKill9LosesNoAcknowledgedWrite runs the real binary, writes to it from
// several clients at once, kills it with SIGKILL mid-write, restarts it on
// the same data directory and checks every acknowledged write.
func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	dir := t.TempDir()
	// The test writes for many nodes from one connection, as the fleet
	// simulator does.
	cfg := filepath.Join(t.TempDir(), "controlplane.yaml")
	if err := os.WriteFile(cfg, []byte("agent_identities: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cp := startBinary(t, "--data-dir", dir, "--config", cfg)
	nodeAPI, _ := dial(t, cp.addr, dir)

	done := &acked{events: map[string][]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	_, ops := dial(t, cp.addr, dir)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-n%04d", w, i)
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := nodeAPI.RegisterNode(cctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-" + id}}})
				if err != nil {
					ccancel()
					return
				}
				done.mu.Lock()
				done.nodes = append(done.nodes, id)
				done.mu.Unlock()
				msg := fmt.Sprintf("event of %s", id)
				_, err = nodeAPI.ReportHealth(cctx, &nodev1.ReportHealthRequest{NodeId: id, Events: []*fleetv1.HealthEvent{
					{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 13, GpuIndex: 0, Message: msg},
				}})
				if err != nil {
					ccancel()
					return
				}
				done.mu.Lock()
				done.events[id] = append(done.events[id], msg)
				done.mu.Unlock()
				_, err = ops.CordonNode(cctx, &controlplanev1.CordonNodeRequest{NodeId: id, Reason: "kill test"})
				ccancel()
				if err != nil {
					return
				}
				done.mu.Lock()
				done.cordoned = append(done.cordoned, id)
				done.mu.Unlock()
			}
		}()
	}
	// Let the writers get going, then kill the process mid-write.
	deadline := time.Now().Add(20 * time.Second)
	for {
		done.mu.Lock()
		n := len(done.cordoned)
		done.mu.Unlock()
		if n >= 100 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := cp.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cp.cmd.Wait()
	cancel()
	wg.Wait()
	if len(done.cordoned) < 20 {
		t.Fatalf("only %d writes acknowledged before the kill", len(done.cordoned))
	}

	cp2 := startBinary(t, "--data-dir", dir, "--config", cfg)
	_, ops2 := dial(t, cp2.addr, dir)
	rctx, rcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer rcancel()
	isCordoned := map[string]bool{}
	for _, id := range done.cordoned {
		isCordoned[id] = true
	}
	for _, id := range done.nodes {
		resp, err := ops2.GetNode(rctx, &controlplanev1.GetNodeRequest{NodeId: id})
		if err != nil {
			t.Fatalf("acknowledged registration of %s lost: %v", id, err)
		}
		if isCordoned[id] && resp.GetNode().GetLifecycle() != fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED {
			t.Fatalf("acknowledged cordon of %s lost: %s", id, resp.GetNode().GetLifecycle())
		}
		for _, msg := range done.events[id] {
			found := false
			for _, e := range resp.GetEvents() {
				found = found || e.GetMessage() == msg
			}
			if !found {
				t.Fatalf("acknowledged event %q lost", msg)
			}
		}
	}
	t.Logf("%d registrations, %d cordons and their events survived SIGKILL", len(done.nodes), len(done.cordoned))
}

// TestSIGTERMShutsDownCleanly: a TERM ends the process with status 0.
func TestSIGTERMShutsDownCleanly(t *testing.T) {
	cp := startBinary(t, "--data-dir", t.TempDir())
	if err := cp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cp.cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, cp.logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop within 15s of SIGTERM")
	}
}

// TestSIGTERMWithTheDataDirectoryGone: a control plane whose data
// directory was deleted under it still stops on SIGTERM, well within a
// service manager's stop timeout, saying what was lost.
func TestSIGTERMWithTheDataDirectoryGone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cp := startBinary(t, "--data-dir", dir, "--insecure")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := cp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- cp.cmd.Wait() }()
	select {
	case <-errc:
		if !strings.Contains(cp.output(), "is gone") {
			t.Fatalf("the logs do not say the data directory is gone:\n%s", cp.output())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGTERM with its data directory gone:\n%s", cp.output())
	}
}

// TestTellsSystemdWhenReady: under systemd (Type=notify) the control plane
// says READY=1 once it serves, and STOPPING=1 on SIGTERM.
func TestTellsSystemdWhenReady(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := exec.Command(binary, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--insecure")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	read := func() string {
		t.Helper()
		buf := make([]byte, 512)
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("systemd heard nothing: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); !strings.HasPrefix(got, "READY=1\n") || !strings.Contains(got, "STATUS=serving on 127.0.0.1:") {
		t.Fatalf("first notification %q, want READY=1 with the address", got)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "STOPPING=1" {
		t.Fatalf("on SIGTERM systemd heard %q, want STOPPING=1", got)
	}
}
