package tui

import (
	"image/color"

	"charm.land/lipgloss/v2"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// colors is the theme's colours; nil colours mean "the terminal's own".
type colors struct {
	fg, muted, accent            color.Color
	ok, warn, bad, info, offline color.Color
	selBg, markFg, bannerBg      color.Color
}

func darkColors() colors {
	return colors{
		fg: lipgloss.Color("#E4E4E4"), muted: lipgloss.Color("#8A8A8A"), accent: lipgloss.Color("#87AFFF"),
		ok: lipgloss.Color("#5FD787"), warn: lipgloss.Color("#FFD75F"), bad: lipgloss.Color("#FF5F5F"),
		info: lipgloss.Color("#5FAFFF"), offline: lipgloss.Color("#D787FF"),
		selBg: lipgloss.Color("#3A3A5A"), markFg: lipgloss.Color("#FFAF00"), bannerBg: lipgloss.Color("#870000"),
	}
}

func lightColors() colors {
	return colors{
		fg: lipgloss.Color("#1C1C1C"), muted: lipgloss.Color("#6C6C6C"), accent: lipgloss.Color("#005FD7"),
		ok: lipgloss.Color("#008700"), warn: lipgloss.Color("#AF5F00"), bad: lipgloss.Color("#D70000"),
		info: lipgloss.Color("#005FAF"), offline: lipgloss.Color("#8700AF"),
		selBg: lipgloss.Color("#D0D0F0"), markFg: lipgloss.Color("#AF5F00"), bannerBg: lipgloss.Color("#FFD7D7"),
	}
}

// Theme is every style the console uses, derived from one colors. With
// colour off every state stays readable: states are words and GPU glyphs
// are letters, and the cursor is shown in reverse video.
type Theme struct {
	Dark, Color bool

	Title, Muted, Accent, Bold lipgloss.Style
	Header, Cell, Selected     lipgloss.Style
	Mark                       lipgloss.Style
	OK, Warn, Bad, Info, Off   lipgloss.Style
	Banner, Status, StatusErr  lipgloss.Style
	Box, Key, Desc             lipgloss.Style
}

// NewTheme builds the styles for a dark or light background, with or
// without colour.
func NewTheme(dark, useColor bool) *Theme {
	t := &Theme{Dark: dark, Color: useColor}
	plain := lipgloss.NewStyle()
	t.Bold = plain.Bold(true)
	t.Cell = plain
	t.Selected = plain.Reverse(true)
	t.Box = plain.Border(lipgloss.RoundedBorder()).Padding(0, 1)
	if !useColor {
		t.Title, t.Muted, t.Accent = t.Bold, plain, t.Bold
		t.Header = t.Bold
		t.Mark = t.Bold
		t.OK, t.Warn, t.Bad, t.Info, t.Off = plain, t.Bold, t.Bold, plain, plain
		t.Banner = t.Bold.Reverse(true)
		t.Status, t.StatusErr = plain, t.Bold
		t.Key, t.Desc = t.Bold, plain
		return t
	}
	p := darkColors()
	if !dark {
		p = lightColors()
	}
	t.Title = t.Bold.Foreground(p.accent)
	t.Muted = plain.Foreground(p.muted)
	t.Accent = plain.Foreground(p.accent)
	t.Header = t.Bold.Foreground(p.muted)
	t.Selected = plain.Background(p.selBg).Foreground(p.fg).Bold(true)
	t.Mark = t.Bold.Foreground(p.markFg)
	t.OK = plain.Foreground(p.ok)
	t.Warn = plain.Foreground(p.warn)
	t.Bad = t.Bold.Foreground(p.bad)
	t.Info = plain.Foreground(p.info)
	t.Off = plain.Foreground(p.offline)
	t.Banner = t.Bold.Background(p.bannerBg).Foreground(lipgloss.Color("#FFFFFF"))
	if !dark {
		t.Banner = t.Bold.Background(p.bannerBg).Foreground(p.bad)
	}
	t.Status = plain.Foreground(p.muted)
	t.StatusErr = t.Bold.Foreground(p.bad)
	t.Box = t.Box.BorderForeground(p.accent)
	t.Key = t.Bold.Foreground(p.accent)
	t.Desc = plain.Foreground(p.fg)
	return t
}

// HealthStyle colours a health state.
func (t *Theme) HealthStyle(h fleetv1.HealthStatus) lipgloss.Style {
	switch h {
	case fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
		return t.OK
	case fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		return t.Warn
	case fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
		return t.Bad
	}
	return t.Muted
}

// LifecycleStyle colours a lifecycle state. Cordoned and drained nodes are
// operator decisions, shown in the informational colour, never the failure
// one.
func (t *Theme) LifecycleStyle(l fleetv1.LifecycleState) lipgloss.Style {
	switch l {
	case fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE:
		return t.Cell
	case fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINING,
		fleetv1.LifecycleState_LIFECYCLE_STATE_DRAINED:
		return t.Info
	case fleetv1.LifecycleState_LIFECYCLE_STATE_PROVISION_FAILED:
		return t.Bad
	}
	return t.Muted
}

// ReachStyle colours a reachability.
func (t *Theme) ReachStyle(r fleetv1.Reachability) lipgloss.Style {
	switch r {
	case fleetv1.Reachability_REACHABILITY_ONLINE:
		return t.OK
	case fleetv1.Reachability_REACHABILITY_STALE:
		return t.Warn
	case fleetv1.Reachability_REACHABILITY_OFFLINE:
		return t.Off
	}
	return t.Muted
}

// gpuGlyph is one GPU's letter: H healthy, D degraded, U unhealthy, ?
// unknown, X lost.
func gpuGlyph(h fleetv1.HealthStatus, lost bool) byte {
	switch {
	case lost:
		return 'X'
	case h == fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY:
		return 'H'
	case h == fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED:
		return 'D'
	case h == fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY:
		return 'U'
	}
	return '?'
}

// GlyphStyle colours a GPU glyph.
func (t *Theme) GlyphStyle(g byte) lipgloss.Style {
	switch g {
	case 'H':
		return t.OK
	case 'D':
		return t.Warn
	case 'U':
		return t.Bad
	case 'X':
		return t.Off.Bold(true)
	}
	return t.Muted
}
