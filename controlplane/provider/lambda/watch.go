package lambda

import (
	"context"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
)

// Watch lists the instances every poll interval and reports, once each,
// an instance of this cluster that was active and is now gone, stopping,
// preempted or unhealthy without Terminate having been asked to stop it:
// Lambda tells of no such change, and an unhealthy instance's agent may
// never report again. Only instances seen active are watched, since a
// launch may take a while to show in the list.
func (p *Provider) Watch(ctx context.Context, notify func(provider.Notice)) {
	t := time.NewTicker(p.o.PollInterval)
	defer t.Stop()
	for {
		p.poll(ctx, notify)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Provider) poll(ctx context.Context, notify func(provider.Notice)) {
	all, err := p.c.instances(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("watch: list instances", "err", err)
		}
		return
	}
	listed := make(map[string]apiInstance)
	for _, i := range all {
		if p.ours(i) {
			listed[i.ID] = i
		}
	}
	type suspect struct {
		inst   provider.Instance
		reason string
	}
	var suspects []suspect
	p.mu.Lock()
	for id, i := range listed {
		if i.Status == "active" && !p.reported[id] {
			p.watched[id] = toInstance(i)
		}
	}
	for id, inst := range p.watched {
		if reason := goneReason(id, listed[id]); reason != "" {
			suspects = append(suspects, suspect{inst, reason})
		}
	}
	p.mu.Unlock()

	var notices []provider.Notice
	for _, s := range suspects {
		if _, ok := listed[s.inst.InstanceID]; !ok && !p.confirmGone(ctx, s.inst.InstanceID) {
			continue
		}
		p.mu.Lock()
		delete(p.watched, s.inst.InstanceID)
		if !p.stopping[s.inst.InstanceID] {
			p.reported[s.inst.InstanceID] = true
			notices = append(notices, provider.Notice{Instance: s.inst, Kind: provider.NoticeGone, Reason: s.reason})
		}
		p.mu.Unlock()
	}

	// Forget what the API has forgotten: it cannot come back.
	p.mu.Lock()
	for id := range p.stopping {
		if _, ok := listed[id]; !ok && !p.watchedID(id) {
			delete(p.stopping, id)
		}
	}
	for id := range p.reported {
		if _, ok := listed[id]; !ok {
			delete(p.reported, id)
		}
	}
	p.mu.Unlock()
	for _, n := range notices {
		p.log.Warn("instance gone", "node", n.Instance.NodeID, "instance", n.Instance.InstanceID, "reason", n.Reason)
		notify(n)
	}
}

// goneReason says why a watched instance, as listed (the zero value when
// not), no longer runs, or "" while it does.
func goneReason(id string, cur apiInstance) string {
	switch {
	case cur.ID == "":
		return "instance " + id + " is no longer listed by Lambda Cloud"
	case gone(cur.Status):
		return "instance " + id + " is " + cur.Status + " at Lambda Cloud"
	case cur.Status == "unhealthy":
		return "Lambda Cloud reports instance " + id + " unhealthy"
	}
	return ""
}

// confirmGone asks for an instance the list left out, so that a list
// that missed it once reports nothing.
func (p *Provider) confirmGone(ctx context.Context, id string) bool {
	cur, err := p.c.instance(ctx, id)
	if err == nil {
		return gone(cur.Status)
	}
	ae, ok := asAPIError(err)
	return ok && ae.notFound()
}

func (p *Provider) watchedID(id string) bool {
	_, ok := p.watched[id]
	return ok
}
