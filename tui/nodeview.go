package tui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// nodeViewName is the node view's name; showViewMsg opens it on the node
// its arg names.
const nodeViewName = "node"

// nodeDetailMsg carries a GetNode answer.
type nodeDetailMsg struct {
	id   string
	resp *controlplanev1.GetNodeResponse
	err  error
}

// nodeRefreshMsg asks for a deferred refresh of the open node.
type nodeRefreshMsg struct{ id string }

// refreshEvery bounds how often a busy node is fetched again.
const refreshEvery = time.Second

// historyKept is how many samples a sparkline holds.
const historyKept = 60

// nodeKeys are the node view's keys: the navigation keys scroll.
type nodeKeys struct {
	navKeys
	actionKeys
	remedyKeys
	Back key.Binding
	// ReadOnly holds the keys a read-only console refuses.
	ReadOnly key.Binding
}

func newNodeKeys(readOnly bool) nodeKeys {
	k := nodeKeys{navKeys: newNavKeys(), actionKeys: newActionKeys(), remedyKeys: newRemedyKeys(), Back: backKey()}
	k.ReadOnly = readOnlyGuard(readOnly, append(k.actionKeys.all(), k.remedyKeys.all()...)...)
	return k
}

// nodeView shows one node: its GPUs with sparklines, events with XID
// meaning and remedy, and commands. It fetches the node when opened and
// again whenever the stream says the node changed; heartbeats update the
// GPU table and sparklines directly.
type nodeView struct {
	d         *deps
	keys      nodeKeys
	id        string
	resp      *controlplanev1.GetNodeResponse
	err       string
	loading   bool
	fetchedAt time.Time
	queued    bool
	width     int
	height    int
	scrollPos int // first line shown of what scrolls
	room      int // lines that scroll, from the last render
	maxScroll int // the last page's first line, from the last render
	util      map[uint32][]uint32
	temp      map[uint32][]uint32
	live      map[uint32]*fleetv1.GpuSample
}

func newNodeView(d *deps) view { return &nodeView{d: d, keys: newNodeKeys(d.readOnly())} }

func (v *nodeView) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		return v.onKey(msg)
	case hiddenMsg:
		// Out of sight, the node is not followed.
		v.id = ""
	case fleetChangedMsg:
		return v.onChange(msg.change)
	case nodeDetailMsg:
		v.onDetail(msg)
	case nodeRefreshMsg:
		if msg.id == v.id {
			v.queued = false
			return v.fetch()
		}
	case accessChangedMsg:
		v.keys = newNodeKeys(v.d.readOnly())
	}
	return nil
}

func (v *nodeView) onKey(k tea.KeyPressMsg) tea.Cmd {
	switch {
	case key.Matches(k, v.keys.ReadOnly):
		v.d.refuse()
	case key.Matches(k, v.keys.Back):
		v.d.send(backMsg{})
	case key.Matches(k, v.keys.ResetGPU, v.keys.Reboot):
		return v.remedy(key.Matches(k, v.keys.Reboot))
	case v.scroll(k):
	default:
		cmd, _ := v.keys.actionKeys.run(v.d, k, []string{v.id})
		return cmd
	}
	return nil
}

func (v *nodeView) SetSize(width, height int) { v.width, v.height = width, height }

func (v *nodeView) Hint() string { return "node " + v.id }

func (v *nodeView) ShortHelp() []key.Binding {
	k, g := &v.keys, &v.d.keys
	if v.resp.GetNode().GetCordonHeldBackAt() != nil {
		// The breaker held it back: cordon or release is the question.
		return []key.Binding{k.Back, k.Cordon, k.Release, k.Drain, k.Terminate, k.Diagnose, k.ResetGPU, k.Reboot, k.PowerCycle, g.Help, g.Quit}
	}
	return []key.Binding{k.Back, k.Up, k.Cordon, k.Uncordon, k.Drain, k.Terminate, k.Diagnose, k.ResetGPU, k.Reboot, k.PowerCycle, g.Help, g.Quit}
}

func (v *nodeView) FullHelp() [][]key.Binding {
	k, g := &v.keys, &v.d.keys
	return [][]key.Binding{
		append(k.navKeys.bindings(), k.Back),
		[]key.Binding{g.Command, g.ViewKeys, g.Help, g.Quit},
		{k.Cordon, k.Uncordon, k.Release, k.Drain, k.Terminate, k.Diagnose, k.ResetGPU, k.Reboot, k.PowerCycle, k.Provision},
	}
}

// open shows the node id names, fetching it afresh.
func (v *nodeView) open(id string) tea.Cmd {
	v.id, v.resp, v.err, v.scrollPos, v.maxScroll, v.queued = id, nil, "", 0, 0, false
	v.util, v.temp, v.live = map[uint32][]uint32{}, map[uint32][]uint32{}, map[uint32]*fleetv1.GpuSample{}
	return v.fetch()
}

func (v *nodeView) fetch() tea.Cmd {
	v.loading = true
	v.fetchedAt = v.d.now()
	id, client := v.id, v.d.client
	if client == nil {
		// A console without a control plane (a test) gets its node
		// details some other way.
		return nil
	}
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := client.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: id, EventLimit: 100})
		return nodeDetailMsg{id: id, resp: resp, err: err}
	}
}

func (v *nodeView) onDetail(msg nodeDetailMsg) {
	if msg.id != v.id {
		return
	}
	v.loading = false
	if msg.err != nil {
		v.err = status.Convert(msg.err).Message()
		return
	}
	v.err = ""
	v.resp = msg.resp
	for _, h := range msg.resp.GetHistory() {
		v.util[h.GetGpuIndex()] = h.GetUtilizationGpuPercent()
		v.temp[h.GetGpuIndex()] = h.GetTemperatureCelsius()
	}
}

// onChange refreshes the open node when the stream touched it: heartbeats
// go straight into the GPU table; anything else fetches the node again, at
// most once a second.
func (v *nodeView) onChange(c *change) tea.Cmd {
	if v.id == "" || !c.nodes[v.id] {
		return nil
	}
	if r, ok := v.d.fleet.rows[v.id]; ok {
		for _, s := range r.samples {
			if prev := v.live[s.GetGpuIndex()]; prev != s {
				v.live[s.GetGpuIndex()] = s
				v.util[s.GetGpuIndex()] = appendCapped(v.util[s.GetGpuIndex()], s.GetUtilizationGpuPercent())
				v.temp[s.GetGpuIndex()] = appendCapped(v.temp[s.GetGpuIndex()], s.GetTemperatureCelsius())
			}
		}
	}
	if !c.structure && !c.events && len(c.commands) == 0 {
		return nil
	}
	if v.queued {
		return nil
	}
	if wait := refreshEvery - v.d.now().Sub(v.fetchedAt); wait > 0 {
		v.queued = true
		id := v.id
		return tea.Tick(wait, func(time.Time) tea.Msg { return nodeRefreshMsg{id: id} })
	}
	return v.fetch()
}

func appendCapped(s []uint32, v uint32) []uint32 {
	s = append(s, v)
	if len(s) > historyKept {
		s = s[len(s)-historyKept:]
	}
	return s
}

// scroll moves the first line shown; past the end it stops at the last
// page (as of the last render), so that the way back up starts at once.
func (v *nodeView) scroll(k tea.KeyPressMsg) bool {
	next, ok := v.keys.move(k, v.scrollPos, max(1, v.room-1), v.maxScroll+1)
	if ok {
		v.scrollPos = next
	}
	return ok
}

func (v *nodeView) View() string {
	t := v.d.theme
	width, height := v.width, v.height
	if v.resp == nil {
		switch {
		case v.err != "":
			return t.StatusErr.Render("node " + v.id + ": " + v.err)
		default:
			return t.Muted.Render("loading " + v.id + " …")
		}
	}
	n := v.resp.GetNode()
	lastHB := tsTime(n.GetLastHeartbeatAt())
	samples, sampledAt := n.GetSamples(), lastHB
	if r, ok := v.d.fleet.rows[v.id]; ok {
		// The stream is fresher than the last fetch for these.
		n.Lifecycle, n.Health, n.Reachability = r.lifecycle, r.health, r.reach
		lastHB = r.lastHB
		if r.lastHB.After(sampledAt) {
			samples, sampledAt = r.samples, r.lastHB
		}
	}
	now := v.d.now()
	var lines []string
	title := t.Title.Render(n.GetNodeId()) + "  " +
		t.LifecycleStyle(n.GetLifecycle()).Render(display.Lifecycle(n.GetLifecycle())) + "  " +
		t.HealthStyle(n.GetHealth()).Render(display.Health(n.GetHealth())) + "  " +
		t.ReachStyle(n.GetReachability()).Render(display.Reachability(n.GetReachability())) +
		t.Muted.Render("  heartbeat "+display.Age(lastHB, now)+" ago")
	if v.err != "" {
		title += "  " + t.StatusErr.Render("(refresh failed: "+v.err+")")
	}
	lines = append(lines, title)
	if r := n.GetLifecycleReason(); r != "" {
		who := ""
		if by := display.LifecycleBy(n); by != "" {
			who = " [" + by + "]"
		}
		lines = append(lines, t.Muted.Render("lifecycle: ")+r+who)
	}
	if n.GetHealthCause() != "" {
		lines = append(lines, t.Muted.Render("health: ")+t.HealthStyle(n.GetHealth()).Render(n.GetHealthCause())+
			t.Muted.Render("  → ")+display.Remedy(n.GetRemedy()))
	}
	if n.GetRemediesDisabled() {
		lines = append(lines, t.Muted.Render("remedies: ")+"disabled by the agent (--no-remedies): no GPU reset, no reboot")
	}
	if s := display.Scheduler(n.GetScheduler()); s != "" {
		lines = append(lines, t.Muted.Render("scheduler: ")+s)
	}
	// Processes and metrics are the last report's; an unreachable node's
	// are unknown.
	reachable := n.GetReachability() == fleetv1.Reachability_REACHABILITY_ONLINE || n.GetReachability() == fleetv1.Reachability_REACHABILITY_STALE
	if p := processSummary(n, samples, sampledAt); p != "" && reachable {
		lines = append(lines, t.Muted.Render("processes: ")+p)
	}
	info := fmt.Sprintf("driver %s · CUDA %s · agent %s", display.OrDash(n.GetDriverVersion()), display.OrDash(n.GetCudaVersion()), display.OrDash(n.GetAgentVersion()))
	if n.GetProvider() != "" {
		info += " · " + n.GetProvider() + "/" + n.GetInstanceId()
	}
	if p := n.GetPool(); p != "" {
		info += " · pool " + p
	}
	if l := display.Labels(n.GetLabels()); l != "" {
		info += " · " + l
	}
	if n.GetDroppedEvents() > 0 {
		info += " · " + plural(n.GetDroppedEvents(), "event") + " dropped by the agent"
	}
	lines = append(lines, t.Muted.Render(info))

	// Everything below the title and info lines scrolls: the GPU table,
	// each GPU's faults under its row, then events, then commands, and
	// last which board each GPU is and its clocks, the part looked up
	// rather than read first.
	gpus := v.gpuTable(n, width, reachable, now)
	body := slices.Clone(gpus)
	body = append(body, "", t.Header.Render("EVENTS (newest first)"), t.Muted.Render(truncate(eventHeader(0, width), width)))
	if len(v.resp.GetEvents()) == 0 {
		body = append(body, t.Muted.Render("  no health events"))
	}
	for _, e := range v.resp.GetEvents() {
		body = append(body, eventLine(t, e, now, 0, width))
	}
	body = append(body, "", t.Header.Render("COMMANDS (newest first)"))
	if len(v.resp.GetCommands()) == 0 {
		body = append(body, t.Muted.Render("  no commands"))
	}
	diag := latestDiagnostics(v.resp.GetCommands())
	for _, c := range v.resp.GetCommands() {
		if c != diag {
			body = append(body, commandLine(t, c, now))
			continue
		}
		body = append(body, diagnosticsLines(t, c, now, width)...)
	}
	if details := gpuDetails(t, n, reachable, width); len(details) > 0 {
		body = append(append(body, ""), details...)
	}

	// One line between the pinned lines and the rest says where the
	// scrolled part stands when it does not fit.
	room := max(1, height-len(lines)-1)
	v.room = room
	v.maxScroll = max(0, len(body)-room)
	v.scrollPos = max(0, min(v.scrollPos, v.maxScroll))
	end := min(len(body), v.scrollPos+room)
	window := slices.Clone(body[v.scrollPos:end])
	// While GPU rows are at the top of the window, their column header
	// stays in place of the row that scrolled under it.
	switch last := len(gpus) - 1; {
	case v.scrollPos > 0 && v.scrollPos < last && len(window) > 0:
		window[0] = gpus[0]
	case last > 0 && v.scrollPos == last && len(window) > 1:
		// Only the last GPU is left: it keeps the header, and the blank
		// line after it goes instead.
		window[0], window[1] = gpus[0], gpus[last]
	}
	sep := ""
	if v.maxScroll > 0 {
		var where []string
		if v.scrollPos > 0 {
			where = append(where, fmt.Sprintf("↑ %d more above", v.scrollPos))
		}
		if below := len(body) - end; below > 0 {
			where = append(where, fmt.Sprintf("↓ %d more below", below))
		}
		sep = t.Muted.Render(truncate(strings.Join(where, "  ")+"  (j/k pgup/pgdn g/G)", width))
	}
	lines = append(lines, sep)
	lines = append(lines, window...)
	return strings.Join(lines, "\n")
}
