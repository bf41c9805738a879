package aws

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
)

// maxUserData is EC2's limit on user data, before base64.
const maxUserData = 16 << 10

// Provision launches one instance per node id, each with its own user
// data, trying the subnets in order and passing a node to the next subnet
// when one has no capacity for the type. A node that already has an
// instance of this cluster (an earlier Provision whose answer was lost)
// gets that instance back instead of a second one.
func (p *Provider) Provision(ctx context.Context, spec provider.Spec) ([]provider.Instance, error) {
	if spec.UserData == nil {
		return nil, status.Error(codes.FailedPrecondition,
			"aws: no bootstrap is configured, so an EC2 instance would boot without an agent; configure the control plane's bootstrap first")
	}
	subnets, err := p.check(spec)
	if err != nil {
		return nil, err
	}
	l := &launch{p: p, spec: spec, subnets: subnets, itype: cmp.Or(spec.InstanceType, p.cfg.InstanceType), full: map[string]string{}}
	if err := p.checkGPUs(ctx, l.itype, spec.GPUsPerNode); err != nil {
		return nil, err
	}
	if l.rootDevice, err = p.rootDeviceName(ctx); err != nil {
		return nil, err
	}
	earlier, err := p.launched(ctx, spec.NodeIDs)
	if err != nil {
		return nil, statusOf("ec2:DescribeInstances (earlier launches)", err)
	}
	var (
		out      []provider.Instance
		failures []nodeFailure
		stop     error // the failure that ends the launch
	)
	for _, id := range spec.NodeIDs {
		if inst, ok := earlier[id]; ok {
			p.log.Info("node has an instance already", "node", id, "instance", inst.InstanceID)
			out = append(out, inst)
			continue
		}
		if stop != nil {
			failures = append(failures, nodeFailure{id, "not launched after an earlier node failed: " + describe(stop)})
			continue
		}
		inst, err := l.node(ctx, id)
		if err != nil {
			failures = append(failures, nodeFailure{id, describe(err)})
			// EC2 would refuse the other nodes the same way; only after a
			// capacity error do they go on (skipping the full subnets).
			if kindOf(err) != kindCapacity {
				stop = err
			}
			continue
		}
		out = append(out, inst)
	}
	if len(out) == 0 {
		return nil, l.failed(stop)
	}
	for _, f := range failures {
		p.log.Warn("node failed to launch", "node", f.node, "reason", f.reason)
		if spec.Failed != nil {
			spec.Failed(f.node, f.reason)
		}
	}
	return out, nil
}

type nodeFailure struct{ node, reason string }

// check refuses what the provider cannot honour and returns the subnets to
// try, in order.
func (p *Provider) check(spec provider.Spec) ([]Subnet, error) {
	invalid := func(format string, a ...any) error {
		return status.Errorf(codes.InvalidArgument, "aws: "+format, a...)
	}
	switch {
	case len(spec.NodeIDs) == 0:
		return nil, invalid("count: at least one node is required")
	case len(spec.Request.GetSimFaults()) > 0:
		return nil, invalid("sim_faults: EC2 instances are real machines; simulated faults are for the local provider")
	case spec.Request.GetChaosInterval() != nil:
		return nil, invalid("chaos_interval: EC2 instances are real machines; chaos is for the local provider")
	case spec.Region != "" && spec.Region != p.cfg.Region:
		return nil, invalid("region: the aws provider launches in %s, not %s", p.cfg.Region, spec.Region)
	}
	if len(spec.Zones) == 0 {
		return p.cfg.Subnets, nil
	}
	var out []Subnet
	for _, z := range spec.Zones {
		for _, s := range p.cfg.Subnets {
			if s.Zone == z {
				out = append(out, s)
			}
		}
	}
	if len(out) == 0 {
		return nil, invalid("zones: no configured subnet is in %s", strings.Join(spec.Zones, ", "))
	}
	return out, nil
}

// checkGPUs refuses nodes with other GPUs than the instance type has: the
// type fixes them.
func (p *Provider) checkGPUs(ctx context.Context, itype string, want int) error {
	if want == 0 {
		return nil
	}
	p.mu.Lock()
	n, ok := p.gpus[itype]
	p.mu.Unlock()
	if !ok {
		q := query{}
		q.list("InstanceType", []string{itype})
		var out describeInstanceTypesResponse
		err := p.ec2.call(ctx, "DescribeInstanceTypes", q, &out)
		if kindOf(err) == kindRefused {
			return status.Errorf(codes.InvalidArgument, "aws: instance_type: %s", describe(err))
		}
		if err != nil {
			return statusOf("ec2:DescribeInstanceTypes", err)
		}
		if len(out.InstanceTypes) == 0 {
			return status.Errorf(codes.InvalidArgument, "aws: instance_type: EC2 offers no type %q in %s", itype, p.cfg.Region)
		}
		n = out.InstanceTypes[0].gpus()
		p.mu.Lock()
		p.gpus[itype] = n
		p.mu.Unlock()
	}
	if n != want {
		return status.Errorf(codes.InvalidArgument, "aws: gpus_per_node: %s has %d GPUs, not %d; choose another instance type", itype, n, want)
	}
	return nil
}

// rootDeviceName finds the AMI's root device, which the root volume's size
// is set on; it is "" when the AMI's size is kept.
func (p *Provider) rootDeviceName(ctx context.Context) (string, error) {
	if p.cfg.RootVolumeGB == 0 {
		return "", nil
	}
	p.mu.Lock()
	name, ok := p.rootDevice[p.cfg.AMI]
	p.mu.Unlock()
	if ok {
		return name, nil
	}
	q := query{}
	q.list("ImageId", []string{p.cfg.AMI})
	var out describeImagesResponse
	if err := p.ec2.call(ctx, "DescribeImages", q, &out); err != nil {
		return "", statusOf("ec2:DescribeImages", err)
	}
	if len(out.Images) == 0 || out.Images[0].RootDeviceName == "" {
		return "", status.Errorf(codes.FailedPrecondition, "aws: image %s: not found or has no root device", p.cfg.AMI)
	}
	name = out.Images[0].RootDeviceName
	p.mu.Lock()
	p.rootDevice[p.cfg.AMI] = name
	p.mu.Unlock()
	return name, nil
}

// launch is one Provision under way.
type launch struct {
	p          *Provider
	spec       provider.Spec
	subnets    []Subnet
	itype      string
	rootDevice string
	// full holds the subnets that had no capacity in this launch, with
	// EC2's answer; later nodes skip them.
	full map[string]string
}

// node launches one node's instance in the first subnet with capacity.
func (l *launch) node(ctx context.Context, nodeID string) (provider.Instance, error) {
	ud, err := l.spec.UserData(ctx, nodeID, l.spec.Labels)
	if err != nil {
		return provider.Instance{}, fmt.Errorf("render user data for node %s: %w", nodeID, err)
	}
	if len(ud) > maxUserData {
		return provider.Instance{}, fmt.Errorf("user data for node %s is %d bytes; EC2 takes at most %d", nodeID, len(ud), maxUserData)
	}
	var last error
	for _, sn := range l.subnets {
		if _, full := l.full[sn.ID]; full {
			continue
		}
		var out runInstancesResponse
		err := l.p.ec2.call(ctx, "RunInstances", l.input(nodeID, sn, ud), &out)
		if err == nil && len(out.Instances) == 1 {
			inst := l.p.instance(out.Instances[0])
			inst.Zone = cmp.Or(inst.Zone, sn.Zone)
			l.p.mu.Lock()
			l.p.live[inst.InstanceID] = liveInstance{inst: inst, launched: l.p.now()}
			l.p.mu.Unlock()
			l.p.log.Info("instance launched", "node", nodeID, "instance", inst.InstanceID, "subnet", sn.ID, "zone", inst.Zone, "type", l.itype)
			return inst, nil
		}
		if err == nil {
			return provider.Instance{}, fmt.Errorf("ec2:RunInstances for node %s answered %d instances, not 1", nodeID, len(out.Instances))
		}
		if kindOf(err) != kindCapacity {
			return provider.Instance{}, err
		}
		l.p.log.Info("no capacity in subnet, trying the next", "node", nodeID, "subnet", sn.ID, "zone", sn.Zone, "err", describe(err))
		l.full[sn.ID] = describe(err)
		last = err
	}
	return provider.Instance{}, &noCapacityError{itype: l.itype, subnets: l.subnets, full: l.full, last: last}
}

// input is RunInstances' parameters for one node's instance.
func (l *launch) input(nodeID string, sn Subnet, userData []byte) query {
	c := l.p.cfg
	tags := []ec2Tag{
		{provider.TagCluster, l.p.cluster},
		{provider.TagNode, nodeID},
		{provider.TagPool, l.spec.Pool},
		{"Name", nodeID},
	}
	for k, v := range c.Tags {
		tags = append(tags, ec2Tag{k, v})
	}
	slices.SortFunc(tags, func(a, b ec2Tag) int { return strings.Compare(a.Key, b.Key) })
	q := query{}
	q.set("ImageId", c.AMI)
	q.set("InstanceType", l.itype)
	q.set("MinCount", "1")
	q.set("MaxCount", "1")
	q.set("SubnetId", sn.ID)
	q.list("SecurityGroupId", c.SecurityGroups)
	q.set("UserData", base64.StdEncoding.EncodeToString(userData))
	q.set("ClientToken", l.clientToken(nodeID, sn, userData))
	for i, resource := range []string{"instance", "volume"} {
		p := "TagSpecification." + strconv.Itoa(i+1)
		q.set(p+".ResourceType", resource)
		for j, t := range tags {
			q.set(p+".Tag."+strconv.Itoa(j+1)+".Key", t.Key)
			q.set(p+".Tag."+strconv.Itoa(j+1)+".Value", t.Value)
		}
	}
	// The user data holds the node's join token: only a process on the
	// instance itself, not in a container behind it, that can make a PUT
	// request (IMDSv2, one hop) reads it.
	q.set("MetadataOptions.HttpTokens", "required")
	q.set("MetadataOptions.HttpEndpoint", "enabled")
	q.set("MetadataOptions.HttpPutResponseHopLimit", "1")
	if c.KeyName != "" {
		q.set("KeyName", c.KeyName)
	}
	switch {
	case strings.HasPrefix(c.IAMInstanceProfile, "arn:"):
		q.set("IamInstanceProfile.Arn", c.IAMInstanceProfile)
	case c.IAMInstanceProfile != "":
		q.set("IamInstanceProfile.Name", c.IAMInstanceProfile)
	}
	if l.rootDevice != "" {
		q.set("BlockDeviceMapping.1.DeviceName", l.rootDevice)
		q.set("BlockDeviceMapping.1.Ebs.VolumeSize", strconv.Itoa(c.RootVolumeGB))
		q.set("BlockDeviceMapping.1.Ebs.VolumeType", "gp3")
		q.set("BlockDeviceMapping.1.Ebs.DeleteOnTermination", "true")
	}
	if c.Spot {
		q.set("InstanceMarketOptions.MarketType", "spot")
		q.set("InstanceMarketOptions.SpotOptions.SpotInstanceType", "one-time")
		q.set("InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior", "terminate")
	}
	return q
}

// clientToken makes RunInstances idempotent for one node's launch in one
// subnet: an attempt retried after a lost answer gets the
// instance the first one started, not a second. EC2 keeps a token even
// for a launch that failed, and answers it the same way again, or refuses
// it with other parameters; so everything that differs between launches
// of the node is part of it, the user data too (each rendering has a new
// join token), and a later Provision of the node gets a fresh one. That
// later Provision finds an instance the node has already by its tags. The
// node id leads, so an operator can tell whose launch it was.
func (l *launch) clientToken(nodeID string, sn Subnet, userData []byte) string {
	c := l.p.cfg
	h := sha256.New()
	for _, s := range []string{l.p.cluster, nodeID, sn.ID, l.itype, c.AMI, strconv.FormatBool(c.Spot), string(userData)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	prefix := nodeID
	if len(prefix) > 47 {
		prefix = prefix[:47]
	}
	return prefix + "-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// failed is the error for a launch that started nothing.
func (l *launch) failed(stop error) error {
	if stop != nil {
		return statusOf("ec2:RunInstances", stop)
	}
	return status.Error(codes.ResourceExhausted, "aws: "+(&noCapacityError{itype: l.itype, subnets: l.subnets, full: l.full}).Error())
}

// noCapacityError says that no subnet could start the type.
type noCapacityError struct {
	itype   string
	subnets []Subnet
	full    map[string]string
	last    error
}

func (e *noCapacityError) Error() string {
	parts := make([]string, 0, len(e.subnets))
	for _, s := range e.subnets {
		parts = append(parts, fmt.Sprintf("%s (%s): %s", s.ID, s.Zone, e.full[s.ID]))
	}
	return fmt.Sprintf("no subnet has capacity for %s: %s", e.itype, strings.Join(parts, "; "))
}

func (e *noCapacityError) Unwrap() error { return e.last }
