package tui

import (
	"context"
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"

	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Scaling a pool from the console moves its wanted size by one, within its
// min and max, after confirmation; the pool then provisions or removes a
// node to reach it. The pool views share what is here.

// askScale asks to scale pool p up or down by one. A pool already at its
// bound is not asked about: its min and max are the pool's own, sent by
// the control plane with it.
func askScale(d *deps, p *fleetv1.Pool, up bool) {
	if p == nil {
		d.send(statusLineMsg{text: "no pool selected", err: true})
		return
	}
	from, spec := p.GetWanted(), p.GetSpec()
	to := from - 1
	switch {
	case up && from >= spec.GetMax():
		d.send(statusLineMsg{text: fmt.Sprintf("pool %s is at its max, %d; raise max to scale it up", p.GetName(), spec.GetMax()), err: true})
		return
	case !up && from <= spec.GetMin():
		d.send(statusLineMsg{text: fmt.Sprintf("pool %s is at its min, %d; lower min to scale it down", p.GetName(), spec.GetMin()), err: true})
		return
	case up:
		to = from + 1
	}
	d.send(openOverlayMsg{overlay: newConfirm(d, scaleQuestion(p, to), scaleAction(d, p.GetName(), from, to))})
}

// scaleQuestion is the confirmation of a scale of p to wanted.
func scaleQuestion(p *fleetv1.Pool, wanted uint32) string {
	q := fmt.Sprintf("Scale pool %s from %d to %s?", p.GetName(), p.GetWanted(), plural(wanted, "node"))
	if wanted > p.GetWanted() {
		q += " It provisions a node through " + strings.Join(p.GetSpec().GetProviders(), ", then ") + "."
	} else {
		q += " A node beyond the wanted size is drained, then terminated."
	}
	if p.GetSpec().GetAutoscaling() != nil {
		q += " Its autoscaling moves the size on from there."
	}
	return q
}

// scaleAction sets pool name's wanted size to to, from from.
func scaleAction(d *deps, name string, from, to uint32) tea.Cmd {
	return func() tea.Msg {
		if d.client == nil {
			return statusLineMsg{text: "scale failed: " + errNoClient.Error(), err: true}
		}
		ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
		defer cancel()
		resp, err := d.client.ScalePool(ctx, &controlplanev1.ScalePoolRequest{Name: name, Wanted: to, Reason: "scaled from the console"})
		if err != nil {
			return statusLineMsg{text: "scale failed: " + apierr.Describe(name, err), err: true}
		}
		return statusLineMsg{text: fmt.Sprintf("pool %s: wanted %d (was %d)", name, resp.GetPool().GetWanted(), from)}
	}
}

// poolHealth counts a pool's nodes by health, one letter each, as the GPU
// glyphs are: "2H 1D 0U". A count of zero is muted, so that with colour
// what is wrong stands out, and without it the letters still say it.
func poolHealth(th *Theme, s *fleetv1.PoolStatus, plain bool) string {
	parts := []struct {
		n     uint32
		glyph byte
	}{{s.GetHealthy(), 'H'}, {s.GetDegraded(), 'D'}, {s.GetUnhealthy(), 'U'}}
	out := make([]string, len(parts))
	for i, p := range parts {
		text := fmt.Sprintf("%d%c", p.n, p.glyph)
		switch {
		case plain:
		case p.n == 0:
			text = th.Muted.Render(text)
		default:
			text = th.GlyphStyle(p.glyph).Render(text)
		}
		out[i] = text
	}
	return strings.Join(out, " ")
}

// autoscaling says whether a pool scales itself.
func autoscaling(p *fleetv1.Pool) string {
	if p.GetSpec().GetAutoscaling() == nil {
		return "off"
	}
	return "on"
}

// What the pool views' counts mean, for their help.
const (
	poolHealthLegend  = "pool health: 2H 1D 0U counts the pool's nodes healthy, degraded, unhealthy"
	poolColumnsLegend = "SIZE nodes/wanted · PROV provisioning · OFF offline · RMV removing"
)
