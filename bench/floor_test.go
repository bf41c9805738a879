package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/api"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/sim"
)

// TestFloorCarriesTheSimulatedLoad: the fleet simulator registers, runs
// and reports against the floor as against the control plane, the floor
// receives every call, and the window's count is the rate the simulator
// was told (50 nodes, a heartbeat and a report every 500 ms each: 400
// calls in 2 s). Each node waits for commands as the floor tells it: one
// stream held for the whole run (opened once, never again), long polls,
// or neither. With --plaintext the floor serves and the simulator dials
// without TLS.
func TestFloorCarriesTheSimulatedLoad(t *testing.T) {
	tests := []struct {
		name      string
		delivery  nodev1.CommandDelivery
		longPolls bool
		streams   bool
		plaintext bool
	}{
		{"stream", nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM, false, true, false},
		{"stream-plaintext", nodev1.CommandDelivery_COMMAND_DELIVERY_STREAM, false, true, true},
		{"long-poll", nodev1.CommandDelivery_COMMAND_DELIVERY_LONG_POLL, true, false, false},
		{"heartbeat", nodev1.CommandDelivery_COMMAND_DELIVERY_HEARTBEAT, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := (&bench{plaintext: tt.plaintext}).markPlaintext(dir); err != nil {
				t.Fatal(err)
			}
			srv, f, err := newFloor(dir, floorOptions{heartbeat: 500 * time.Millisecond, report: 500 * time.Millisecond, pollTimeout: time.Second, delivery: tt.delivery, plaintext: tt.plaintext})
			if err != nil {
				t.Fatal(err)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(srv.Stop)
			const nodes = 50
			o := sim.Options{Server: target(dir, l.Addr().String()), Nodes: nodes, GPUs: 8, Conns: 2}
			if o.Server.Token == "" {
				t.Fatal("the floor wrote no token for the simulator to send")
			}
			if o.Server.Insecure != tt.plaintext || (o.Server.CACert == "") != tt.plaintext {
				t.Fatalf("target = %+v for a floor serving plaintext=%v", o.Server, tt.plaintext)
			}
			var figures floorFigures
			if err := floorLoad(context.Background(), o, os.Getpid(), 2*time.Second, &figures, windowHooks{}); err != nil {
				t.Fatal(err)
			}
			cost := figures.cost
			if got := f.registers.Load(); got != nodes {
				t.Errorf("floor saw %d registrations, want %d", got, nodes)
			}
			if cost.calls < 280 || cost.calls > 440 {
				t.Errorf("window counted %d heartbeats and reports, want about 400", cost.calls)
			}
			if r := cost.rate(); r < 140 || r > 220 {
				t.Errorf("%.0f calls a second over a %s window, want about 200", r, cost.over)
			}
			if answered := f.heartbeats.Load() + f.reports.Load(); answered < cost.calls {
				t.Errorf("floor answered %d heartbeats and reports, fewer than the %d the simulator counted", answered, cost.calls)
			}
			if polls := f.polls.Load(); tt.longPolls != (polls >= nodes) || (!tt.longPolls && polls != 0) {
				t.Errorf("floor saw %d long polls with %s delivery", polls, tt.name)
			}
			wantStreams := int64(0)
			if tt.streams {
				wantStreams = nodes
			}
			if streams := f.streams.Load(); streams != wantStreams {
				t.Errorf("floor saw %d command streams with %s delivery, want %d", streams, tt.name, wantStreams)
			}
			if cost.cpu <= 0 || cost.perCall() != cost.cpu/time.Duration(cost.calls) {
				t.Errorf("CPU %s over %d calls gave %s per call", cost.cpu, cost.calls, cost.perCall())
			}
			if figures.hbP99 <= 0 || figures.rpP99 <= 0 || figures.hbP99 > 2*time.Second || figures.rpP99 > 2*time.Second {
				t.Errorf("floor's tails: heartbeat p99 %s, report p99 %s", figures.hbP99, figures.rpP99)
			}
			if self, _ := rssMiB(os.Getpid()); figures.peakMiB < self/2 || figures.peakMiB > 4*self {
				t.Errorf("peak RSS %.1f MiB for a process now at %.1f MiB", figures.peakMiB, self)
			}
		})
	}
}

// TestOfferedRate: a heartbeat every 10 s and a report every 30 s from
// each node.
func TestOfferedRate(t *testing.T) {
	if got := offeredRate(100000); got < 13333 || got > 13334 {
		t.Errorf("offered %.1f calls a second at 100 000 nodes, want 13 333.3", got)
	}
}

func TestCallCost(t *testing.T) {
	tests := []struct {
		name        string
		cost, floor callCost
		perCall     time.Duration
		times       float64
	}{
		{"navarch-over-floor", callCost{cpu: 576 * time.Millisecond, calls: 10000}, callCost{cpu: 462 * time.Millisecond, calls: 10000}, 57600 * time.Nanosecond, 576.0 / 462},
		{"different-counts", callCost{cpu: time.Second, calls: 1000}, callCost{cpu: time.Second, calls: 2000}, time.Millisecond, 2},
		{"no-calls", callCost{cpu: time.Second}, callCost{cpu: time.Second, calls: 10}, 0, 0},
		{"no-floor", callCost{cpu: time.Second, calls: 10}, callCost{}, 100 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cost.perCall(); got != tt.perCall {
				t.Errorf("perCall = %s, want %s", got, tt.perCall)
			}
			if got := tt.cost.times(tt.floor); got < tt.times-1e-9 || got > tt.times+1e-9 {
				t.Errorf("times = %v, want %v", got, tt.times)
			}
		})
	}
}

// TestFloorTellsWhatItHoldsLive: the floor process, signalled, collects
// and writes its heap and stacks, which readLive returns in MiB; a
// ballast kept live shows in the figure.
func TestFloorTellsWhatItHoldsLive(t *testing.T) {
	dir := t.TempDir()
	stop := serveLive(dir)
	defer stop()
	before, err := readLive(context.Background(), os.Getpid(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ballast := make([]byte, 64<<20)
	for i := range ballast {
		ballast[i] = byte(i)
	}
	after, err := readLive(context.Background(), os.Getpid(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 || after-before < 60 || after-before > 70 {
		t.Errorf("live %.1f MiB before a 64 MiB ballast and %.1f MiB with it", before, after)
	}
	runtime.KeepAlive(ballast)
	if info, err := os.Stat(filepath.Join(dir, liveFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("live file: %v, %v", info, err)
	}
}

// TestTableShowsTheFloor: each row has the control plane's and the
// floor's CPU per call and the multiple; a row without a floor shows a
// dash.
func TestTableShowsTheFloor(t *testing.T) {
	rows := []result{
		{nodes: 1000, cost: callCost{cpu: 576 * time.Millisecond, calls: 10000, over: 100 * time.Second}, floor: floorFigures{
			cost: callCost{cpu: 462 * time.Millisecond, calls: 10000, over: 80 * time.Second}, hbP99: 3100 * time.Microsecond, rpP99: 4200 * time.Microsecond, peakMiB: 61, liveMiB: 23.4,
		}},
		{nodes: 10000, delivery: "long_poll", cost: callCost{cpu: time.Second, calls: 10000}},
	}
	var out bytes.Buffer
	printTable(&out, rows, nil, agentResult{})
	lines := strings.Split(out.String(), "\n")
	find := func(prefix string) string {
		for _, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), prefix) {
				return l
			}
		}
		t.Fatalf("no line starting %q in\n%s", prefix, out.String())
		return ""
	}
	if h := find("nodes"); !strings.Contains(h, "CPU/call (floor)") || !strings.Contains(h, "× floor") ||
		!strings.Contains(h, "floor peak (live)") || !strings.Contains(h, "floor p99 hb/report") || !strings.Contains(h, "calls/s (floor) of offered") {
		t.Errorf("header has no floor columns: %q", h)
	}
	if r := find("1000 "); !strings.Contains(r, "57.6 (46.2) µs") || !strings.Contains(r, "1.25×") || !strings.Contains(r, "stream (default)") ||
		!strings.Contains(r, "61 (23) MiB") || !strings.Contains(r, "100 (125) of 133") || !strings.Contains(r, "3.1 ms / 4.2 ms") {
		t.Errorf("1 000-node row lacks its CPU per call, multiple, the floor's memory or tails, or the default delivery: %q", r)
	}
	if r := find("10000 "); !strings.Contains(r, "100.0 (-) µs") || strings.Contains(r, "×") || !strings.Contains(r, "long_poll") ||
		!strings.Contains(r, "- (-) MiB") || !strings.Contains(r, "(-) of 1333") {
		t.Errorf("a row without a floor should show dashes: %q", r)
	}
}

// TestFloorAnswersAsTheControlPlane: the floor tells nodes the control
// plane's default intervals and command delivery and accepts requests as
// large, so the load on it is the load on the control plane.
func TestFloorAnswersAsTheControlPlane(t *testing.T) {
	d := controlplane.Defaults()
	if floorDelivery != d.CommandDelivery {
		t.Errorf("floor delivers commands by %q by default, the control plane by %q", floorDelivery, d.CommandDelivery)
	}
	if _, ok := floorDeliveries[d.CommandDelivery]; !ok {
		t.Errorf("floor cannot tell nodes the control plane's default delivery %q", d.CommandDelivery)
	}
	if floorHeartbeat != d.HeartbeatInterval.Duration || floorReport != d.HealthReportInterval.Duration || floorPollTimeout != d.CommandPollTimeout.Duration {
		t.Errorf("floor intervals %s/%s/%s, control plane's defaults %s/%s/%s", floorHeartbeat, floorReport, floorPollTimeout,
			d.HeartbeatInterval.Duration, d.HealthReportInterval.Duration, d.CommandPollTimeout.Duration)
	}
	if floorMaxRecv != api.MaxRecvMsgBytes {
		t.Errorf("floor accepts %d bytes, the control plane %d", floorMaxRecv, api.MaxRecvMsgBytes)
	}
}

// TestSuiteRunsTheDefaultDelivery: a row that names no delivery leaves
// command_delivery to the control plane's default; a row that names one
// sets it; an etcd row keeps the default delivery on the etcd store.
func TestSuiteRunsTheDefaultDelivery(t *testing.T) {
	tests := []struct {
		name, delivery, etcd, want string
	}{
		{"default", "", "", controlplane.Defaults().CommandDelivery},
		{"long-poll", "long_poll", "", "long_poll"},
		{"heartbeat", "heartbeat", "", "heartbeat"},
		{"etcd", "", "http://127.0.0.1:2379", controlplane.Defaults().CommandDelivery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b := &bench{}
			body := b.config(dir, "127.0.0.1:7000", tt.delivery, tt.etcd)
			if tt.delivery == "" && strings.Contains(body, "command_delivery") {
				t.Errorf("a default row sets command_delivery:\n%s", body)
			}
			path := filepath.Join(dir, "bench.yaml")
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := controlplane.LoadConfigFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.CommandDelivery != tt.want {
				t.Errorf("command_delivery %q, want %q", cfg.CommandDelivery, tt.want)
			}
			if wantStore := map[bool]string{true: controlplane.StoreEtcd, false: controlplane.StoreBadger}[tt.etcd != ""]; cfg.Store != wantStore {
				t.Errorf("store %q, want %q", cfg.Store, wantStore)
			}
		})
	}
}

// TestProcessWindow: a window on this process counts the CPU it burns
// in the window, its length and its resident memory; close after end
// changes nothing.
func TestProcessWindow(t *testing.T) {
	w, err := startWindow(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		for i := 0; i < 1e5; i++ {
			_ = time.Now()
		}
	}
	cost, peak, err := w.end(30)
	if err != nil {
		t.Fatal(err)
	}
	w.close()
	if cost.over < 300*time.Millisecond || cost.cpu < 100*time.Millisecond || cost.calls != 30 {
		t.Errorf("window of %s counted %s of CPU over %d calls", cost.over, cost.cpu, cost.calls)
	}
	if p := cost.percent(); p < 30 || p > 100*float64(runtime.NumCPU())+10 {
		t.Errorf("%.0f%% of a core while burning one", p)
	}
	if self, _ := rssMiB(os.Getpid()); peak <= 0 || peak > 2*self {
		t.Errorf("peak %.1f MiB for a process at %.1f MiB", peak, self)
	}
}
