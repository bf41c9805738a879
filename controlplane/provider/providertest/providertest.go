// Package providertest holds a provider for tests of the code that uses
// providers: it starts nothing, hands out instances i-1, i-2 … for the
// node ids it is given, records what it is asked, and can be told to fail
// its stops.
package providertest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/navarch/navarch/controlplane/provider"
)

// Recorder is the provider "test".
type Recorder struct {
	mu         sync.Mutex
	next       int
	spec       provider.Spec
	terminated []provider.Instance
	running    []provider.Instance
	failStop   error
	attempts   int
}

var _ provider.Provider = (*Recorder)(nil)

// Name is "test".
func (p *Recorder) Name() string { return "test" }

// Description says what it is.
func (p *Recorder) Description() string { return "records requests; starts nothing" }

// Provision hands out spec.Count instances.
func (p *Recorder) Provision(_ context.Context, spec provider.Spec) ([]provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.spec = spec
	var out []provider.Instance
	for _, id := range spec.NodeIDs {
		p.next++
		inst := provider.Instance{NodeID: id, InstanceID: fmt.Sprintf("i-%d", p.next), Pool: spec.Pool}
		out = append(out, inst)
		p.running = append(p.running, inst)
	}
	return out, nil
}

// List lists the instances it handed out and has not stopped.
func (p *Recorder) List(context.Context) ([]provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.running), nil
}

// Terminate records the stop, or fails as FailStops said.
func (p *Recorder) Terminate(_ context.Context, inst provider.Instance) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if p.failStop != nil {
		return p.failStop
	}
	p.terminated = append(p.terminated, inst)
	p.running = slices.DeleteFunc(p.running, func(i provider.Instance) bool { return i.InstanceID == inst.InstanceID })
	return nil
}

// FailStops makes Terminate fail with err; nil makes it succeed again.
func (p *Recorder) FailStops(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failStop = err
}

// Spec is the last Provision's spec.
func (p *Recorder) Spec() provider.Spec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spec
}

// Stopped lists the instances stopped so far, in order.
func (p *Recorder) Stopped() []provider.Instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.terminated)
}

// Attempts counts the Terminate calls, failed ones included.
func (p *Recorder) Attempts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts
}
