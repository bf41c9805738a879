// Package providertest holds a provider for tests of the code that uses
// providers: it starts nothing, hands out instances named test-1, test-2 …,
// records what it is asked, and can be told to fail its stops.
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
	for range spec.Count {
		p.next++
		out = append(out, provider.Instance{NodeID: fmt.Sprintf("test-%d", p.next), InstanceID: fmt.Sprintf("i-%d", p.next)})
	}
	return out, nil
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
