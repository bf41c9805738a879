package tui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

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

// nodeView shows one node: its GPUs with sparklines, events with XID
// meaning and remedy, and commands. It fetches the node when opened and
// again whenever the stream says the node changed; heartbeats update the
// GPU table and sparklines directly.
type nodeView struct {
	d         *deps
	id        string
	resp      *controlplanev1.GetNodeResponse
	err       string
	loading   bool
	fetchedAt time.Time
	queued    bool
	scrollPos int // first line shown of what scrolls
	room      int // lines that scroll, from the last render
	maxScroll int // the last page's first line, from the last render
	util      map[uint32][]uint32
	temp      map[uint32][]uint32
	live      map[uint32]*fleetv1.GpuSample
}

func newNodeView(d *deps) *nodeView { return &nodeView{d: d} }

func (v *nodeView) open(id string, f *fleet) tea.Cmd {
	v.id, v.resp, v.err, v.scrollPos, v.maxScroll, v.queued = id, nil, "", 0, 0, false
	v.util, v.temp, v.live = map[uint32][]uint32{}, map[uint32][]uint32{}, map[uint32]*fleetv1.GpuSample{}
	return v.fetch()
}

func (v *nodeView) close() { v.id = "" }

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

func (v *nodeView) update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case nodeDetailMsg:
		if msg.id != v.id {
			return nil
		}
		v.loading = false
		if msg.err != nil {
			v.err = status.Convert(msg.err).Message()
			return nil
		}
		v.err = ""
		v.resp = msg.resp
		for _, h := range msg.resp.GetHistory() {
			v.util[h.GetGpuIndex()] = h.GetUtilizationGpuPercent()
			v.temp[h.GetGpuIndex()] = h.GetTemperatureCelsius()
		}
	case nodeRefreshMsg:
		if msg.id == v.id {
			v.queued = false
			return v.fetch()
		}
	}
	return nil
}

// onChange refreshes the open node when the stream touched it: heartbeats
// go straight into the GPU table; anything else fetches the node again, at
// most once a second.
func (v *nodeView) onChange(c *change, f *fleet) tea.Cmd {
	if v.id == "" || !c.nodes[v.id] {
		return nil
	}
	if r, ok := f.rows[v.id]; ok {
		for _, s := range r.node.GetSamples() {
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

func (v *nodeView) scroll(k tea.KeyPressMsg) bool {
	keys := &v.d.keys
	page := max(1, v.room-1)
	switch {
	case key.Matches(k, keys.Down):
		v.scrollPos++
	case key.Matches(k, keys.Up):
		v.scrollPos = max(0, v.scrollPos-1)
	case key.Matches(k, keys.PageDown):
		v.scrollPos += page
	case key.Matches(k, keys.PageUp):
		v.scrollPos = max(0, v.scrollPos-page)
	case key.Matches(k, keys.Top):
		v.scrollPos = 0
	case key.Matches(k, keys.Bottom):
		v.scrollPos = v.maxScroll
	default:
		return false
	}
	// Past the end it stops at the last page (as of the last render), so
	// that the way back up starts at once.
	v.scrollPos = min(v.scrollPos, v.maxScroll)
	return true
}

func (v *nodeView) view(width, height int, f *fleet) string {
	t := v.d.theme
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
	if r, ok := f.rows[v.id]; ok {
		// The stream is fresher than the last fetch for these.
		n.Lifecycle, n.Health, n.Reachability = r.lifecycle, r.health, r.reach
		lastHB = r.lastHB
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
		if n.GetCordonedByPolicy() {
			who = " [policy]"
		}
		lines = append(lines, t.Muted.Render("lifecycle: ")+r+who)
	}
	if n.GetHealthCause() != "" {
		lines = append(lines, t.Muted.Render("health: ")+t.HealthStyle(n.GetHealth()).Render(n.GetHealthCause())+
			t.Muted.Render("  → ")+display.Remedy(n.GetRemedy()))
	}
	// Processes and metrics are the last report's; an unreachable node's
	// are unknown.
	reachable := n.GetReachability() == fleetv1.Reachability_REACHABILITY_ONLINE || n.GetReachability() == fleetv1.Reachability_REACHABILITY_STALE
	if p := processSummary(n); p != "" && reachable {
		lines = append(lines, t.Muted.Render("processes: ")+p)
	}
	info := fmt.Sprintf("driver %s · CUDA %s · agent %s", dash(n.GetDriverVersion()), dash(n.GetCudaVersion()), dash(n.GetAgentVersion()))
	if n.GetProvider() != "" {
		info += " · " + n.GetProvider() + "/" + n.GetInstanceId()
	}
	if l := display.Labels(n.GetLabels()); l != "" {
		info += " · " + l
	}
	if n.GetDroppedEvents() > 0 {
		info += fmt.Sprintf(" · %d events dropped by the agent", n.GetDroppedEvents())
	}
	lines = append(lines, t.Muted.Render(info))

	// Everything below the title and info lines scrolls: the GPU table,
	// then events, then commands.
	gpus := v.gpuTable(n, width, reachable)
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

// gpuTable is the GPU table's column header, then one row per GPU. A
// metric that is missing, or that an unreachable node last reported,
// shows as -: a zero would read as a measurement.
func (v *nodeView) gpuTable(n *fleetv1.Node, width int, reachable bool) []string {
	t := v.d.theme
	spark := 0
	if width >= 100 {
		spark = min(30, (width-70)/2)
	} else if width >= 80 {
		spark = 10
	}
	head := "GPU  H  UTIL  TEMP  POWER  MEMORY       "
	if spark > 0 {
		head += padRight("UTIL", spark) + " " + padRight("TEMP", spark) + " "
	}
	head += "CAUSE"
	lines := []string{t.Header.Render(truncate(head, width))}
	samples := map[uint32]*fleetv1.GpuSample{}
	for _, s := range n.GetSamples() {
		samples[s.GetGpuIndex()] = s
	}
	for _, g := range n.GetGpus() {
		idx := g.GetIndex()
		util, temp, power, mem := "-", "-", "-", "-"
		var s interface {
			GetUtilizationGpuPercent() uint32
			GetTemperatureCelsius() uint32
			GetPowerUsageMilliwatts() uint32
			GetMemoryUsedBytes() uint64
		}
		switch {
		case !reachable:
		case v.live[idx] != nil:
			s = v.live[idx]
		case g.GetMetrics() != nil:
			s = g.GetMetrics()
		case samples[idx] != nil:
			s = samples[idx]
		}
		if s != nil {
			util = fmt.Sprintf("%d%%", s.GetUtilizationGpuPercent())
			temp = fmt.Sprintf("%d°", s.GetTemperatureCelsius())
			power = fmt.Sprintf("%dW", s.GetPowerUsageMilliwatts()/1000)
			mem = fmt.Sprintf("%.0f", float64(s.GetMemoryUsedBytes())/(1<<30))
		}
		if total := g.GetMemoryTotalBytes(); total > 0 {
			mem += fmt.Sprintf("/%.0fG", float64(total)/(1<<30))
		}
		glyph := gpuGlyph(g.GetHealth(), g.GetLost())
		line := fmt.Sprintf("%-4d %s  %s %s %s  %-12s ", idx, t.GlyphStyle(glyph).Render(string(glyph)),
			padLeft(util, 5), padLeft(temp, 5), padLeft(power, 6), mem)
		if g.GetLost() {
			line = fmt.Sprintf("%-4d %s  %s ", idx, t.GlyphStyle(glyph).Render("X"), t.Off.Render(padRight("lost", 32)))
		}
		switch {
		case spark > 0 && g.GetLost():
			// Its history is gone with it; another GPU may have its index.
			line += strings.Repeat(" ", 2*spark+2)
		case spark > 0:
			line += t.Accent.Render(sparkline(v.util[idx], 100, spark)) + " " + t.Warn.Render(sparkline(v.temp[idx], 100, spark)) + " "
		}
		cause := "-"
		if g.GetHealthCause() != "" {
			cause = t.HealthStyle(g.GetHealth()).Render(g.GetHealthCause()) + t.Muted.Render(" → "+display.Remedy(g.GetRemedy()))
		}
		lines = append(lines, truncate(line+cause, width))
	}
	return lines
}

// processSummary says which GPU compute processes the node's last health
// report listed, the ones a drain waits for: "3 on gpu0, gpu2: pids 4121
// (python), 4122, 4290".
func processSummary(n *fleetv1.Node) string {
	var gpus, pids []string
	seen := map[uint32]bool{}
	for _, g := range n.GetGpus() {
		procs := g.GetMetrics().GetProcesses()
		if len(procs) == 0 {
			continue
		}
		gpus = append(gpus, display.GPU(int32(g.GetIndex())))
		for _, p := range procs {
			if seen[p.GetPid()] {
				continue
			}
			seen[p.GetPid()] = true
			s := fmt.Sprint(p.GetPid())
			if p.GetName() != "" {
				s += " (" + p.GetName() + ")"
			}
			pids = append(pids, s)
		}
	}
	if len(pids) == 0 {
		return ""
	}
	return fmt.Sprintf("%d on %s: pids %s", len(pids), strings.Join(gpus, ", "), strings.Join(pids, ", "))
}

// eventLine renders one event; nodeWidth 0 leaves the node out. The
// remedy has its own column so that a long cause never hides it.
func eventLine(t *Theme, e *fleetv1.HealthEvent, now time.Time, nodeWidth, width int) string {
	parts := padLeft(display.Age(tsTime(e.GetTime()), now), 4) + "  "
	if nodeWidth > 0 {
		parts += padRight(e.GetNodeId(), nodeWidth) + " "
	}
	parts += padRight(display.GPU(e.GetGpuIndex()), 5) + " " + padRight(display.EventKind(e), kindWidth) + " "
	remedy, remedyW := "", remedyColumn(width)
	if e.GetRemedy() != fleetv1.Remedy_REMEDY_NONE {
		remedy = display.Remedy(e.GetRemedy())
		if remedyW < remedyWidth {
			remedy = display.ShortRemedy(e.GetRemedy())
		}
	}
	line := parts + t.HealthStyle(e.GetHealth()).Render(padRight(display.Health(e.GetHealth()), 9)) + " " +
		t.Accent.Render(padRight(remedy, remedyW)) + "  " + e.GetCause()
	if e.GetEscalated() {
		line += t.Bad.Render(" [escalated]")
	}
	return truncate(line, width)
}

// kindWidth fits every event kind but the longest, "retired-pages-pending".
const kindWidth = 18

// remedyWidth fits the longest remedy, "restart the application".
const remedyWidth = 23

// remedyColumn is the remedy column's width: narrow terminals get the
// short remedy names, so the cause keeps some room.
func remedyColumn(width int) int {
	if width < 120 {
		return display.ShortRemedyWidth
	}
	return remedyWidth
}

// eventHeader is the column header matching eventLine.
func eventHeader(nodeWidth, width int) string {
	h := " AGE  "
	if nodeWidth > 0 {
		h += padRight("NODE", nodeWidth) + " "
	}
	return h + "GPU   " + padRight("KIND", kindWidth) + " HEALTH    " + padRight("REMEDY", remedyColumn(width)) + "  CAUSE"
}

func commandLine(t *Theme, c *fleetv1.Command, now time.Time) string {
	st := display.CommandStatus(c.GetStatus())
	style := t.Muted
	switch c.GetStatus() {
	case fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED:
		style = t.OK
	case fleetv1.CommandStatus_COMMAND_STATUS_FAILED:
		style = t.Bad
	case fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, fleetv1.CommandStatus_COMMAND_STATUS_DELIVERED:
		style = t.Info
	}
	msg := c.GetMessage()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i] + " …"
	}
	if msg == "" {
		msg = c.GetReason()
	}
	return fmt.Sprintf("%s  %-11s %s %s  %s", padLeft(display.Age(tsTime(c.GetUpdatedAt()), now), 4), display.CommandType(c.GetType()),
		style.Render(padRight(st, 12)), t.Muted.Render(padRight(c.GetIssuedBy(), 8)), msg)
}

// latestDiagnostics is the most recent diagnostics command, the one whose
// report the node view shows in full; nil when there is none.
func latestDiagnostics(cmds []*fleetv1.Command) *fleetv1.Command {
	var latest *fleetv1.Command
	for _, c := range cmds {
		if c.GetType() != fleetv1.CommandType_COMMAND_TYPE_DIAGNOSTICS {
			continue
		}
		// The list is newest first; the creation time settles it if not.
		if latest == nil || tsTime(c.GetCreatedAt()).After(tsTime(latest.GetCreatedAt())) {
			latest = c
		}
	}
	return latest
}

// diagnosticsLines is a diagnostics command's line followed by its report,
// one check a line, indented under it and cut to the width, failed checks
// first so that they are on screen without scrolling.
func diagnosticsLines(t *Theme, c *fleetv1.Command, now time.Time, width int) []string {
	first, rest, _ := strings.Cut(c.GetMessage(), "\n")
	head := c
	if rest != "" {
		// The report follows; the summary line needs no ellipsis.
		head = proto.CloneOf(c)
		head.Message = first
	}
	out := []string{commandLine(t, head, now)}
	var failed, passed []string
	for _, l := range strings.Split(rest, "\n") {
		l = strings.TrimRightFunc(printable(l), unicode.IsSpace)
		switch {
		case strings.TrimSpace(l) == "":
		case strings.HasPrefix(l, "FAIL"):
			failed = append(failed, truncate("      "+l, width))
		default:
			passed = append(passed, truncate("      "+l, width))
		}
	}
	for _, l := range failed {
		out = append(out, t.Bad.Render(l))
	}
	for _, l := range passed {
		out = append(out, t.Muted.Render(l))
	}
	return out
}

// printable drops control characters from agent text, tabs becoming
// spaces, so that a report cannot move the cursor or change styles.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
