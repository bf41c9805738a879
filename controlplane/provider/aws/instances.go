package aws

import (
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
)

// The states of an instance, as EC2 names them.
const (
	statePending      = "pending"
	stateRunning      = "running"
	stateShuttingDown = "shutting-down"
	stateTerminated   = "terminated"
)

// existingStates are the states of an instance that still exists; an
// instance shutting down or terminated is gone.
var existingStates = []string{statePending, stateRunning, "stopping", "stopped"}

// maxFilterValues is how many values EC2 takes in one filter.
const maxFilterValues = 200

// instance reads an EC2 instance's node, pool and zone from its tags and
// placement.
func (p *Provider) instance(in ec2Instance) provider.Instance {
	return provider.Instance{
		InstanceID: in.InstanceID,
		Zone:       in.AvailabilityZone,
		NodeID:     in.tag(provider.TagNode),
		Pool:       in.tag(provider.TagPool),
	}
}

// maxPages bounds one listing. At 1000 results a page that is a million
// instances or spot requests, more than any fleet has: only an endpoint
// whose listing never ends reaches it.
const maxPages = 1000

// eachPage calls page with each page token in turn, the first nil, until
// a page answers none. A token an earlier page already answered would
// list the same pages again without end, so it stops there with an
// error, as it does after maxPages.
func eachPage(ctx context.Context, page func(ctx context.Context, token string) (next string, err error)) error {
	seen := map[string]bool{}
	token := ""
	for n := 1; ; n++ {
		next, err := page(ctx, token)
		if err != nil {
			return err
		}
		switch {
		case next == "":
			return nil
		case seen[next]:
			return fmt.Errorf("page %d answers the page token of an earlier page; the listing would never end", n)
		case n == maxPages:
			return fmt.Errorf("the listing runs past %d pages; stopped there", maxPages)
		}
		seen[next] = true
		token = next
	}
}

// describe calls fn with every instance of this cluster that the extra
// filters select, page by page.
func (p *Provider) describe(ctx context.Context, fn func(ec2Instance), filters ...filter) error {
	filters = append([]filter{{"tag:" + provider.TagCluster, []string{p.cluster}}}, filters...)
	return eachPage(ctx, func(ctx context.Context, token string) (string, error) {
		q := query{}
		q.filters(filters)
		q.set("MaxResults", "1000")
		if token != "" {
			q.set("NextToken", token)
		}
		var page describeInstancesResponse
		if err := p.ec2.call(ctx, "DescribeInstances", q, &page); err != nil {
			return "", err
		}
		for _, in := range page.instances() {
			fn(in)
		}
		return page.NextToken, nil
	})
}

func stateFilter(states ...string) filter {
	return filter{"instance-state-name", states}
}

// launched finds the instances of this cluster that exist for the nodes.
func (p *Provider) launched(ctx context.Context, nodeIDs []string) (map[string]provider.Instance, error) {
	out := map[string]provider.Instance{}
	for start := 0; start < len(nodeIDs); start += maxFilterValues {
		chunk := nodeIDs[start:min(start+maxFilterValues, len(nodeIDs))]
		err := p.describe(ctx, func(in ec2Instance) {
			inst := p.instance(in)
			out[inst.NodeID] = inst
			if in.State == statePending || in.State == stateRunning {
				p.mu.Lock()
				p.live[inst.InstanceID] = liveInstance{inst: inst, listed: true}
				p.mu.Unlock()
			}
		}, filter{"tag:" + provider.TagNode, chunk}, stateFilter(existingStates...))
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// List lists this cluster's instances that exist (pending, running,
// stopping or stopped), ordered by node id. One without a node tag was
// not launched by a control plane and is left out.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	var out []provider.Instance
	err := p.describe(ctx, func(in ec2Instance) {
		inst := p.instance(in)
		if inst.NodeID == "" {
			p.log.Warn("instance carries the cluster tag but no node tag; left out", "instance", inst.InstanceID)
			return
		}
		out = append(out, inst)
	}, stateFilter(existingStates...))
	if err != nil {
		return nil, statusOf("ec2:DescribeInstances", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, nil
}

// Terminate terminates the instance once EC2 says it is this cluster's
// node: tagged navarch-cluster with this cluster's name and navarch-node
// with inst's node id. One that is not, such as a recorded id that names
// another cluster's instance or one launched by hand, is refused and left
// running. An instance already gone, or no longer known to EC2, is fine,
// unless this provider launched it moments ago: EC2 may not know it yet.
func (p *Provider) Terminate(ctx context.Context, inst provider.Instance) error {
	// Recorded first, so that Watch never takes the instance's end for
	// one nobody asked for.
	p.mu.Lock()
	p.stopping[inst.InstanceID] = true
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		delete(p.stopping, inst.InstanceID)
		p.mu.Unlock()
	}
	gone, err := p.checkOwned(ctx, inst)
	if err != nil {
		forget()
		return err
	}
	if gone {
		p.log.Info("instance to terminate is already gone", "node", inst.NodeID, "instance", inst.InstanceID)
		return nil
	}
	q := query{}
	q.list("InstanceId", []string{inst.InstanceID})
	var out terminateInstancesResponse
	if err := p.ec2.call(ctx, "TerminateInstances", q, &out); err != nil {
		if ae, ok := apiError(err); ok && ae.code == "InvalidInstanceID.NotFound" {
			if err := p.notKnownYet(inst); err != nil {
				forget()
				return err
			}
			p.log.Info("instance to terminate is already gone", "node", inst.NodeID, "instance", inst.InstanceID)
			return nil
		}
		forget()
		return statusOf(fmt.Sprintf("ec2:TerminateInstances %s", inst.InstanceID), err)
	}
	state := stateShuttingDown
	if len(out.Instances) == 1 && out.Instances[0].CurrentState != "" {
		state = out.Instances[0].CurrentState
	}
	p.log.Info("instance terminating", "node", inst.NodeID, "instance", inst.InstanceID, "state", state)
	return nil
}

// checkOwned looks the instance up by its id and reports whether it is
// gone already: unknown to EC2, shutting down or terminated. One that
// still runs and does not carry this cluster's and the node's tags is an
// error naming it, as is one unknown to EC2 that it may not know yet
// (notKnownYet).
func (p *Provider) checkOwned(ctx context.Context, inst provider.Instance) (gone bool, err error) {
	q := query{}
	q.list("InstanceId", []string{inst.InstanceID})
	var out describeInstancesResponse
	err = p.ec2.call(ctx, "DescribeInstances", q, &out)
	if ae, ok := apiError(err); ok && ae.code == "InvalidInstanceID.NotFound" {
		return true, p.notKnownYet(inst)
	}
	if err != nil {
		return false, statusOf(fmt.Sprintf("ec2:DescribeInstances %s (before terminating it)", inst.InstanceID), err)
	}
	var found *ec2Instance
	for _, in := range out.instances() {
		if in.InstanceID == inst.InstanceID {
			found = &in
		}
	}
	if found == nil {
		return true, p.notKnownYet(inst)
	}
	if found.State == stateShuttingDown || found.State == stateTerminated {
		return true, nil
	}
	tags := map[string]string{}
	for _, t := range found.Tags {
		tags[t.Key] = t.Value
	}
	if tags[provider.TagCluster] != p.cluster || tags[provider.TagNode] != inst.NodeID {
		p.log.Warn("instance to terminate is not this cluster's node; left running", "node", inst.NodeID, "instance", inst.InstanceID,
			provider.TagCluster, tags[provider.TagCluster], provider.TagNode, tags[provider.TagNode])
		return false, status.Errorf(codes.FailedPrecondition,
			"aws: instance %s is not node %s of cluster %s (it is tagged %s=%q, %s=%q); it is not terminated",
			inst.InstanceID, inst.NodeID, p.cluster, provider.TagCluster, tags[provider.TagCluster], provider.TagNode, tags[provider.TagNode])
	}
	return false, nil
}

// notKnownYet is an error for an instance that EC2 does not know but
// that this provider launched so recently, and has not seen listed, that
// EC2 may not know it yet: its answers are eventually consistent, and
// for a while after RunInstances an instance's id can be unknown to
// DescribeInstances and TerminateInstances. Taking it for gone would
// leave it running, unrecorded; the caller tries again later.
func (p *Provider) notKnownYet(inst provider.Instance) error {
	p.mu.Lock()
	e, ok := p.live[inst.InstanceID]
	p.mu.Unlock()
	if !ok || e.listed {
		return nil
	}
	age := p.now().Sub(e.launched)
	if age >= unlistedGrace {
		return nil
	}
	return status.Errorf(codes.Unavailable,
		"aws: instance %s of node %s was launched %s ago and EC2 does not know it yet; it is not terminated yet",
		inst.InstanceID, inst.NodeID, age.Round(time.Second))
}
