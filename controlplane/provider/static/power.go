package static

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/apierr"
)

// powerOn powers a machine on unless it is on already.
func (p *Provider) powerOn(ctx context.Context, m *machine) (provider.Instance, error) {
	if !p.reserve(m.NodeID) {
		return provider.Instance{}, underWay(m)
	}
	ok := false
	defer func() { p.release(m.NodeID, ok) }()
	s, err := m.sys.read(ctx, true)
	if err != nil {
		return provider.Instance{}, p.bmcError(m, "read power state", err)
	}
	if s.power != powerOff {
		return provider.Instance{}, status.Errorf(codes.ResourceExhausted,
			"static: machine %s is not off (its BMC says PowerState %s): it is in use outside the fleet, or has not finished powering off", m.NodeID, s.power)
	}
	resetType := s.first(resetOn, resetForceOn, resetPushPowerButton)
	if err := m.sys.reset(ctx, s, resetType); err != nil {
		return provider.Instance{}, p.bmcError(m, "power on ("+resetType+")", err)
	}
	ok = true
	p.log.Info("machine powered on", "node", m.NodeID, "reset", resetType, "system", s.url)
	return provider.Instance{NodeID: m.NodeID, InstanceID: s.url, Pool: m.Pool}, nil
}

// Terminate powers a machine off: a graceful shutdown, then ForceOff if
// it is still on after the shutdown timeout (or ForceOff at once, as
// configured). A machine that is off already, or not listed any more,
// succeeds.
func (p *Provider) Terminate(ctx context.Context, inst provider.Instance) error {
	m := p.lookup(inst)
	if m == nil {
		p.log.Warn("terminate of a machine no longer listed; nothing done", "node", inst.NodeID, "instance", inst.InstanceID)
		return nil
	}
	if !p.reserve(m.NodeID) {
		return underWay(m)
	}
	defer p.release(m.NodeID, false)
	s, err := m.sys.read(ctx, true)
	if err != nil {
		return p.bmcError(m, "read power state", err)
	}
	if s.power == powerOff {
		return nil
	}
	if !p.o.ForceOff && s.allows(resetGracefulShutdown) {
		asked, err := p.shutDown(ctx, m, s)
		if err != nil {
			return err
		}
		if asked {
			off, power, err := p.waitOff(ctx, m, p.o.ShutdownTimeout)
			if err != nil || off {
				return err
			}
			p.log.Warn("machine did not shut down in time; forcing it off", "node", m.NodeID, "timeout", p.o.ShutdownTimeout, "power", power)
		}
	}
	return p.forceOff(ctx, m, s)
}

// shutDown asks the machine's operating system to shut down, unless it
// is doing so already, and reports whether a shutdown is under way. A
// BMC that refuses the request for another reason than the account's is
// logged, and the machine is then forced off.
func (p *Provider) shutDown(ctx context.Context, m *machine, s *systemState) (bool, error) {
	if s.power == powerPoweringOff {
		return true, nil
	}
	err := m.sys.reset(ctx, s, resetGracefulShutdown)
	switch statusOf(err) {
	case http.StatusUnauthorized, http.StatusForbidden:
		return false, p.bmcError(m, "shut down", err)
	}
	if err != nil {
		p.log.Warn("BMC refused a graceful shutdown; forcing the machine off", "node", m.NodeID, "err", err)
		return false, nil
	}
	return true, nil
}

// forceOff cuts a machine's power and waits for its BMC to say Off.
func (p *Provider) forceOff(ctx context.Context, m *machine, s *systemState) error {
	if err := m.sys.reset(ctx, s, resetForceOff); err != nil {
		return p.bmcError(m, "force off", err)
	}
	off, power, err := p.waitOff(ctx, m, forceOffWait)
	if err != nil {
		return err
	}
	if !off {
		return fmt.Errorf("static: machine %s: still %s %s after ForceOff", m.NodeID, power, forceOffWait)
	}
	p.log.Info("machine powered off", "node", m.NodeID)
	return nil
}

// waitOff reads the machine's power state until it is Off or limit has
// passed, and returns the last state read.
func (p *Provider) waitOff(ctx context.Context, m *machine, limit time.Duration) (bool, string, error) {
	deadline := p.o.Clock.Now().Add(limit)
	for {
		s, err := m.sys.read(ctx, false)
		if err != nil {
			return false, "", p.bmcError(m, "read power state", err)
		}
		left := deadline.Sub(p.o.Clock.Now())
		if s.power == powerOff || left <= 0 {
			return s.power == powerOff, s.power, nil
		}
		if err := sleep(ctx, p.o.Clock, min(p.o.PollInterval, left)); err != nil {
			return false, s.power, fmt.Errorf("static: machine %s: waiting for it to power off: %w", m.NodeID, err)
		}
	}
}

// PowerCycle restarts a machine whose agent has gone silent, cutting its
// power where the BMC allows (PowerCycle, else ForceRestart), else
// forcing it off and on; a machine that is off is powered on.
func (p *Provider) PowerCycle(ctx context.Context, inst provider.Instance) error {
	m := p.lookup(inst)
	if m == nil {
		return apierr.Invalid("node_id", "%q is not one of the static provider's machines", inst.NodeID)
	}
	if !p.reserve(m.NodeID) {
		return underWay(m)
	}
	defer p.release(m.NodeID, true)
	s, err := m.sys.read(ctx, true)
	if err != nil {
		return p.bmcError(m, "read power state", err)
	}
	var resetType string
	switch {
	case s.power == powerOff:
		resetType = s.first(resetOn, resetForceOn, resetPushPowerButton)
	case slices.Contains(s.allowable, resetPowerCycle):
		resetType = resetPowerCycle
	case s.allows(resetForceRestart):
		resetType = resetForceRestart
	default:
		if err := p.forceOff(ctx, m, s); err != nil {
			return err
		}
		resetType = s.first(resetOn, resetForceOn, resetPushPowerButton)
	}
	if err := m.sys.reset(ctx, s, resetType); err != nil {
		return p.bmcError(m, "power cycle ("+resetType+")", err)
	}
	p.log.Info("machine power-cycled", "node", m.NodeID, "reset", resetType)
	return nil
}

// reserve marks a machine busy, unless a call is under way on it already.
func (p *Provider) reserve(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until, busy := p.busy[id]; busy && until.IsZero() {
		return false
	}
	p.busy[id] = time.Time{}
	return true
}

// release ends a reservation; after a power-on, Choose still passes the
// machine over while its BMC catches up.
func (p *Provider) release(id string, poweredOn bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if poweredOn {
		p.busy[id] = p.o.Clock.Now().Add(settle)
	} else {
		delete(p.busy, id)
	}
}

func underWay(m *machine) error {
	return status.Errorf(codes.Aborted, "static: a provision, terminate or power cycle of machine %s is under way", m.NodeID)
}
