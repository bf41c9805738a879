package controlplane

import (
	"context"
	"sort"
	"time"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Provider starts and stops nodes. The control plane picks one per
// ProvisionNodes request by name.
type Provider interface {
	// Name is the name operators give in ProvisionNodes, such as "local".
	Name() string
	// Description says in a line what the provider starts.
	Description() string
	// Provision starts spec.Count nodes and returns them at once; their
	// agents register later. A node that fails to start after Provision
	// returned is reported through spec.Failed.
	Provision(ctx context.Context, spec ProvisionSpec) ([]Instance, error)
	// Terminate stops an instance and returns once it is gone. Stopping an
	// instance that is already gone succeeds.
	Terminate(ctx context.Context, inst Instance) error
	// Instances lists the instances the provider runs now.
	Instances(ctx context.Context) ([]Instance, error)
}

// ProvisionSpec is what a provider is asked to start.
type ProvisionSpec struct {
	// Count is the number of nodes, at least 1.
	Count int
	// GPUsPerNode is the GPUs per node; 0 means the provider's default.
	GPUsPerNode int
	// InstanceType is the provider's instance type; empty means its default.
	InstanceType string
	// Labels go on every node.
	Labels map[string]string
	// SimFaults are fault specs for simulated agents.
	SimFaults []string
	// ChaosInterval is the mean time between random faults on each simulated
	// node; 0 means none.
	ChaosInterval time.Duration
	// Failed reports a node that failed to start after Provision returned.
	Failed func(nodeID, reason string)
}

// Instance is one node a provider started.
type Instance struct {
	// NodeID is the node id the instance's agent registers with.
	NodeID string
	// InstanceID is the provider's own identifier.
	InstanceID string
}

// providers holds the configured providers by name.
type providers struct {
	byName map[string]Provider
}

func newProviders(list []Provider) *providers {
	p := &providers{byName: make(map[string]Provider)}
	for _, pr := range list {
		p.byName[pr.Name()] = pr
	}
	return p
}

func (p *providers) get(name string) (Provider, bool) {
	pr, ok := p.byName[name]
	return pr, ok
}

func (p *providers) info() []*controlplanev1.ProviderInfo {
	out := make([]*controlplanev1.ProviderInfo, 0, len(p.byName))
	for _, pr := range p.byName {
		out = append(out, &controlplanev1.ProviderInfo{Name: pr.Name(), Description: pr.Description()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

func (p *providers) names() []string {
	var out []string
	for _, i := range p.info() {
		out = append(out, i.GetName())
	}
	return out
}
