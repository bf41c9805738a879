package aws

import (
	"context"
	"fmt"
	"sort"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/navarch/navarch/controlplane/provider"
)

// existingStates are the states of an instance that still exists; an
// instance shutting down or terminated is gone.
var existingStates = []string{"pending", "running", "stopping", "stopped"}

// maxFilterValues is how many values EC2 takes in one filter.
const maxFilterValues = 200

// instance reads an EC2 instance's node, pool and zone from its tags and
// placement.
func (p *Provider) instance(in types.Instance) provider.Instance {
	inst := provider.Instance{InstanceID: awssdk.ToString(in.InstanceId)}
	if in.Placement != nil {
		inst.Zone = awssdk.ToString(in.Placement.AvailabilityZone)
	}
	for _, t := range in.Tags {
		switch awssdk.ToString(t.Key) {
		case provider.TagNode:
			inst.NodeID = awssdk.ToString(t.Value)
		case provider.TagPool:
			inst.Pool = awssdk.ToString(t.Value)
		}
	}
	return inst
}

// describe calls fn with every instance of this cluster that the extra
// filters select, page by page.
func (p *Provider) describe(ctx context.Context, fn func(types.Instance), filters ...types.Filter) error {
	filters = append([]types.Filter{{Name: awssdk.String("tag:" + provider.TagCluster), Values: []string{p.cluster}}}, filters...)
	pages := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{
		Filters:    filters,
		MaxResults: awssdk.Int32(1000),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, r := range page.Reservations {
			for _, in := range r.Instances {
				fn(in)
			}
		}
	}
	return nil
}

func stateFilter(states ...string) types.Filter {
	return types.Filter{Name: awssdk.String("instance-state-name"), Values: states}
}

// launched finds the instances of this cluster that exist for the nodes.
func (p *Provider) launched(ctx context.Context, nodeIDs []string) (map[string]provider.Instance, error) {
	out := map[string]provider.Instance{}
	for start := 0; start < len(nodeIDs); start += maxFilterValues {
		chunk := nodeIDs[start:min(start+maxFilterValues, len(nodeIDs))]
		err := p.describe(ctx, func(in types.Instance) {
			inst := p.instance(in)
			out[inst.NodeID] = inst
			if in.State != nil && (in.State.Name == types.InstanceStateNamePending || in.State.Name == types.InstanceStateNameRunning) {
				p.mu.Lock()
				p.live[inst.InstanceID] = liveInstance{inst: inst, listed: true}
				p.mu.Unlock()
			}
		}, types.Filter{Name: awssdk.String("tag:" + provider.TagNode), Values: chunk}, stateFilter(existingStates...))
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
	err := p.describe(ctx, func(in types.Instance) {
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

// Terminate terminates the instance and returns once EC2 has accepted to.
// An instance that is already gone, or no longer known to EC2, is fine.
func (p *Provider) Terminate(ctx context.Context, inst provider.Instance) error {
	// Recorded first, so that Watch never takes the instance's end for
	// one nobody asked for.
	p.mu.Lock()
	p.stopping[inst.InstanceID] = true
	p.mu.Unlock()
	out, err := p.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{inst.InstanceID}})
	if err != nil {
		if ae, ok := apiError(err); ok && ae.ErrorCode() == "InvalidInstanceID.NotFound" {
			p.log.Info("instance to terminate is already gone", "node", inst.NodeID, "instance", inst.InstanceID)
			return nil
		}
		p.mu.Lock()
		delete(p.stopping, inst.InstanceID)
		p.mu.Unlock()
		return statusOf(fmt.Sprintf("ec2:TerminateInstances %s", inst.InstanceID), err)
	}
	state := "shutting-down"
	if len(out.TerminatingInstances) == 1 && out.TerminatingInstances[0].CurrentState != nil {
		state = string(out.TerminatingInstances[0].CurrentState.Name)
	}
	p.log.Info("instance terminating", "node", inst.NodeID, "instance", inst.InstanceID, "state", state)
	return nil
}
