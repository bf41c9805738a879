package gcp

import (
	"cmp"
	"context"
	"fmt"
	"sort"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// Terminate deletes an instance once it has read it, in its zone or
// else in whichever of the configured zones has it, and found it to be
// this cluster's instance of this node: labelled with the cluster and the
// node id. An instance that is already gone is fine; one that is not ours
// is refused and left as it is. It returns once Compute Engine has
// accepted the deletion.
func (p *Provider) Terminate(ctx context.Context, inst provider.Instance) error {
	name := cmp.Or(inst.InstanceID, inst.NodeID)
	if name == "" {
		return status.Error(codes.InvalidArgument, "gcp: the instance to stop has neither an instance id nor a node id")
	}
	zones := p.cfg.Zones
	if inst.Zone != "" {
		zones = []string{inst.Zone}
	}
	found, zone, err := p.find(ctx, name, zones)
	if err != nil || found == nil {
		return err
	}
	if err := p.checkOwned(found, zone, cmp.Or(inst.NodeID, name)); err != nil {
		return err
	}
	p.markDeleted(zone, name)
	step := fmt.Sprintf("delete instance %s in %s", name, zone)
	id := requestID("delete", zone, name)
	err = p.retry(ctx, step, func() error {
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

// find reads the instance in the first of the zones that has it; nil
// when none has it.
func (p *Provider) find(ctx context.Context, name string, zones []string) (*compute.Instance, string, error) {
	for _, zone := range zones {
		var in *compute.Instance
		err := p.retry(ctx, fmt.Sprintf("get instance %s in %s", name, zone), func() error {
			var err error
			in, err = p.svc.Instances.Get(p.cfg.Project, zone, name).Context(ctx).Do()
			return err
		})
		switch {
		case err == nil:
			return in, zone, nil
		case classify(err) != kindNotFound:
			return nil, "", err
		}
	}
	return nil, "", nil
}

// checkOwned refuses an instance whose labels do not name this cluster
// and the node: a name is no proof, since anything in the project may
// hold it.
func (p *Provider) checkOwned(in *compute.Instance, zone, nodeID string) error {
	cluster, node := in.Labels[provider.TagCluster], in.Labels[provider.TagNode]
	if cluster == p.cluster && node == labelValue(nodeID) {
		return nil
	}
	return status.Errorf(codes.FailedPrecondition,
		"gcp: instance %s in %s is not this cluster's instance of node %s (its labels are %s=%q, %s=%q; want %q, %q); refusing to delete it",
		in.Name, zone, nodeID, provider.TagCluster, cluster, provider.TagNode, node, p.cluster, labelValue(nodeID))
}
