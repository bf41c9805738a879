package tui

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// What the node view says of each GPU beyond its row's figures: under the
// row, every fault it has and what slows its clocks; at the end, which
// board it is (model, UUID, PCI bus id, serial) and its clocks.

// NVML's clock-event reason bits, nvmlClocksEventReason* in nvml.h (go-nvml's
// ClocksEventReason* and ClocksThrottleReason*). The console does not link
// NVML, so they are repeated here.
const (
	clocksIdle         uint64 = 0x1
	clocksApplication  uint64 = 0x2
	clocksSwPowerCap   uint64 = 0x4
	clocksHwSlowdown   uint64 = 0x8
	clocksSyncBoost    uint64 = 0x10
	clocksSwThermal    uint64 = 0x20
	clocksHwThermal    uint64 = 0x40
	clocksHwPowerBrake uint64 = 0x80
	clocksDisplay      uint64 = 0x100
	clocksBoardLimit   uint64 = 0x200
	clocksReliability  uint64 = 0x400
)

// clockWeight is how much a clock-event reason matters at 3 a.m.
type clockWeight int

const (
	// clockBenign: the GPU is idle, or someone set its clocks.
	clockBenign clockWeight = iota
	// clockLimit: a limit a busy GPU runs into by design, its power cap.
	clockLimit
	// clockProblem: heat, the power brake or a hardware signal slowing
	// the GPU, which the cooling or the power supply has to answer for.
	clockProblem
)

// clockReasons names each reason, in the order shown: problems first, so
// that a cut line keeps them.
var clockReasons = []struct {
	bit    uint64
	name   string
	weight clockWeight
}{
	{clocksHwThermal, "HW thermal slowdown", clockProblem},
	{clocksHwPowerBrake, "power brake", clockProblem},
	{clocksHwSlowdown, "HW slowdown", clockProblem},
	{clocksSwThermal, "SW thermal slowdown", clockProblem},
	{clocksSwPowerCap, "power cap", clockLimit},
	{clocksBoardLimit, "board limit", clockLimit},
	{clocksReliability, "reliability limit", clockLimit},
	{clocksSyncBoost, "sync boost", clockBenign},
	{clocksApplication, "application clocks", clockBenign},
	{clocksDisplay, "display clock", clockBenign},
	{clocksIdle, "idle", clockBenign},
}

// clockEvent is one active clock-event reason.
type clockEvent struct {
	name   string
	weight clockWeight
	// held is how long it has held the clocks down, where the agent
	// counts it (hardware slowdown and the power brake); else 0.
	held time.Duration
}

func (c clockEvent) String() string {
	if c.held >= time.Second {
		return c.name + " for " + display.Duration(c.held)
	}
	return c.name
}

// clockEvents names the reasons a reading's clocks are held down, problems
// first. NVML sets its generic HW slowdown bit beside the thermal and
// power-brake ones: named as well, it would say the same thing twice, so
// it is named only when neither explains it (as the agent's own
// gpu.HWSlowdown counts it).
func clockEvents(m *fleetv1.GpuMetrics) []clockEvent {
	r := m.GetClockEventReasons()
	if r&(clocksHwThermal|clocksHwPowerBrake) != 0 {
		r &^= clocksHwSlowdown
	}
	var out []clockEvent
	for _, c := range clockReasons {
		if r&c.bit == 0 {
			continue
		}
		r &^= c.bit
		e := clockEvent{name: c.name, weight: c.weight}
		switch c.bit {
		case clocksHwThermal, clocksHwSlowdown:
			e.held = time.Duration(m.GetHwSlowdownSeconds()) * time.Second
		case clocksHwPowerBrake:
			e.held = time.Duration(m.GetPowerBrakeSeconds()) * time.Second
		}
		out = append(out, e)
	}
	if r != 0 {
		// A reason newer than this console: the bits, rather than nothing.
		out = append(out, clockEvent{name: fmt.Sprintf("reasons 0x%x", r), weight: clockLimit})
	}
	return out
}

// clockStyle renders a clock-event reason: problems stand out, the idle
// and set clocks recede.
func clockStyle(t *Theme, w clockWeight, s string) string {
	switch w {
	case clockProblem:
		return t.Bad.Render(s)
	case clockBenign:
		return t.Muted.Render(s)
	}
	return s
}

// Short forms, for terminals too narrow for the whole: every GPU is
// NVIDIA's, and within a node a UUID's first eight hex digits tell its
// GPUs apart.
const (
	modelVendor    = "NVIDIA "
	shortUUIDChars = len("GPU-") + 8
)

func shortModel(m string) string { return strings.TrimPrefix(m, modelVendor) }

func shortUUID(u string) string {
	if len(u) <= shortUUIDChars+1 {
		return u
	}
	return u[:shortUUIDChars] + "…"
}

// clockRoom is the most width kept on a GPU's line for its clock-event
// reasons ("  clocks: power cap"); where the whole names and UUIDs leave
// less, they are shortened.
const clockRoom = 20

// gpuIdentity is one GPU's line before its clock-event reasons: its
// name, what it is, and its clocks, in columns common to the node.
type gpuIdentity struct {
	gpu                  *fleetv1.Gpu
	model, uuid, clocks  string
	pci, serial          string
	clockText, clockTail string // the reasons, plain and styled
}

// gpuNotes are the lines under a GPU's row in the GPU table: every fault
// it has, in the control plane's order, which is worst first, then what
// holds its clocks down where heat, the power brake or a hardware signal
// does. An unreachable node's clocks are unknown, as its other figures
// are; its faults stand until the control plane clears them.
func gpuNotes(t *Theme, g *fleetv1.Gpu, kindW int, reachable bool, now time.Time, width int) []string {
	var lines []string
	for _, f := range g.GetFaults() {
		lines = append(lines, faultLine(t, f, kindW, now, width))
	}
	if !reachable || g.GetLost() {
		return lines
	}
	events := clockEvents(g.GetMetrics())
	if !slices.ContainsFunc(events, func(c clockEvent) bool { return c.weight == clockProblem }) {
		return lines
	}
	_, styled := clockText(t, events)
	return append(lines, truncate(strings.Repeat(" ", noteIndent)+styled, width))
}

// noteIndent puts the lines under a GPU's row under its health letter.
const noteIndent = 5

// faultKindWidth fits the kind of every fault on the node, so that the
// causes under different GPUs line up.
func faultKindWidth(n *fleetv1.Node) int {
	w := 0
	for _, g := range n.GetGpus() {
		for _, f := range g.GetFaults() {
			w = max(w, ansi.StringWidth(faultKind(f)))
		}
	}
	return w
}

// clockText is the clock-event reasons, plain and styled: "clocks: HW
// thermal slowdown for 2m10s, power cap"; "" when there are none.
func clockText(t *Theme, events []clockEvent) (plain, styled string) {
	if len(events) == 0 {
		return "", ""
	}
	var p, s []string
	for _, c := range events {
		p = append(p, c.String())
		s = append(s, clockStyle(t, c.weight, c.String()))
	}
	return "clocks: " + strings.Join(p, ", "), t.Muted.Render("clocks: ") + strings.Join(s, ", ")
}

// gpuDetails is the node view's GPU DETAILS section, in index order: per
// GPU which board it is and its clocks, with every clock-event reason,
// the idle ones too.
func gpuDetails(t *Theme, n *fleetv1.Node, reachable bool, width int) []string {
	if len(n.GetGpus()) == 0 {
		return nil
	}
	rows := identities(t, n.GetGpus(), reachable)
	cols := fitIdentities(rows, width)
	lines := []string{t.Header.Render("GPU DETAILS"), t.Muted.Render(truncate(cols.header(), width))}
	for _, r := range rows {
		lines = append(lines, cols.line(t, r, width)...)
	}
	return lines
}

// mhz is a clock's figure; a clock never reads 0 MHz, so 0 is a driver
// that did not say, shown as - (and both unsaid as "clocks -").
func mhz(v uint32) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprint(v)
}

// identities works out each GPU's fields in full.
func identities(t *Theme, gpus []*fleetv1.Gpu, reachable bool) []gpuIdentity {
	out := make([]gpuIdentity, 0, len(gpus))
	for _, g := range gpus {
		r := gpuIdentity{
			gpu: g, model: display.OrDash(display.CleanText(g.GetName(), "")), uuid: display.OrDash(g.GetUuid()),
			pci: g.GetPciBusId(), serial: display.CleanText(g.GetSerial(), ""), clocks: "clocks -",
		}
		m := g.GetMetrics()
		switch {
		case g.GetLost():
			r.clocks = "lost"
		case reachable && m.GetSmClockMhz()+m.GetMemoryClockMhz() > 0:
			r.clocks = fmt.Sprintf("SM %4s / mem %4s MHz", mhz(m.GetSmClockMhz()), mhz(m.GetMemoryClockMhz()))
			fallthrough
		case reachable:
			r.clockText, r.clockTail = clockText(t, clockEvents(m))
		}
		out = append(out, r)
	}
	return out
}

// identityColumns is how a node's GPU lines are laid out at a width: the
// columns' widths, and whether models and UUIDs are shortened.
type identityColumns struct {
	short, shortUUID    bool
	model, uuid, clocks int
	pci, serial         int // 0 when the column is left out
}

// fitIdentities lays the GPU lines out in the width, keeping up to
// clockRoom for the reasons: models without "NVIDIA " before UUIDs are
// shortened, and PCI bus ids and serials only where everything else is
// whole.
func fitIdentities(rows []gpuIdentity, width int) identityColumns {
	widest := func(f func(gpuIdentity) string) int {
		w := 0
		for _, r := range rows {
			w = max(w, ansi.StringWidth(f(r)))
		}
		return w
	}
	c := identityColumns{clocks: widest(func(r gpuIdentity) string { return r.clocks })}
	// No more room is kept for the reasons than the longest of them takes,
	// and none where no GPU has one, as at full clocks under load.
	reasons := 0
	if w := widest(func(r gpuIdentity) string { return r.clockText }); w > 0 {
		reasons = min(clockRoom, 2+w)
	}
	fixed := func() int { return gpuNameWidth + c.model + 2 + c.uuid + 2 + c.clocks + reasons }
	for _, form := range []struct{ short, shortUUID bool }{{false, false}, {true, false}, {true, true}} {
		c.short, c.shortUUID = form.short, form.shortUUID
		c.model = widest(func(r gpuIdentity) string { return c.modelOf(r) })
		c.uuid = widest(func(r gpuIdentity) string { return c.uuidOf(r) })
		if fixed() <= width {
			break
		}
	}
	if c.short || c.shortUUID {
		return c
	}
	room := width - fixed()
	if w := widest(func(r gpuIdentity) string { return r.pci }); w > 0 && max(w, len(pciHeader))+2 <= room {
		c.pci = max(w, len(pciHeader))
		room -= c.pci + 2
	}
	if w := widest(func(r gpuIdentity) string { return r.serial }); w > 0 && max(w, len(serialHeader))+2 <= room {
		c.serial = max(w, len(serialHeader))
	}
	return c
}

// gpuNameWidth fits "gpu63 ", the name of the last GPU a node may have.
const gpuNameWidth = 6

// The column headers of the PCI bus id and the serial, which read as
// numbers without them.
const pciHeader, serialHeader = "PCI BUS", "SERIAL"

// header is the column header matching line.
func (c identityColumns) header() string {
	h := padRight("GPU", gpuNameWidth) + padRight("MODEL", c.model) + "  " + padRight("UUID", c.uuid)
	if c.pci > 0 {
		h += "  " + padRight(pciHeader, c.pci)
	}
	if c.serial > 0 {
		h += "  " + padRight(serialHeader, c.serial)
	}
	return h + "  CLOCKS"
}

func (c identityColumns) modelOf(r gpuIdentity) string {
	if c.short {
		return shortModel(r.model)
	}
	return r.model
}

func (c identityColumns) uuidOf(r gpuIdentity) string {
	if c.shortUUID {
		return shortUUID(r.uuid)
	}
	return r.uuid
}

// line is a GPU's line, with its clock-event reasons at the end where they
// fit whole, else on a line of their own under it.
func (c identityColumns) line(t *Theme, r gpuIdentity, width int) []string {
	glyph := gpuGlyph(r.gpu.GetHealth(), r.gpu.GetLost())
	head := t.GlyphStyle(glyph).Render(padRight(display.GPU(int32(r.gpu.GetIndex())), gpuNameWidth))
	s := padRight(c.modelOf(r), c.model) + "  " + padRight(c.uuidOf(r), c.uuid)
	if c.pci > 0 {
		s += "  " + t.Muted.Render(padRight(display.OrDash(r.pci), c.pci))
	}
	if c.serial > 0 {
		s += "  " + t.Muted.Render(padRight(display.OrDash(r.serial), c.serial))
	}
	clocks := padRight(r.clocks, c.clocks)
	if r.gpu.GetLost() {
		clocks = t.Off.Render(clocks)
	}
	s = head + s + "  " + clocks
	switch {
	case r.clockText == "":
		return []string{truncate(strings.TrimRight(s, " "), width)}
	case ansi.StringWidth(s)+2+ansi.StringWidth(r.clockText) <= width:
		return []string{s + "  " + r.clockTail}
	}
	return []string{truncate(strings.TrimRight(s, " "), width), truncate(strings.Repeat(" ", gpuNameWidth)+r.clockTail, width)}
}

// faultKind names what a fault came from, as events name theirs: "XID 79",
// "thermal".
func faultKind(f *fleetv1.Fault) string {
	return display.EventKind(&fleetv1.HealthEvent{Kind: f.GetKind(), Xid: f.GetXid()})
}

// minFaultCause is the fewest cells of cause worth showing; below it the
// count and age go first.
const minFaultCause = 16

// faultLine is one fault under its GPU: health, kind, cause, the remedy
// after an arrow, and how often and since when it was seen ("3× over 5m").
// As in the fleet's WHY column the remedy is cut last: the remedy in
// words where the line has room, else its short name with the cause cut
// at a word, then without the count and age.
func faultLine(t *Theme, f *fleetv1.Fault, kindW int, now time.Time, width int) string {
	head := strings.Repeat(" ", noteIndent) + t.HealthStyle(f.GetHealth()).Render(padRight(display.Health(f.GetHealth()), 9)) + " " +
		padRight(faultKind(f), kindW) + " "
	cause := display.OrDash(display.CleanText(display.FirstLine(f.GetCause()), ""))
	var tail string
	switch age := display.Age(tsTime(f.GetSince()), now); {
	case age == "-":
		// A fault without its time says nothing of when.
		if f.GetCount() > 1 {
			tail = fmt.Sprintf("%d×", f.GetCount())
		}
	case f.GetCount() > 1:
		tail = fmt.Sprintf("%d× over %s", f.GetCount(), age)
	default:
		tail = age + " ago"
	}
	escalated := ""
	if f.GetEscalated() {
		escalated = " [escalated]"
	}
	remedies := []string{"", ""}
	if r := f.GetRemedy(); r != fleetv1.Remedy_REMEDY_UNSPECIFIED && r != fleetv1.Remedy_REMEDY_NONE {
		remedies = []string{whySep + display.Remedy(r), whySep + display.ShortRemedy(r)}
	}
	render := func(cause, remedy, tail string) string {
		s := head + cause + t.Accent.Render(remedy) + t.Bad.Render(escalated)
		if tail != "" {
			s += t.Muted.Render("  " + tail)
		}
		return s
	}
	room := func(remedy, tail string) int {
		w := ansi.StringWidth(head) + ansi.StringWidth(remedy+escalated)
		if tail != "" {
			w += 2 + ansi.StringWidth(tail)
		}
		return width - w
	}
	for _, remedy := range remedies {
		if ansi.StringWidth(cause) <= room(remedy, tail) {
			return render(cause, remedy, tail)
		}
	}
	short := remedies[1]
	for _, tl := range []string{tail, ""} {
		if r := room(short, tl); r >= minFaultCause {
			return render(cutWords(cause, r), short, tl)
		}
	}
	return truncate(render(cause, short, ""), width)
}
