package tui

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/display"
	"github.com/navarch/navarch/internal/health"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// column is a fleet table column; the table sorts by any of them.
type column int

const (
	colNode column = iota
	colLifecycle
	colHealth
	colReach
	colGPUs
	colUtil
	colHot
	colSeen
	colPool
	colWhy
	colLabels
	numColumns
)

var columnNames = [numColumns]string{"NODE", "LIFECYCLE", "HEALTH", "REACH", "GPUS", "UTIL", "HOT", "SEEN", "POOL", "WHY", "LABELS"}

// row is one node as the fleet table needs it, read from the node's wire
// encoding (decodeRow) and kept up to date as changes arrive, so that
// rendering never digs through protos.
type row struct {
	id        string
	lifecycle fleetv1.LifecycleState
	heldBack  bool // the breaker held back its automatic cordon
	health    fleetv1.HealthStatus
	reach     fleetv1.Reachability
	glyphs    []byte
	badGPUs   int // unhealthy or lost GPUs, for sorting
	util, hot int // -1 when unknown
	lastHB    time.Time
	samples   []*fleetv1.GpuSample // the latest, one a GPU
	pool      string               // the pool that keeps the node; "" for none
	why       why
	labelKV   []string // the labels' keys and values in turn, by key
	labels    string   // as the table shows them
	search    string   // lower-cased id, hostname, pool and labels
}

// label is the value of the node's label k, "" when it has none.
func (r *row) label(k string) string {
	for i := 0; i < len(r.labelKV); i += 2 {
		if r.labelKV[i] == k {
			return r.labelKV[i+1]
		}
	}
	return ""
}

// heartbeat refreshes what heartbeats change.
func (r *row) heartbeat(reach fleetv1.Reachability, at time.Time, samples []*fleetv1.GpuSample) {
	r.reach = reach
	r.lastHB = at
	r.util, r.hot = -1, -1
	if u, ok := display.Utilization(samples); ok {
		r.util = int(u)
	}
	if h, ok := display.Hottest(samples); ok {
		r.hot = int(h)
	}
	r.samples = samples
}

// live reports whether the row's metrics are current: an OFFLINE or
// terminated node's are the last it sent, which the table does not show
// as today's. Reachability decides it, not whether samples exist, so a
// control plane that restarted with or without them shows the same.
func (r *row) live() bool {
	return r.reach != fleetv1.Reachability_REACHABILITY_OFFLINE && r.lifecycle != fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED
}

// liveUtil is the node's utilisation, -1 when unknown or not live.
func (r *row) liveUtil() int {
	if !r.live() {
		return -1
	}
	return r.util
}

// liveHot is the node's hottest GPU, -1 when unknown or not live.
func (r *row) liveHot() int {
	if !r.live() {
		return -1
	}
	return r.hot
}

func compareRows(a, b *row, col column) int {
	var c int
	switch col {
	case colLifecycle:
		c = cmp.Compare(a.lifecycle, b.lifecycle)
	case colHealth:
		// The worst first: the sort is for finding the nodes to act on.
		c = cmp.Compare(health.Rank(b.health), health.Rank(a.health))
	case colReach:
		c = cmp.Compare(a.reach, b.reach)
	case colGPUs:
		c = cmp.Or(cmp.Compare(a.badGPUs, b.badGPUs), cmp.Compare(len(a.glyphs), len(b.glyphs)))
	case colUtil:
		c = cmp.Compare(a.liveUtil(), b.liveUtil())
	case colHot:
		c = cmp.Compare(a.liveHot(), b.liveHot())
	case colSeen:
		c = b.lastHB.Compare(a.lastHB) // older heartbeat = larger age
	case colPool:
		c = strings.Compare(a.pool, b.pool)
	case colWhy:
		// Nodes with a fault first, alike faults together.
		c = compareWhy(a.why, b.why)
	case colLabels:
		c = strings.Compare(a.labels, b.labels)
	}
	return cmp.Or(c, strings.Compare(a.id, b.id))
}

// filter is the parsed fleet filter: words, and label=value terms, all of
// which must match. A word matches a row whose id, hostname, pool or labels
// hold it, or whose lifecycle, health or reachability name begins with it
// (unhealthy, cordon, offline, stale), or, for a word that begins
// "held-back" (held), a node the breaker held back.
type filter struct {
	text   string
	terms  []filterWord
	labels map[string]string
}

// filterWord is one filter word, lower-cased, and the states whose names it
// begins, as bit sets by enum value, worked out once per keystroke rather
// than once per row.
type filterWord struct {
	word                     string
	lifecycle, health, reach uint64
	held                     bool
}

// heldWord is the filter word for the nodes the breaker held back, as the
// LIFECYCLE column shows them; H filters by it.
const heldWord = "held-back"

func parseFilter(s string) filter {
	f := filter{text: s}
	for _, word := range strings.Fields(s) {
		if k, v, ok := strings.Cut(word, "="); ok && k != "" {
			if f.labels == nil {
				f.labels = make(map[string]string)
			}
			f.labels[k] = v
			continue
		}
		w := strings.ToLower(word)
		f.terms = append(f.terms, filterWord{word: w,
			lifecycle: statesBegun(w, fleetv1.LifecycleState_name, "LIFECYCLE_STATE_"),
			health:    statesBegun(w, fleetv1.HealthStatus_name, "HEALTH_STATUS_"),
			reach:     statesBegun(w, fleetv1.Reachability_name, "REACHABILITY_"),
			held:      len(w) >= 3 && strings.HasPrefix(heldWord, w),
		})
	}
	return f
}

// statesBegun is the set of the enum's values whose short name, as the
// table shows it, begins with word. A word of one or two letters names no
// state: while an id is typed, "a" or "on" would keep every ACTIVE or
// ONLINE node.
func statesBegun(word string, names map[int32]string, prefix string) uint64 {
	var set uint64
	if len(word) < 3 {
		return 0
	}
	for v, name := range names {
		name = strings.ToLower(strings.TrimPrefix(name, prefix))
		if v > 0 && v < 64 && strings.HasPrefix(name, word) {
			set |= 1 << v
		}
	}
	return set
}

// has reports whether state v is in set.
func has[E ~int32](set uint64, v E) bool { return v >= 0 && v < 64 && set&(1<<v) != 0 }

func (f *filter) empty() bool { return len(f.terms) == 0 && len(f.labels) == 0 }

func (f *filter) match(r *row) bool {
	for i := range f.terms {
		t := &f.terms[i]
		if !has(t.lifecycle, r.lifecycle) && !has(t.health, r.health) && !has(t.reach, r.reach) && !(t.held && r.heldBack) &&
			!strings.Contains(r.search, t.word) {
			return false
		}
	}
	for k, v := range f.labels {
		if r.label(k) != v {
			return false
		}
	}
	return true
}

// fleet is the console's copy of the fleet, kept by applying WatchFleet
// messages in order.
type fleet struct {
	rows    map[string]*row
	order   []*row // every row, in sort order
	shown   []*row // the rows the filter keeps, in sort order
	index   map[string]int
	sortBy  column
	desc    bool
	filter  filter
	stale   bool // order needs sorting again
	loaded  bool // a complete snapshot has arrived
	partial []*row

	summary  *fleetv1.FleetSummary
	breaker  *fleetv1.BreakerStatus
	revision uint64
	events   []*fleetv1.HealthEvent // newest first
	eventIDs map[string]bool

	pools     map[string]*fleetv1.Pool
	poolNames []string                   // the pools' names, sorted
	members   map[string]map[string]*row // pool name → its nodes' rows, by id
	joins     uint64                     // counts the changes of members
}

// maxEvents is how many fleet-wide events the console keeps: as many as a
// snapshot carries (watch.RecentEventsKept), so a stream resumed with a
// snapshot after a failover loses none the console would have kept.
const maxEvents = 2000

func newFleet() *fleet {
	return &fleet{rows: make(map[string]*row), index: make(map[string]int), eventIDs: make(map[string]bool), sortBy: colNode,
		pools: make(map[string]*fleetv1.Pool), members: make(map[string]map[string]*row)}
}

// change says what applying messages touched, so the console refreshes
// only what it must.
type change struct {
	structure bool            // rows came or went, or sort keys changed
	nodes     map[string]bool // nodes whose rows changed
	events    bool
	commands  []*fleetv1.Command
	resync    bool
	snapshot  bool
	pools     bool // a pool came, changed or went
}

func (c *change) node(id string) {
	if c.nodes == nil {
		c.nodes = make(map[string]bool)
	}
	c.nodes[id] = true
}

// apply folds one stream message into the fleet.
func (f *fleet) apply(msg Message, c *change) {
	m := msg.resp
	// A snapshot's revision counts once its last chunk is in: until then
	// the rows on screen are older than it.
	if (m.GetSnapshot() == nil || m.GetSnapshot().GetComplete()) && m.GetRevision() > f.revision {
		f.revision = m.GetRevision()
	}
	switch {
	case msg.upsert != nil:
		u := msg.upsert
		if r, ok := f.rows[u.id]; ok {
			was := r.pool
			*r = *u
			f.join(r, was)
		} else {
			f.rows[u.id] = u
			f.join(u, "")
		}
		f.stale = true
		c.structure = true
		c.node(u.id)
	case m.GetSnapshot() != nil:
		s := m.GetSnapshot()
		f.partial = append(f.partial, msg.rows...)
		if !s.GetComplete() {
			return
		}
		f.rows = make(map[string]*row, len(f.partial))
		clear(f.members)
		for _, r := range f.partial {
			f.rows[r.id] = r
			f.join(r, "")
		}
		f.partial = nil
		f.setPools(s.GetPools())
		f.summary, f.breaker = s.GetSummary(), s.GetBreaker()
		f.revision = m.GetRevision()
		f.events = f.events[:0]
		clear(f.eventIDs)
		for _, e := range s.GetRecentEvents() {
			f.addEvent(e, false)
		}
		f.loaded = true
		f.stale = true
		c.structure, c.snapshot, c.events, c.pools = true, true, true, true
	case m.GetNodeRemoved() != nil:
		if r, ok := f.rows[m.GetNodeRemoved().GetNodeId()]; ok {
			f.leave(r, r.pool)
		}
		delete(f.rows, m.GetNodeRemoved().GetNodeId())
		f.stale = true
		c.structure = true
		c.node(m.GetNodeRemoved().GetNodeId())
	case m.GetHealthEvent() != nil:
		f.addEvent(m.GetHealthEvent(), true)
		c.events = true
		c.node(m.GetHealthEvent().GetNodeId())
	case m.GetCommand() != nil:
		c.commands = append(c.commands, m.GetCommand())
		c.node(m.GetCommand().GetNodeId())
	case m.GetHeartbeats() != nil:
		for _, hb := range m.GetHeartbeats().GetHeartbeats() {
			if r, ok := f.rows[hb.GetNodeId()]; ok {
				r.heartbeat(hb.GetReachability(), hb.GetLastHeartbeatAt().AsTime(), hb.GetSamples())
				c.node(hb.GetNodeId())
			}
		}
		switch f.sortBy {
		case colUtil, colHot, colSeen, colReach:
			f.stale = true
		}
	case m.GetTotals() != nil:
		f.summary, f.breaker = m.GetTotals().GetSummary(), m.GetTotals().GetBreaker()
	case m.GetPoolUpsert() != nil:
		f.putPool(m.GetPoolUpsert())
		c.pools = true
	case poolRemoved(m):
		f.removePool(m.GetPoolRemoved())
		c.pools = true
	case m.GetResync() != nil:
		f.partial = nil
		c.resync = true
	}
}

func (f *fleet) addEvent(e *fleetv1.HealthEvent, front bool) {
	if e.GetId() != "" {
		if f.eventIDs[e.GetId()] {
			return
		}
		f.eventIDs[e.GetId()] = true
	}
	if front {
		f.events = slices.Insert(f.events, 0, e)
	} else {
		f.events = append(f.events, e)
	}
	if len(f.events) > maxEvents {
		for _, old := range f.events[maxEvents:] {
			delete(f.eventIDs, old.GetId())
		}
		f.events = f.events[:maxEvents]
	}
}

// resort rebuilds the sort order if anything changed it, then refilters.
func (f *fleet) resort() {
	if !f.stale {
		return
	}
	f.order = f.order[:0]
	for _, r := range f.rows {
		f.order = append(f.order, r)
	}
	col, desc := f.sortBy, f.desc
	slices.SortFunc(f.order, func(a, b *row) int {
		c := compareRows(a, b, col)
		if desc {
			return -c
		}
		return c
	})
	f.stale = false
	f.refilter()
}

// refilter rebuilds the shown rows from the sort order.
func (f *fleet) refilter() {
	f.shown = f.shown[:0]
	clear(f.index)
	for _, r := range f.order {
		if f.filter.empty() || f.filter.match(r) {
			f.index[r.id] = len(f.shown)
			f.shown = append(f.shown, r)
		}
	}
}

func (f *fleet) setSort(col column, desc bool) {
	f.sortBy, f.desc = col, desc
	f.stale = true
	f.resort()
}

func (f *fleet) setFilter(s string) {
	f.filter = parseFilter(s)
	f.refilter()
}

// summaryLine is the header's totals.
func (f *fleet) totals() string {
	s := f.summary
	if s == nil {
		return "no totals yet"
	}
	nodes := plural(s.GetNodes()-s.GetTerminated(), "node")
	if k := s.GetTerminated(); k > 0 {
		// Terminated nodes stay listed until their retention ends; they
		// are not part of the fleet's counts.
		nodes += fmt.Sprintf(" (+%d terminated)", k)
	}
	// Stale and offline are apart, as the rows and `get status` say them:
	// a stale node missed heartbeats but has not been given up on.
	return fmt.Sprintf("%s  %s │ %d healthy  %d degraded  %d unhealthy │ %d cordoned  %d draining  %d drained │ %d stale  %d offline",
		nodes, plural(s.GetGpus(), "GPU"), s.GetHealthy(), s.GetDegraded(), s.GetUnhealthy(),
		s.GetCordoned(), s.GetDraining(), s.GetDrained(), s.GetStale(), s.GetOffline())
}
