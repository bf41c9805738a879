package gcp

import (
	"context"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/navarch/navarch/controlplane/provider"
)

// spotNotice is how long Compute Engine gives a Spot VM between telling
// it that it is being reclaimed and stopping it.
const spotNotice = 30 * time.Second

// watchEntry is an instance Watch has seen running.
type watchEntry struct {
	inst        provider.Instance
	spot        bool
	since       uint64 // the listing under way when it was added
	interrupted bool   // told as NoticeInterrupted already
}

func instanceKey(zone, name string) string { return zone + "/" + name }

// Watch lists the cluster's instances every poll interval and tells of
// those that were running and then stopped, were suspended or vanished
// without Terminate deleting them (NoticeGone), and of Spot VMs that
// Compute Engine began to reclaim (NoticeInterrupted, while they are
// STOPPING: the instance resource has no preempted flag, and a reclaimed
// Spot VM goes STOPPING, then TERMINATED, then, deleted on preemption,
// away). Each notice is told once per instance.
func (p *Provider) Watch(ctx context.Context, notify func(provider.Notice)) {
	t := p.clock.NewTicker(p.cfg.PollInterval)
	defer t.Stop()
	for {
		p.poll(ctx, notify)
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
	}
}

// track has Watch look after instances Provision started, before its
// next listing finds them.
func (p *Provider) track(started []provider.Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, inst := range started {
		p.watched[instanceKey(inst.Zone, inst.InstanceID)] = &watchEntry{inst: inst, spot: p.cfg.Spot, since: p.gen}
	}
}

func (p *Provider) markDeleted(zone, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := instanceKey(zone, name)
	delete(p.watched, k)
	p.deleted[k] = p.gen
}

func (p *Provider) unmarkDeleted(zone, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.deleted, instanceKey(zone, name))
}

func (p *Provider) poll(ctx context.Context, notify func(provider.Notice)) {
	p.mu.Lock()
	p.gen++
	gen := p.gen
	p.mu.Unlock()
	all, err := p.listAll(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("list instances to watch them", "err", err)
		}
		return
	}
	for _, n := range p.compare(gen, all) {
		p.log.Info("instance changed outside the control plane", "node", n.Instance.NodeID, "reason", n.Reason)
		notify(n)
	}
}

// compare reads one listing against what Watch saw before.
func (p *Provider) compare(gen uint64, all []*compute.Instance) []provider.Notice {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []provider.Notice
	listed := make(map[string]bool, len(all))
	for _, in := range all {
		inst := toInstance(in)
		k := instanceKey(inst.Zone, in.Name)
		listed[k] = true
		if _, ok := p.deleted[k]; ok {
			continue
		}
		e := p.watched[k]
		switch {
		case live(in.Status):
			if e == nil {
				p.watched[k] = &watchEntry{inst: inst, spot: isSpot(in), since: gen}
			}
		case e == nil:
			// Never seen running: not news.
		case in.Status == "STOPPING" || in.Status == "PENDING_STOP":
			if e.spot && !e.interrupted {
				e.interrupted = true
				out = append(out, provider.Notice{
					Instance: e.inst,
					Kind:     provider.NoticeInterrupted,
					Reason:   "Compute Engine is reclaiming the Spot VM (it is " + in.Status + ")",
					Deadline: p.clock.Now().Add(spotNotice),
				})
			}
		case in.Status == "TERMINATED" || in.Status == "STOPPED" || in.Status == "SUSPENDED":
			delete(p.watched, k)
			out = append(out, gone(e, "the instance is "+in.Status+", stopped outside the control plane"))
		}
	}
	for k, e := range p.watched {
		if !listed[k] && e.since < gen {
			delete(p.watched, k)
			out = append(out, gone(e, "the instance no longer exists"))
		}
	}
	for k, since := range p.deleted {
		if !listed[k] && since < gen {
			delete(p.deleted, k)
		}
	}
	return out
}

func gone(e *watchEntry, reason string) provider.Notice {
	if e.interrupted {
		reason = "Compute Engine reclaimed the Spot VM: " + reason
	}
	return provider.Notice{Instance: e.inst, Kind: provider.NoticeGone, Reason: reason}
}

func isSpot(in *compute.Instance) bool {
	s := in.Scheduling
	return s != nil && (s.ProvisioningModel == "SPOT" || s.Preemptible)
}
