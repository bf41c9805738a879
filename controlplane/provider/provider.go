// Package provider is the contract between the fleet and the things that
// start and stop nodes: the Provider interface, what a provider is asked to
// start (Spec), what it started (Instance), the optional things some
// providers can do besides (Watcher, PowerCycler), and the Registry the
// fleet picks providers from by name. Each provider lives in a package of
// its own below this one and depends on nothing of the control plane but
// this.
//
// The fleet chooses every node's id before it asks a provider for the
// node, and records the node first: a provider tags what it launches with
// the node's id (TagNode) and this control plane's cluster name
// (TagCluster), so a control plane that stopped between the two can find
// the instance again in List instead of launching a second one.
package provider

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"sort"
	"time"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Provider starts and stops nodes. The fleet picks one per ProvisionNodes
// request by name.
type Provider interface {
	// Name is the name operators give in ProvisionNodes, such as "local".
	Name() string
	// Description says in a line what the provider starts.
	Description() string
	// Provision starts one node for each of spec.NodeIDs and returns the
	// instances it started, in any order; their agents register later. A
	// node it did not return failed to start; one that fails after
	// Provision returned is reported through spec.Failed. When it started
	// some nodes and not others it returns those it started and a nil
	// error, and the fleet records the rest as failed with the reason it
	// gives through spec.Failed. An error that is a gRPC status reaches the
	// operator as it is (InvalidArgument for a request field the provider
	// cannot honour, ResourceExhausted when no zone has capacity); any
	// other is reported as Unavailable.
	Provision(ctx context.Context, spec Spec) ([]Instance, error)
	// Terminate stops an instance and returns once it is gone, or once the
	// provider has accepted to stop it. Stopping an instance that is
	// already gone succeeds.
	Terminate(ctx context.Context, inst Instance) error
	// List returns the instances the provider has for this control plane
	// (those tagged with its cluster name) that still exist, stopped ones
	// included where the provider keeps (and bills) them, terminated ones
	// left out. The fleet compares it with its records when it starts.
	List(ctx context.Context) ([]Instance, error)
}

// Watcher is a provider that tells of changes to its instances that no
// agent can report: a spot instance about to be reclaimed, an instance
// stopped outside the control plane. Watch runs until ctx ends.
type Watcher interface {
	Watch(ctx context.Context, notify func(Notice))
}

// NoticeKind says what happened to an instance.
type NoticeKind int

const (
	// NoticeInterrupted: the instance will be reclaimed at Deadline (a
	// spot interruption); the fleet drains its node.
	NoticeInterrupted NoticeKind = iota + 1
	// NoticeGone: the instance no longer runs; the fleet marks its node
	// terminated.
	NoticeGone
)

// Notice is one change a Watcher tells of.
type Notice struct {
	Instance Instance
	Kind     NoticeKind
	// Reason says what the provider saw, for the audit log.
	Reason string
	// Deadline is when an interrupted instance will be reclaimed.
	Deadline time.Time
}

// Chooser is a provider whose nodes have ids of their own, such as
// machines listed in its configuration: Choose names up to count nodes
// it can start now (fewer when fewer are free), and the fleet records and
// provisions those ids instead of new ones. It reserves nothing: a node
// chosen twice at once is refused by the fleet the second time.
type Chooser interface {
	Choose(ctx context.Context, count int, pool string) ([]string, error)
}

// PowerCycler is a provider that can power-cycle a machine whose agent has
// gone silent, such as a bare-metal machine through its BMC.
type PowerCycler interface {
	PowerCycle(ctx context.Context, inst Instance) error
}

// Env is what the control plane gives every provider it builds.
type Env struct {
	// Cluster names this control plane; providers tag what they launch
	// with it and list only what carries it.
	Cluster string
	// Logger is the provider's logger.
	Logger *slog.Logger
}

// Tags every provider puts on what it launches (as tags, labels or
// instance names, as the provider allows).
const (
	TagCluster = "navarch-cluster"
	TagNode    = "navarch-node"
	TagPool    = "navarch-pool"
)

// NewNodeID makes a node id for a new node: prefix (a pool's or a
// provider's name), a dash and eight random hex digits.
func NewNodeID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// UserDataFunc renders the cloud-init user data for one node: its
// agent's settings with a join token only that node may use, once.
type UserDataFunc func(ctx context.Context, nodeID string, labels map[string]string) ([]byte, error)

// Spec is what a provider is asked to start.
type Spec struct {
	// Count is the number of nodes, at least 1: len(NodeIDs).
	Count int
	// NodeIDs are the ids the fleet recorded for the nodes, one per node;
	// each instance is tagged with its own (TagNode).
	NodeIDs []string
	// Pool is the pool the nodes are for (TagPool); empty for nodes an
	// operator provisioned directly.
	Pool string
	// Region and Zones narrow where the nodes may start; empty means
	// where the provider's configuration says. A provider tries the zones
	// in order and moves on when one has no capacity.
	Region string
	Zones  []string
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
	// Failed reports a node that failed to start, with why.
	Failed func(nodeID, reason string)
	// UserData renders a node's cloud-init user data; providers that boot
	// machines from an image call it once per node. It is nil where the
	// control plane has no bootstrap configured, and such a provider then
	// refuses to provision with FailedPrecondition.
	UserData UserDataFunc
}

// Instance is one node a provider started.
type Instance struct {
	// NodeID is the node id the instance's agent registers with.
	NodeID string
	// InstanceID is the provider's own identifier.
	InstanceID string
	// Pool is the pool the instance was launched for, from its tags.
	Pool string
	// Zone is where it runs, where the provider has zones.
	Zone string
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
