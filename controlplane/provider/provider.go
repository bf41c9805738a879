// Package provider is the contract between the fleet and the things that
// start and stop nodes: the Provider interface, what a provider is asked to
// start (Spec), what it started (Instance), and the Registry the fleet
// picks providers from by name. Each provider lives in a package of its own
// below this one and depends on nothing of the control plane but this.
package provider

import (
	"context"
	"errors"
	"io"
	"sort"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Provider starts and stops nodes. The fleet picks one per ProvisionNodes
// request by name.
type Provider interface {
	// Name is the name operators give in ProvisionNodes, such as "local".
	Name() string
	// Description says in a line what the provider starts.
	Description() string
	// Provision starts spec.Count nodes and returns them at once; their
	// agents register later. A node that fails to start after Provision
	// returned is reported through spec.Failed. An error that is a gRPC
	// status reaches the operator as it is (InvalidArgument for a request
	// field the provider cannot honour); any other is reported as
	// Unavailable.
	Provision(ctx context.Context, spec Spec) ([]Instance, error)
	// Terminate stops an instance and returns once it is gone. Stopping an
	// instance that is already gone succeeds.
	Terminate(ctx context.Context, inst Instance) error
}

// Spec is what a provider is asked to start.
type Spec struct {
	// Count is the number of nodes, at least 1.
	Count int
	// GPUsPerNode is the GPUs per node; 0 means the provider's default.
	GPUsPerNode int
	// InstanceType is the provider's instance type; empty means its default.
	InstanceType string
	// Labels go on every node.
	Labels map[string]string
	// Request is the operator's request as it was received and checked,
	// for the fields only some providers take (the local provider's
	// simulated faults and chaos). A provider that cannot honour a field
	// that is set refuses the request with InvalidArgument naming it.
	Request *controlplanev1.ProvisionNodesRequest
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

// Registry holds the configured providers by name.
type Registry struct {
	byName map[string]Provider
}

// NewRegistry registers providers; a later one replaces an earlier one of
// the same name.
func NewRegistry(list ...Provider) *Registry {
	r := &Registry{byName: make(map[string]Provider)}
	for _, p := range list {
		r.byName[p.Name()] = p
	}
	return r
}

// Get returns the provider of that name.
func (r *Registry) Get(name string) (Provider, bool) {
	p, ok := r.byName[name]
	return p, ok
}

// Info describes the providers for GetFleetStatus, ordered by name.
func (r *Registry) Info() []*controlplanev1.ProviderInfo {
	out := make([]*controlplanev1.ProviderInfo, 0, len(r.byName))
	for _, p := range r.byName {
		out = append(out, &controlplanev1.ProviderInfo{Name: p.Name(), Description: p.Description()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// Names lists the providers' names in order.
func (r *Registry) Names() []string {
	var out []string
	for _, i := range r.Info() {
		out = append(out, i.GetName())
	}
	return out
}

// Close closes every provider that holds resources (an io.Closer), such as
// the local provider's agent processes.
func (r *Registry) Close() error {
	var errs []error
	for _, p := range r.byName {
		if c, ok := p.(io.Closer); ok {
			if err := c.Close(); err != nil {
				errs = append(errs, errors.New("close provider "+p.Name()+": "+err.Error()))
			}
		}
	}
	return errors.Join(errs...)
}
