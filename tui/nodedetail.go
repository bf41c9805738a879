package tui

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// The node view's parts: the GPU table, events, commands and a
// diagnostics report, each rendered from the API's values.

// gpuTable is the GPU table's column header, then one row per GPU, each
// followed by its faults and what slows its clocks (gpuNotes). A metric
// that is missing, or that an unreachable node last reported, shows as -:
// a zero would read as a measurement.
func (v *nodeView) gpuTable(n *fleetv1.Node, width int, reachable bool, now time.Time) []string {
	t := v.d.theme
	kindW := faultKindWidth(n)
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
		lines = append(lines, gpuNotes(t, g, kindW, reachable, now, width)...)
	}
	return lines
}

// processSummary says which GPU compute processes the node's last health
// report listed, the ones a drain waits for: "3 on gpu0, gpu2: pids 4121
// (python), 4122, 4290". A GPU whose heartbeat sample, taken at sampledAt
// and newer than that report, counts no processes has none: a drain that
// killed them ends well before the next full report, and the list would
// otherwise outlive them.
func processSummary(n *fleetv1.Node, samples []*fleetv1.GpuSample, sampledAt time.Time) string {
	idle := map[uint32]bool{}
	for _, s := range samples {
		idle[s.GetGpuIndex()] = s.GetProcessCount() == 0
	}
	var gpus, pids []string
	seen := map[uint32]bool{}
	for _, g := range n.GetGpus() {
		procs := g.GetMetrics().GetProcesses()
		if len(procs) == 0 || idle[g.GetIndex()] && sampledAt.After(tsTime(g.GetMetrics().GetTime())) {
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
	msg := display.Headline(c.GetMessage())
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
