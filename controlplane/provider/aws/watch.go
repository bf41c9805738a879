package aws

import (
	"context"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
)

// spotNoticeLead is how long EC2 gives a spot instance between the
// interruption notice and its end.
const spotNoticeLead = 2 * time.Minute

// unlistedGrace is how long a launched instance may be missing from
// DescribeInstances before it counts as gone: EC2's answers are eventually
// consistent, and a new instance may not be listed at once. Once listed,
// an instance stays listed for about an hour after it ends.
const unlistedGrace = 10 * time.Minute

// liveInstance is an instance known to have been pending or running.
type liveInstance struct {
	inst provider.Instance
	// listed: DescribeInstances has listed it.
	listed bool
	// launched is when Provision started it, for one not yet listed.
	launched time.Time
}

// interruptionCodes are the spot request status codes that tell of an
// interruption: the marked-for-* codes come with the two-minute notice;
// the others say the interruption is under way, for an instance whose
// notice fell between two polls.
var interruptionCodes = codeSet(
	"marked-for-termination", "marked-for-stop", "marked-for-hibernation",
	"instance-terminated-by-price", "instance-terminated-no-capacity",
	"instance-terminated-capacity-oversubscribed", "instance-terminated-launch-group-constraint",
	"instance-terminated-by-experiment",
	"instance-stopped-by-price", "instance-stopped-no-capacity",
	"instance-stopped-capacity-oversubscribed", "instance-stopped-by-experiment",
)

// Watch polls EC2 every poll_interval until ctx ends. It tells once of
// each spot instance of this cluster that EC2 marked for interruption
// (NoticeInterrupted, with the end of its two-minute notice) and once of
// each instance that was pending or running and is now shutting down,
// terminated or no longer listed without Terminate having been asked
// (NoticeGone).
//
// Interruptions are read from the spot requests (DescribeSpotInstanceRequests):
// their status is where the EC2 API reports a notice, at the time the
// instance itself sees it in its metadata. Scheduled events
// (DescribeInstanceStatus) report maintenance, never spot interruptions.
func (p *Provider) Watch(ctx context.Context, notify func(provider.Notice)) {
	w := &watcher{p: p, notify: notify, interrupted: map[string]bool{}}
	t := time.NewTicker(p.cfg.PollInterval.Duration)
	defer t.Stop()
	for {
		w.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type watcher struct {
	p      *Provider
	notify func(provider.Notice)
	// interrupted are the instances already reported interrupted.
	interrupted map[string]bool
}

// poll looks once. A failed listing changes nothing: an instance missing
// from a partial answer is not gone.
func (w *watcher) poll(ctx context.Context) {
	p := w.p
	listed := map[string]ec2Instance{}
	if err := p.describe(ctx, func(in ec2Instance) { listed[in.InstanceID] = in }); err != nil {
		if ctx.Err() == nil {
			p.log.Warn("watch: list instances", "err", describe(err))
		}
		return
	}
	var spot []string
	p.mu.Lock()
	for id, in := range listed {
		if in.State == statePending || in.State == stateRunning {
			p.live[id] = liveInstance{inst: p.instance(in), listed: true}
			if in.InstanceLifecycle == "spot" && !w.interrupted[id] {
				spot = append(spot, id)
			}
		}
	}
	var gone []provider.Notice
	for id, e := range p.live {
		in, ok := listed[id]
		reason := "instance is no longer listed by EC2"
		if !ok && !e.listed && p.now().Sub(e.launched) < unlistedGrace {
			continue
		}
		if ok {
			if in.State != stateShuttingDown && in.State != stateTerminated {
				continue
			}
			reason = "instance is " + in.State
			if in.StateReason != "" {
				reason += ": " + in.StateReason
			}
		}
		delete(p.live, id)
		delete(w.interrupted, id)
		if p.stopping[id] {
			delete(p.stopping, id)
			continue
		}
		gone = append(gone, provider.Notice{Instance: e.inst, Kind: provider.NoticeGone, Reason: reason})
	}
	// What Terminate stopped before it was seen live needs no more
	// remembering once it is gone.
	for id := range p.stopping {
		if in, ok := listed[id]; !ok || in.State == stateTerminated {
			if _, live := p.live[id]; !live {
				delete(p.stopping, id)
			}
		}
	}
	p.mu.Unlock()
	for _, n := range gone {
		p.log.Warn("instance gone without being terminated", "node", n.Instance.NodeID, "instance", n.Instance.InstanceID, "reason", n.Reason)
		w.notify(n)
	}
	w.spot(ctx, spot)
}

// spot reports the spot instances among ids that EC2 marked for
// interruption.
func (w *watcher) spot(ctx context.Context, ids []string) {
	p := w.p
	for start := 0; start < len(ids); start += maxFilterValues {
		ids := filter{"instance-id", ids[start:min(start+maxFilterValues, len(ids))]}
		err := eachPage(ctx, func(ctx context.Context, token string) (string, error) {
			q := query{}
			q.filters([]filter{ids})
			q.set("MaxResults", "1000")
			if token != "" {
				q.set("NextToken", token)
			}
			var page describeSpotRequestsResponse
			if err := p.ec2.call(ctx, "DescribeSpotInstanceRequests", q, &page); err != nil {
				return "", err
			}
			for _, r := range page.Requests {
				w.spotRequest(r)
			}
			return page.NextToken, nil
		})
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn("watch: list spot requests", "err", describe(err))
			}
			return
		}
	}
}

func (w *watcher) spotRequest(r spotRequest) {
	p := w.p
	id := r.InstanceID
	if !interruptionCodes[r.Status.Code] || w.interrupted[id] {
		return
	}
	p.mu.Lock()
	e, ok := p.live[id]
	p.mu.Unlock()
	inst := e.inst
	if !ok {
		return
	}
	w.interrupted[id] = true
	// The status changes when the notice is given; EC2 gives no deadline
	// of its own.
	noticed, ok := r.updated()
	if !ok {
		noticed = p.now()
	}
	n := provider.Notice{
		Instance: inst,
		Kind:     provider.NoticeInterrupted,
		Reason:   "spot interruption: " + r.Status.Code + ": " + r.Status.Message,
		Deadline: noticed.Add(spotNoticeLead),
	}
	p.log.Warn("spot instance interrupted", "node", inst.NodeID, "instance", id, "deadline", n.Deadline, "reason", n.Reason)
	w.notify(n)
}
