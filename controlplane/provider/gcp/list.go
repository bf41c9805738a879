package gcp

import (
	"context"
	"fmt"
	"sort"

	"github.com/navarch/navarch/controlplane/provider"
)

// live reports whether an instance with this status runs or is about to.
func live(status string) bool {
	switch status {
	case "PROVISIONING", "STAGING", "RUNNING", "REPAIRING":
		return true
	}
	return false
}

// List lists this cluster's instances that run or are starting, by node
// id; stopping, stopped and suspended ones are left out. Each
// InstanceID is the instance's name, which is its node id.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	all, err := p.listAll(ctx)
	if err != nil {
		return nil, err
	}
	var out []provider.Instance
	for _, in := range all {
		if live(in.Status) {
			out = append(out, toInstance(in))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, nil
}

// Terminate deletes an instance, in its zone or else in whichever of the
// configured zones has it, and returns once Compute Engine has accepted
// the deletion. An instance that is already gone is fine.
func (p *Provider) Terminate(ctx context.Context, inst provider.Instance) error {
	name := inst.InstanceID
	if name == "" {
		name = inst.NodeID
	}
	zone := inst.Zone
	if zone == "" {
		var err error
		if zone, err = p.find(ctx, name); err != nil || zone == "" {
			return err
		}
	}
	p.markDeleted(zone, name)
	step := fmt.Sprintf("delete instance %s in %s", name, zone)
	id := requestID("delete", zone, name)
	err := p.retry(ctx, step, func() error {
		_, err := p.svc.Instances.Delete(p.cfg.Project, zone, name).RequestId(id).Context(ctx).Do()
		return err
	})
	switch {
	case err == nil:
		p.log.Info("instance deleted", "instance", name, "zone", zone)
		return nil
	case classify(err) == kindNotFound:
		return nil
	}
	p.unmarkDeleted(zone, name)
	return err
}

// find returns the configured zone that has the instance; "" when none
// has it.
func (p *Provider) find(ctx context.Context, name string) (string, error) {
	for _, zone := range p.cfg.Zones {
		err := p.retry(ctx, fmt.Sprintf("get instance %s in %s", name, zone), func() error {
			_, err := p.svc.Instances.Get(p.cfg.Project, zone, name).Context(ctx).Do()
			return err
		})
		switch {
		case err == nil:
			return zone, nil
		case classify(err) != kindNotFound:
			return "", err
		}
	}
	return "", nil
}
