// Package demo runs a whole Navarch fleet on one machine: a control plane
// with its Badger store under a demo directory, simulated GPU nodes with
// chaos that injects a fault every few seconds, and the console. Quitting
// the console stops everything the demo started.
package demo

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/internal/logging"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// MaxProcessNodes is the largest demo fleet run as one agent process per
// node; larger fleets run in-process.
const MaxProcessNodes = 24

// MaxNodes is the largest demo fleet.
const MaxNodes = 1000

// Options configures Run.
type Options struct {
	// Nodes is the fleet size; 0 means 12.
	Nodes int
	// GPUs per node; 0 means 8.
	GPUs int
	// Keep resumes the fleet left by the last run instead of starting clean.
	Keep bool
	// DataDir holds the demo's store and logs.
	DataDir string
	// BinDir holds navarch-controlplane and navarch-agent.
	BinDir string
	// FaultEvery is the mean time between faults across the whole fleet.
	FaultEvery time.Duration
	// Log is the level and format of the control plane's log,
	// DATA_DIR/controlplane.log; empty fields mean info and text.
	Log logging.Flags
	// Stdout and Stderr receive the demo's own messages.
	Stdout, Stderr io.Writer
	// Console opens the console on the demo's control plane, with note,
	// the command line that reaches the demo from elsewhere, for its help;
	// nil waits for ctx instead.
	Console func(ctx context.Context, server rpcclient.Target, note string) error
	// InProcess runs n simulated nodes in this process against server, until
	// ctx ends; required for fleets above MaxProcessNodes.
	InProcess func(ctx context.Context, server rpcclient.Target, n, gpus int, faultEvery time.Duration) error
}

// ParseArgs reads the demo's command line into o.
func ParseArgs(args []string, o *Options) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.Nodes, "nodes", 12, "")
	fs.IntVar(&o.GPUs, "gpus", 8, "")
	fs.BoolVar(&o.Keep, "keep", false, "")
	fs.StringVar(&o.DataDir, "data-dir", ".demo", "")
	fs.StringVar(&o.BinDir, "bin", "", "")
	fs.DurationVar(&o.FaultEvery, "fault-every", 5*time.Second, "")
	o.Log.Register(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if _, _, err := o.Log.Parse(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("demo: unexpected argument %q", fs.Arg(0))
	}
	if o.Nodes < 1 || o.Nodes > MaxNodes {
		return fmt.Errorf("demo: --nodes %d is not within 1–%d", o.Nodes, MaxNodes)
	}
	if o.GPUs < 1 || o.GPUs > 64 {
		return fmt.Errorf("demo: --gpus %d is not within 1–64", o.GPUs)
	}
	if o.FaultEvery < 0 {
		return fmt.Errorf("demo: --fault-every %s is negative", o.FaultEvery)
	}
	return nil
}

// earlyFault is the fault one demo node gets at a fixed time, so that an
// automatic cordon shows within the first minute, whatever chaos does.
const earlyFault = "xid=79@gpu%d+40s"

// demoRequests are the provisioning requests of a fresh demo fleet: with
// faults on, every node gets chaos, and one of them also the early fault.
func demoRequests(o Options) []*controlplanev1.ProvisionNodesRequest {
	req := func(count int) *controlplanev1.ProvisionNodesRequest {
		r := &controlplanev1.ProvisionNodesRequest{
			Provider: "local", Count: uint32(count), GpusPerNode: uint32(o.GPUs),
			Labels: map[string]string{"pool": "demo"},
		}
		if o.FaultEvery > 0 {
			r.ChaosInterval = durationpb.New(o.FaultEvery * time.Duration(o.Nodes))
		}
		return r
	}
	if o.FaultEvery <= 0 || o.Nodes < 2 {
		return []*controlplanev1.ProvisionNodesRequest{req(o.Nodes)}
	}
	marked := req(1)
	marked.SimFaults = []string{fmt.Sprintf(earlyFault, min(3, o.GPUs-1))}
	return []*controlplanev1.ProvisionNodesRequest{req(o.Nodes - 1), marked}
}

// Run starts the demo and blocks until the console quits or ctx ends.
func Run(ctx context.Context, o Options) error {
	if o.BinDir == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("demo: find binaries: %w", err)
		}
		o.BinDir = filepath.Dir(self)
	}
	cpBin := filepath.Join(o.BinDir, "navarch-controlplane")
	for _, b := range []string{cpBin, filepath.Join(o.BinDir, "navarch-agent")} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("demo: %s is missing; build with 'go tool task build'", b)
		}
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	storeDir := filepath.Join(dataDir, "store")
	if !o.Keep {
		if err := os.RemoveAll(storeDir); err != nil {
			return fmt.Errorf("demo: clear %s: %w", storeDir, err)
		}
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dataDir, "controlplane.yaml")
	cfg := fmt.Sprintf(`# Written by navarch demo on each run.
listen: %s
metrics_listen: %s
data_dir: %s
log_level: %s
log_format: %s
heartbeat_interval: 2s
health_report_interval: 10s
stale_after: 6s
offline_after: 15s
terminated_retention: 2m
local_provider:
  enabled: true
  max_nodes: %d
  agent_binary: %s
  sim_jobs: true
# A pool the control plane keeps at 2 to 4 nodes of its own: it replaces a
# node that stays UNHEALTHY or silent, and grows and shrinks on load.
pools:
  - name: burst
    providers: [local]
    min: 2
    max: 4
    replace_unhealthy: true
    unhealthy_grace: 2m
    autoscaling:
      utilization: {scale_up_above: 85, scale_down_below: 15, window: 1m, cooldown: 2m}
pool_interval: 5s
# Agents join with a token and call with their own certificate; a fleet
# simulated in the demo's own process shares connections, so it runs
# without (allowed only on loopback).
agent_identities: %t
`, addr, metricsAddr, storeDir, cmp.Or(o.Log.Level, logging.DefaultLevel), cmp.Or(o.Log.Format, logging.DefaultFormat), MaxProcessNodes*4, filepath.Join(o.BinDir, "navarch-agent"), o.Nodes <= MaxProcessNodes || o.Keep)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("demo: write config: %w", err)
	}
	logPath := filepath.Join(dataDir, "controlplane.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer logFile.Close()
	cp := exec.Command(cpBin, "--config", cfgPath)
	cp.Stdout, cp.Stderr = logFile, logFile
	cp.SysProcAttr = childAttr()
	if err := cp.Start(); err != nil {
		return fmt.Errorf("demo: start control plane: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cp.Wait() }()
	defer stop(cp, exited)

	fmt.Fprintf(o.Stdout, "navarch demo: starting the control plane on %s, metrics http://%s/metrics (store %s, log %s)\n", addr, metricsAddr, storeDir, logPath)
	// The control plane creates its CA on first start; the demo's clients
	// and agents trust it.
	target := rpcclient.Target{Addr: addr, CACert: filepath.Join(storeDir, "pki", "ca.crt")}
	if err := waitServing(ctx, target, exited, logPath); err != nil {
		return err
	}
	fmt.Fprintln(o.Stdout, "navarch demo: control plane serving")
	// The demo's console and commands act as the control plane's admin.
	adminToken := filepath.Join(storeDir, "admin.token")
	token, err := os.ReadFile(adminToken)
	if err != nil {
		return fmt.Errorf("demo: read the admin token: %w", err)
	}
	target.Token = strings.TrimSpace(string(token))
	target.Context = "demo"
	conn, err := rpcclient.Dial(target)
	if err != nil {
		return err
	}
	defer conn.Close()
	ops := controlplanev1.NewControlPlaneServiceClient(conn)
	// The console covers the terminal, so the way in from elsewhere also
	// goes to a file that outlives the screen.
	note := connectNote(target, adminToken)
	notePath := filepath.Join(dataDir, ConnectFile)
	if err := os.WriteFile(notePath, []byte(note+"\n"), 0o644); err != nil {
		return fmt.Errorf("demo: write %s: %w", notePath, err)
	}

	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	status, err := ops.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	resumed := false
	switch {
	case o.Keep && status.GetSummary().GetNodes() > 0:
		fmt.Fprintf(o.Stdout, "navarch demo: resuming a fleet of %d nodes; agents from the last run are gone, so expect them OFFLINE\n", status.GetSummary().GetNodes())
		resumed = true
	case o.Nodes <= MaxProcessNodes:
		for _, req := range demoRequests(o) {
			if _, err := ops.ProvisionNodes(ctx, req); err != nil {
				return fmt.Errorf("demo: provision: %w", err)
			}
		}
		fmt.Fprintf(o.Stdout, "navarch demo: provisioned %d nodes × %d GPUs through the local provider\n", o.Nodes, o.GPUs)
	default:
		if o.InProcess == nil {
			return errors.New("demo: this build cannot run an in-process fleet")
		}
		simErr := make(chan error, 1)
		go func() { simErr <- o.InProcess(simCtx, target, o.Nodes, o.GPUs, o.FaultEvery) }()
		defer func() { stopSim(); <-simErr }()
		fmt.Fprintf(o.Stdout, "navarch demo: %d simulated nodes × %d GPUs in this process\n", o.Nodes, o.GPUs)
	}

	if !resumed {
		if err := waitRegistered(ctx, ops, o.Nodes, o.Stdout); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.Stdout, "navarch demo: from another terminal: %s (saved in %s)\n", note, notePath)
	if o.Console != nil {
		fmt.Fprintln(o.Stdout, "navarch demo: opening the console; q quits and stops everything")
		return o.Console(ctx, target, "from another terminal: "+note)
	}
	fmt.Fprintln(o.Stdout, "navarch demo: running without a console; Ctrl-C stops everything")
	select {
	case <-ctx.Done():
		return nil
	case err := <-exited:
		return fmt.Errorf("demo: control plane exited: %v; see %s", err, logPath)
	}
}

// ConnectFile, in the demo's data directory, holds the command line that
// reaches the running demo from another terminal.
const ConnectFile = "connect.txt"

// connectNote is the navarch command line that reaches the demo's control
// plane as its admin.
func connectNote(target rpcclient.Target, tokenPath string) string {
	return fmt.Sprintf("navarch --server %s --ca-cert %s --token \"$(cat %s)\" get nodes", target.Addr, target.CACert, tokenPath)
}

// registerWait bounds how long the demo waits for its agents before it
// opens the console regardless; the console shows the rest arriving.
const registerWait = 30 * time.Second

// waitRegistered reports the fleet's agents registering until want nodes
// are online, for the minute before the console opens on a busy machine.
func waitRegistered(ctx context.Context, ops controlplanev1.ControlPlaneServiceClient, want int, out io.Writer) error {
	deadline := time.Now().Add(registerWait)
	shown := -1
	for {
		// The demo's pool starts nodes of its own, without the label.
		list, err := ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{
			PageSize: 1, LabelSelector: "pool=demo",
			Reachability: []fleetv1.Reachability{fleetv1.Reachability_REACHABILITY_ONLINE},
		})
		if err != nil {
			return fmt.Errorf("demo: wait for the agents: %w", err)
		}
		online := int(list.GetTotalSize())
		if online != shown {
			fmt.Fprintf(out, "navarch demo: agents registered %d/%d\n", online, want)
			shown = online
		}
		if online >= want {
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(out, "navarch demo: %d of %d agents registered within %s; the console shows the rest as they come\n", online, want, registerWait)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo: find a free port: %w", err)
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// waitServing waits until the control plane has written its CA and answers
// its health check over TLS.
func waitServing(ctx context.Context, target rpcclient.Target, exited chan error, logPath string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if serving(ctx, target) {
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("demo: control plane exited at start (%v): %s", err, tail(logPath))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: control plane did not start within 30s: %s", tail(logPath))
		}
	}
}

// stop ends the control plane, which stops the agents it started.
func stop(cp *exec.Cmd, exited chan error) {
	_ = cp.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-cp.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}

// serving reports whether the control plane at target answers its health
// check as SERVING.
func serving(ctx context.Context, target rpcclient.Target) bool {
	if _, err := os.Stat(target.CACert); err != nil {
		return false
	}
	conn, err := rpcclient.Dial(target)
	if err != nil {
		return false
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := grpc_health_v1.NewHealthClient(conn).Check(cctx, &grpc_health_v1.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == grpc_health_v1.HealthCheckResponse_SERVING
}
