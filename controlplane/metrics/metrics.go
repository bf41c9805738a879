// Package metrics owns the control plane's Prometheus metrics: the registry
// its /metrics serves; the counters the fleet's hooks feed once a change is
// saved (health events, commands, automatic cordons) and watcher resyncs;
// the latency and failures of the store's durable writes; whether this
// control plane leads and whether it took over the lead; the gauges a
// scrape reads from the fleet's kept totals, with one health series per
// node and none per GPU; gRPC's server metrics, and the calls the
// authentication gate refuses before gRPC's metrics see them; and the
// process and Go runtime collectors.
package metrics

import (
	"strconv"
	"sync/atomic"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/navarch/navarch/controlplane/auth"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// maxXIDLabel is the highest XID code counted under its own label; a code
// above it counts as "other", so that an agent sending made-up codes
// cannot grow the series without bound. NVIDIA's codes are in the low
// hundreds.
const maxXIDLabel = 999

// Metrics is the control plane's registry and the series its parts feed.
type Metrics struct {
	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics
	// fleet is read at each scrape, once ReadFleet is called.
	fleet Fleet
	// nodesSeen is how many nodes the last scrape found.
	nodesSeen atomic.Int64

	events          *prometheus.CounterVec
	commands        *prometheus.CounterVec
	commandDuration *prometheus.HistogramVec
	autoCordons     prometheus.Counter
	resyncs         prometheus.Counter
	writeDuration   prometheus.Histogram
	writeFailures   prometheus.Counter
	authRefused     *prometheus.CounterVec
	failovers       prometheus.Counter
	// election is read at each scrape once ReadElection is called; nil
	// for a lone control plane.
	election Election
}

// Options configures New.
type Options struct {
	// KnownXIDs are the XID codes the fault policy names. Each has its
	// health event series from the start, so that increase() and the
	// alerts see its first event; codes outside them appear with their
	// first event.
	KnownXIDs []uint32
}

// New builds the registry with the process, Go runtime and gRPC collectors
// and the counters, every known label combination at zero; ReadFleet adds
// the fleet's gauges.
func New(o Options) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
		)),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "navarch_health_events_total",
			Help: "Health events recorded, by kind and, for XIDs, code (\"other\" above 999; empty for other kinds).",
		}, []string{"kind", "xid"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "navarch_commands_total",
			Help: "Commands that reached each status, by command type and status; a command handed out again counts once per status, the first time it reaches it.",
		}, []string{"type", "status"}),
		commandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "navarch_command_duration_seconds",
			Help:    "Seconds from a command being queued to its end (succeeded, failed or cancelled), by command type.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200},
		}, []string{"type"}),
		autoCordons: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "navarch_auto_cordons_total",
			Help: "Nodes cordoned automatically by the fault policy.",
		}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "navarch_watch_resyncs_total",
			Help: "WatchFleet watchers that fell behind and were sent a fresh snapshot.",
		}),
		writeDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "navarch_store_write_duration_seconds",
			Help:    "Seconds each durable (synced) store write took, of those that succeeded.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}),
		writeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "navarch_store_write_failures_total",
			Help: "Durable store writes that failed.",
		}),
		authRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "navarch_auth_refused_total",
			Help: "gRPC calls the authentication gate refused as their headers arrived, before gRPC's own metrics see them, by reason.",
		}, []string{"reason"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc, m.events, m.commands, m.commandDuration, m.autoCordons, m.resyncs, m.writeDuration, m.writeFailures,
		m.authRefused,
	)
	// Series that exist from the start, so that rates and alerts see a
	// zero rather than nothing.
	for k, word := range eventKinds {
		if k != fleetv1.EventKind_EVENT_KIND_XID {
			m.events.WithLabelValues(word, "")
		}
	}
	xid := eventKinds[fleetv1.EventKind_EVENT_KIND_XID]
	m.events.WithLabelValues(xid, otherXID)
	for _, code := range o.KnownXIDs {
		m.events.WithLabelValues(xid, xidCodeLabel(code))
	}
	for _, typ := range commandTypes {
		m.commandDuration.WithLabelValues(typ)
		for _, st := range commandStatuses {
			m.commands.WithLabelValues(typ, st)
		}
	}
	for _, r := range auth.Refusals {
		m.authRefused.WithLabelValues(string(r))
	}
	m.newElectionSeries()
	return m
}

// Gatherer is what /metrics serves.
func (m *Metrics) Gatherer() prometheus.Gatherer { return prometheus.GathererFunc(m.gather) }

// Committed counts a saved change's health events and the statuses its
// commands reached for the first time, times the commands it ended, and
// counts an automatic cordon; it is the fleet's Observer.
func (m *Metrics) Committed(events []*fleetv1.HealthEvent, commands []*fleetv1.Command, autoCordoned bool) {
	for _, e := range events {
		m.events.WithLabelValues(eventKindWord(e.GetKind()), xidLabel(e)).Inc()
	}
	for _, c := range commands {
		typ := commandTypeWord(c.GetType())
		m.commands.WithLabelValues(typ, commandStatusWord(c.GetStatus())).Inc()
		if store.Finished(c) && c.GetCreatedAt() != nil && c.GetUpdatedAt() != nil {
			took := c.GetUpdatedAt().AsTime().Sub(c.GetCreatedAt().AsTime())
			m.commandDuration.WithLabelValues(typ).Observe(max(took.Seconds(), 0))
		}
	}
	if autoCordoned {
		m.autoCordons.Inc()
	}
}

// Resynced counts a watcher sent a fresh snapshot after it fell behind.
func (m *Metrics) Resynced() { m.resyncs.Inc() }

// AuthRefused counts a call the gate refused; the server hands it to the
// gate, which refuses before any interceptor, gRPC's metrics included,
// runs.
func (m *Metrics) AuthRefused(r auth.Refusal) { m.authRefused.WithLabelValues(string(r)).Inc() }

// WebhookDrops has navarch_webhook_dropped_total read dropped, the
// webhook events dropped from full queues so far.
func (m *Metrics) WebhookDrops(dropped func() uint64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "navarch_webhook_dropped_total",
		Help: "Webhook events dropped because an endpoint's queue was full (the endpoint was down or slow).",
	}, func() float64 { return float64(dropped()) }))
}

// UnaryServerInterceptor and StreamServerInterceptor count and time every
// gRPC call that reaches the interceptors, by service, method and code: a
// call refused at the tap never does, and is counted by AuthRefused.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return m.grpc.UnaryServerInterceptor()
}

// StreamServerInterceptor: see UnaryServerInterceptor.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return m.grpc.StreamServerInterceptor()
}

// InitializeGRPC puts every method srv serves at zero, so each has series
// before its first call. Call it once the services are registered.
func (m *Metrics) InitializeGRPC(srv *grpc.Server) { m.grpc.InitializeMetrics(srv) }

// otherXID is the xid label of the codes above maxXIDLabel.
const otherXID = "other"

// xidLabel is the xid label of an event: its code for an XID, empty for
// another kind.
func xidLabel(e *fleetv1.HealthEvent) string {
	if e.GetKind() != fleetv1.EventKind_EVENT_KIND_XID {
		return ""
	}
	return xidCodeLabel(e.GetXid())
}

// xidCodeLabel is an XID code's label: the code, or otherXID above
// maxXIDLabel.
func xidCodeLabel(code uint32) string {
	if code > maxXIDLabel {
		return otherXID
	}
	return strconv.FormatUint(uint64(code), 10)
}
