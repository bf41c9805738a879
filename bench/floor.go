package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	_ "net/http/pprof" // the floor's --pprof
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/pki"
	"github.com/navarch/navarch/internal/rpcclient"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/sim"
)

// The floor is what the same load costs a gRPC server that does nothing
// but receive it: NodeService with handlers that decode each request and
// answer an empty response. It serves TLS with a certificate from the
// control plane's own CA code and with the transport settings the control
// plane sets, so the two pay the same for the connection, the handshake,
// the framing and the decoding; it has no interceptors, checks no token and
// keeps nothing. The suite runs it as a process of its own, this binary
// started with floorCommand, and reports Navarch's CPU per call as a
// multiple of the floor's.

// floorCommand, as the first argument, makes this binary the floor server
// instead of the suite.
const floorCommand = "floor-server"

// The control plane's defaults (controlplane.Defaults, api.MaxRecvMsgBytes),
// which the floor answers and sets as it does; a test keeps them equal.
const (
	floorHeartbeat   = 10 * time.Second
	floorReport      = 30 * time.Second
	floorPollTimeout = 30 * time.Second
	floorDelivery    = "stream"
	floorMaxRecv     = 4 << 20
)

// floorDeliveries are the command_delivery values the floor can tell
// nodes, as the control plane's configuration spells them.
var floorDeliveries = map[string]nodev1.CommandDelivery{
	"stream":    nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM,
	"long_poll": nodev1.CommandDelivery_COMMAND_DELIVERY_LONG_POLL,
	"heartbeat": nodev1.CommandDelivery_COMMAND_DELIVERY_HEARTBEAT,
}

// floorOptions are what the floor answers a registration with.
type floorOptions struct {
	heartbeat, report, pollTimeout time.Duration
	delivery                       nodev1.CommandDelivery
	plaintext                      bool // serve without TLS
}

// floor is NodeService doing nothing but receiving: each handler has its
// request decoded by gRPC, counts it and answers. The counts are logged
// when it stops, to check the load arrived. It queues no command, so no
// command result ever comes.
type floor struct {
	nodev1.UnimplementedNodeServiceServer
	o                                              floorOptions
	registers, heartbeats, reports, polls, streams atomic.Int64
}

func (f *floor) RegisterNode(context.Context, *nodev1.RegisterNodeRequest) (*nodev1.RegisterNodeResponse, error) {
	f.registers.Add(1)
	return &nodev1.RegisterNodeResponse{
		HeartbeatInterval:    durationpb.New(f.o.heartbeat),
		HealthReportInterval: durationpb.New(f.o.report),
		CommandPollTimeout:   durationpb.New(f.o.pollTimeout),
		CommandDelivery:      f.o.delivery,
	}, nil
}

func (f *floor) Heartbeat(context.Context, *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error) {
	f.heartbeats.Add(1)
	return &nodev1.HeartbeatResponse{}, nil
}

// ReportHealth acknowledges every report's metrics without applying them,
// so that the simulator sends the floor the same deltas it sends the
// control plane.
func (f *floor) ReportHealth(_ context.Context, req *nodev1.ReportHealthRequest) (*nodev1.ReportHealthResponse, error) {
	f.reports.Add(1)
	return &nodev1.ReportHealthResponse{HeldSequence: req.GetSequence()}, nil
}

// GetNodeCommands holds a long poll for its wait, as the control plane
// does when no command comes: answering at once would turn every node's
// poll into a busy loop the control plane never sees.
func (f *floor) GetNodeCommands(ctx context.Context, req *nodev1.GetNodeCommandsRequest) (*nodev1.GetNodeCommandsResponse, error) {
	f.polls.Add(1)
	if wait := min(req.GetWait().AsDuration(), f.o.pollTimeout); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
	return &nodev1.GetNodeCommandsResponse{}, nil
}

// WatchNodeCommands holds the command stream open until the node goes
// away, as the control plane does when no command comes. Its headers go at
// once, as the control plane's do, to tell the node the stream was taken.
func (f *floor) WatchNodeCommands(_ *nodev1.WatchNodeCommandsRequest, stream grpc.ServerStreamingServer[nodev1.WatchNodeCommandsResponse]) error {
	f.streams.Add(1)
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// newFloor prepares the floor's server in dir as the suite lays out a
// control plane's: its CA in dir/store/pki and a token in
// dir/store/admin.token, so that target(dir, addr) dials it as it dials the
// control plane and the simulator sends the same header with every call.
func newFloor(dir string, o floorOptions) (*grpc.Server, *floor, error) {
	ca, err := pki.Open(pki.Options{Dir: filepath.Join(dir, "store", "pki")})
	if err != nil {
		return nil, nil, fmt.Errorf("floor: certificate: %w", err)
	}
	token := make([]byte, 32)
	_, _ = rand.Read(token)
	if err := os.WriteFile(filepath.Join(dir, "store", "admin.token"), []byte(hex.EncodeToString(token)+"\n"), 0o600); err != nil {
		return nil, nil, fmt.Errorf("floor: token: %w", err)
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(floorMaxRecv),
		grpc.MaxConcurrentStreams(100000), // as the suite configures the control plane
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
	}
	if !o.plaintext {
		opts = append(opts, grpc.Creds(credentials.NewTLS(ca.ServerTLS())))
	}
	srv := grpc.NewServer(opts...)
	f := &floor{o: o}
	nodev1.RegisterNodeServiceServer(srv, f)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	return srv, f, nil
}

// floorMain is the floor server's process: it serves until SIGTERM and
// logs what it answered.
func floorMain(args []string) error {
	fs := flag.NewFlagSet(floorCommand, flag.ContinueOnError)
	listen := fs.String("listen", "", "address to serve on")
	dir := fs.String("dir", "", "directory for its CA, certificate and token")
	delivery := fs.String("delivery", floorDelivery, "command_delivery to tell the nodes: stream, long_poll or heartbeat")
	plaintext := fs.Bool("plaintext", false, "serve without TLS")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof on this address, for the suite's --profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *listen == "" || *dir == "" {
		return errors.New("floor: --listen and --dir are required")
	}
	d, ok := floorDeliveries[*delivery]
	if !ok {
		return fmt.Errorf("floor: --delivery %q is not stream, long_poll or heartbeat", *delivery)
	}
	o := floorOptions{heartbeat: floorHeartbeat, report: floorReport, pollTimeout: floorPollTimeout, delivery: d, plaintext: *plaintext}
	srv, f, err := newFloor(*dir, o)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("floor: listen: %w", err)
	}
	if *pprofAddr != "" {
		// net/http/pprof registers its handlers on the default mux.
		pl, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			return fmt.Errorf("floor: pprof: %w", err)
		}
		go func() { _ = http.Serve(pl, nil) }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); srv.Stop() }()
	defer serveLive(*dir)()
	err = srv.Serve(l)
	slog.Info("floor: stopped", "registers", f.registers.Load(), "heartbeats", f.heartbeats.Load(), "reports", f.reports.Load(),
		"polls", f.polls.Load(), "streams", f.streams.Load())
	return err
}

// liveFile is where the floor writes, on SIGUSR1, what it holds live.
const liveFile = "live"

// writeLive collects garbage and writes to dir/live the bytes the floor
// holds live then: its heap and its goroutine stacks, what gRPC itself
// keeps for the load with no collector's headroom.
func writeLive(dir string) error {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	tmp := filepath.Join(dir, liveFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(m.HeapAlloc+m.StackInuse, 10)), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, liveFile))
}

// serveLive answers SIGUSR1 with writeLive(dir) until the returned func
// is called.
func serveLive(dir string) (stop func()) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-usr1:
				if err := writeLive(dir); err != nil {
					slog.Error("floor: live memory", "err", err)
				}
			}
		}
	}()
	return func() { signal.Stop(usr1); close(done) }
}

// readLive asks the floor process pid, serving from dir, for what it
// holds live, in MiB.
func readLive(ctx context.Context, pid int, dir string) (float64, error) {
	path := filepath.Join(dir, liveFile)
	_ = os.Remove(path)
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil {
			n, err := strconv.ParseUint(string(b), 10, 64)
			return float64(n) / (1 << 20), err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, errors.New("floor: no live memory figure within a minute")
}

// floorFigures is what the floor measured: its CPU per call, its
// clients' tail latencies, and its memory, peak resident and live.
type floorFigures struct {
	cost             callCost
	hbP99, rpP99     time.Duration
	peakMiB, liveMiB float64
	behind           int64
}

// callCost is a process's CPU over a measurement window and the node
// calls answered in it: heartbeats and full health reports, which are
// nearly all of a fleet's calls. The command streams or long polls,
// registrations and XID reports in the window are the same for the control
// plane and the floor, so they are in both CPU figures and in neither count.
type callCost struct {
	cpu   time.Duration
	calls int64
	over  time.Duration // the window's length
}

// rate is the calls answered a second over the window; 0 when unknown.
func (c callCost) rate() float64 {
	if c.over <= 0 {
		return 0
	}
	return float64(c.calls) / c.over.Seconds()
}

// windowCalls is what callCost counts of a simulated fleet's calls: its
// heartbeats and health reports answered since its latencies were reset.
func windowCalls(f *sim.Fleet) int64 {
	return f.HeartbeatLatencies().Count() + f.ReportLatencies().Count()
}

// percent is the CPU over the window as a percentage of one core.
func (c callCost) percent() float64 {
	if c.over <= 0 {
		return 0
	}
	return 100 * c.cpu.Seconds() / c.over.Seconds()
}

// perCall is the CPU per node call; 0 when none was answered.
func (c callCost) perCall() time.Duration {
	if c.calls <= 0 {
		return 0
	}
	return c.cpu / time.Duration(c.calls)
}

// times is c's CPU per call as a multiple of floor's; 0 when either is
// unknown.
func (c callCost) times(floor callCost) float64 {
	if c.perCall() <= 0 || floor.perCall() <= 0 {
		return 0
	}
	return float64(c.cpu) / float64(c.calls) / (float64(floor.cpu) / float64(floor.calls))
}

// runFloor starts the floor server as a process of its own and measures
// it under the load runSize puts on the control plane; delivery is the
// command_delivery the control plane was given, "" for its default.
func (b *bench) runFloor(ctx context.Context, n int, delivery, label string) (floorFigures, error) {
	var f floorFigures
	dir, err := os.MkdirTemp("", fmt.Sprintf("navarch-floor-%d-", n))
	if err != nil {
		return f, err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return f, fmt.Errorf("floor: find this binary: %w", err)
	}
	logf, err := os.Create(filepath.Join(dir, "floor.log"))
	if err != nil {
		return f, err
	}
	defer logf.Close()
	addr := freeAddr()
	fmt.Fprintf(os.Stderr, "bench: %d nodes: the same load on the floor server at %s\n", n, addr)
	args := []string{floorCommand, "--listen", addr, "--dir", dir}
	if delivery != "" {
		args = append(args, "--delivery", delivery)
	}
	if b.plaintext {
		args = append(args, "--plaintext")
	}
	var pprofAddr string
	if b.profDir != "" {
		pprofAddr = freeAddr()
		args = append(args, "--pprof", pprofAddr)
	}
	if err := b.markPlaintext(dir); err != nil {
		return f, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return f, fmt.Errorf("floor: start: %w", err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	if err := waitFloor(ctx, dir, addr); err != nil {
		return f, err
	}
	pid := cmd.Process.Pid
	hooks := windowHooks{end: func() (err error) {
		f.liveMiB, err = readLive(ctx, pid, dir)
		return err
	}}
	if pprofAddr != "" {
		// The floor's CPU profile over its window, beside the control
		// plane's.
		hooks.start = func() {
			go b.profileAt(pprofAddr, fmt.Sprintf("cpu-floor-%s.pprof", label), fmt.Sprintf("/debug/pprof/profile?seconds=%d", profileSeconds(b.window)))
		}
	}
	err = floorLoad(ctx, b.simOptions(target(dir, addr), n), pid, b.window, &f, hooks)
	return f, err
}

// waitFloor waits until the floor has written its token, its last file,
// and answers its health check.
func waitFloor(ctx context.Context, dir, addr string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && !exists(filepath.Join(dir, "store", "admin.token")) {
		time.Sleep(5 * time.Millisecond)
	}
	conn, err := rpcclient.Dial(target(dir, addr))
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("floor: not serving within a minute: %w", err)
}

// floorLoad puts on the floor, process pid, the load runSize puts on the
// control plane: the fleet o registered and running, a window that starts
// when every node has reported once and two seconds more (as waitSteady),
// and an XID every 100 ms on a random node through it. It fills f's CPU
// per call, tail latencies and peak memory, and calls the hooks it is
// given.
func floorLoad(ctx context.Context, o sim.Options, pid int, window time.Duration, f *floorFigures, hooks windowHooks) error {
	fleet, err := sim.New(o)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	defer fleet.Close()
	if err := fleet.Register(ctx); err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	runCtx, stopFleet := context.WithCancel(ctx)
	fleetDone := make(chan struct{})
	go func() { _ = fleet.Run(runCtx); close(fleetDone) }()
	defer func() { stopFleet(); <-fleetDone }()
	deadline := time.Now().Add(3 * time.Minute)
	for fleet.ReportLatencies().Count() < int64(o.Nodes) {
		if time.Now().After(deadline) {
			return errors.New("floor: the fleet did not report within 3 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	caughtUp(fleet, fmt.Sprintf("floor, %d nodes", o.Nodes))
	fleet.HeartbeatLatencies().Reset()
	fleet.ReportLatencies().Reset()
	w, err := startWindow(pid)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	defer w.close()
	if hooks.start != nil {
		hooks.start()
	}
	end := time.Now().Add(window)
	for i := 0; time.Now().Before(end); i++ {
		if err := fleet.InjectXID(ctx, mathrand.IntN(o.Nodes), i%max(o.GPUs, 1), uint32(1000+i)); err != nil {
			return fmt.Errorf("floor: XID: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if f.cost, f.peakMiB, err = w.end(windowCalls(fleet)); err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	f.hbP99 = fleet.HeartbeatLatencies().Quantiles(0.99)[0]
	f.rpP99 = fleet.ReportLatencies().Quantiles(0.99)[0]
	f.behind = fleet.Behind()
	if hooks.end != nil {
		return hooks.end()
	}
	return nil
}

// windowHooks are called as floorLoad's window starts and, while the
// fleet still runs, as it ends; either may be nil.
type windowHooks struct {
	start func()
	end   func() error
}
