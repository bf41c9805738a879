package gcp

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/navarch/navarch/controlplane/provider"
)

// userDataKey is the metadata key cloud-init's GCE datasource reads the
// user data from.
const userDataKey = "user-data"

// instance is the insert request's body for one node in one zone.
func (p *Provider) instance(plan launchPlan, nodeID, zone, userData string) *compute.Instance {
	c := p.cfg
	labels := p.labels(nodeID, plan.spec.Pool)
	// GPU machines cannot live-migrate: they stop for host maintenance.
	// A standard one restarts after it; a Spot VM must not, and is
	// deleted when reclaimed, so nothing is left to pay for.
	restart := !c.Spot
	sched := &compute.Scheduling{OnHostMaintenance: "TERMINATE", AutomaticRestart: &restart}
	if c.Spot {
		sched.ProvisioningModel = "SPOT"
		sched.InstanceTerminationAction = "DELETE"
	}
	nic := &compute.NetworkInterface{Network: p.network(), Subnetwork: p.subnetwork(zone), NicType: c.NICType}
	if c.ExternalIP {
		nic.AccessConfigs = []*compute.AccessConfig{{Name: "External NAT", Type: "ONE_TO_ONE_NAT"}}
	}
	inst := &compute.Instance{
		Name:        nodeID,
		Description: "Navarch node " + nodeID,
		MachineType: p.zonal(zone, "machineTypes", plan.machineType),
		Labels:      labels,
		Metadata: &compute.Metadata{Items: []*compute.MetadataItems{
			{Key: userDataKey, Value: &userData},
		}},
		Disks: []*compute.AttachedDisk{{
			Boot:       true,
			AutoDelete: true,
			Type:       "PERSISTENT",
			InitializeParams: &compute.AttachedDiskInitializeParams{
				SourceImage: c.Image,
				DiskSizeGb:  c.DiskSizeGB,
				DiskType:    p.zonal(zone, "diskTypes", c.DiskType),
				Labels:      labels,
			},
		}},
		NetworkInterfaces: []*compute.NetworkInterface{nic},
		Scheduling:        sched,
	}
	for _, a := range plan.accels {
		inst.GuestAccelerators = append(inst.GuestAccelerators, &compute.AcceleratorConfig{
			AcceleratorType:  p.zonal(zone, "acceleratorTypes", a.Type),
			AcceleratorCount: a.Count,
		})
	}
	if c.ServiceAccount != "" {
		scopes := c.Scopes
		if len(scopes) == 0 {
			scopes = []string{compute.CloudPlatformScope}
		}
		inst.ServiceAccounts = []*compute.ServiceAccount{{Email: c.ServiceAccount, Scopes: scopes}}
	}
	return inst
}

// zonal is a zonal resource's partial URL.
func (p *Provider) zonal(zone, kind, name string) string {
	return fmt.Sprintf("projects/%s/zones/%s/%s/%s", p.cfg.Project, zone, kind, name)
}

// network is the configured network's URL; the default network when
// neither a network nor a subnetwork is configured.
func (p *Provider) network() string {
	switch {
	case strings.Contains(p.cfg.Network, "/"):
		return p.cfg.Network
	case p.cfg.Network != "":
		return fmt.Sprintf("projects/%s/global/networks/%s", p.cfg.Project, p.cfg.Network)
	case p.cfg.Subnetwork == "":
		return fmt.Sprintf("projects/%s/global/networks/default", p.cfg.Project)
	}
	return ""
}

// subnetwork is the configured subnetwork's URL in the zone's region.
func (p *Provider) subnetwork(zone string) string {
	if p.cfg.Subnetwork == "" || strings.Contains(p.cfg.Subnetwork, "/") {
		return p.cfg.Subnetwork
	}
	return fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", p.cfg.Project, region(zone), p.cfg.Subnetwork)
}

// labels are the configured labels and the provider's own.
func (p *Provider) labels(nodeID, pool string) map[string]string {
	l := maps.Clone(p.cfg.Labels)
	if l == nil {
		l = make(map[string]string)
	}
	l[provider.TagCluster] = p.cluster
	l[provider.TagNode] = nodeID
	if pool != "" {
		l[provider.TagPool] = labelValue(pool)
	}
	return l
}

// labelValue makes s a label value: lowercase, every character but a-z,
// 0-9, _ and - replaced by -, at most 63 of them.
func labelValue(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
		if b.Len() == 63 {
			break
		}
	}
	return b.String()
}

// requestID is the request id of one call (verb) about one instance in
// one zone: a UUID made from them, so the call retried is the same
// request and Compute Engine does it once. A node that moves on to
// another zone makes a new request there.
func requestID(verb, zone, name string) string {
	sum := sha256.Sum256([]byte("navarch/" + verb + "/" + zone + "/" + name))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8: a UUID of the maker's own making
	b[8] = b[8]&0x3f | 0x80 // the RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// toInstance reads back what a listed instance is for.
func toInstance(in *compute.Instance) provider.Instance {
	nodeID := in.Labels[provider.TagNode]
	if nodeID == "" {
		nodeID = in.Name
	}
	return provider.Instance{
		NodeID:     nodeID,
		InstanceID: in.Name,
		Pool:       in.Labels[provider.TagPool],
		Zone:       lastSegment(in.Zone),
	}
}

// lastSegment is a resource URL's last path segment: the zone of
// https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a.
func lastSegment(url string) string {
	return url[strings.LastIndex(url, "/")+1:]
}
