// Package lambda is the "lambda" provider: it starts, stops and lists
// Lambda Cloud on-demand GPU instances through Lambda's public REST API,
// with a client of its own, which bounds each request in time and size
// and follows no redirect, so that the account-wide API key goes to the
// configured endpoint alone. Each node is one launch of one instance in
// the first configured region with capacity for the instance type, booted
// with that node's cloud-init user data and tagged with the cluster, node
// and pool; List and Watch find this control plane's instances by those
// tags, and Terminate stops only an instance that carries them.
package lambda

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
)

// Options configures New.
type Options struct {
	// Endpoint is the API's base URL, https. Required.
	Endpoint string
	// APIKey is sent as a bearer token. Required; never logged.
	APIKey string
	// Cluster is the control plane's cluster name, put on every instance
	// as a tag. Required.
	Cluster string
	// Regions are tried in order; empty means every region with capacity.
	Regions []string
	// InstanceType is the default instance type. Required.
	InstanceType string
	// SSHKeyNames and FileSystemNames go into every launch.
	SSHKeyNames     []string
	FileSystemNames []string
	// PollInterval is Watch's period; 0 means a minute.
	PollInterval time.Duration
	// HTTPClient's transport sends the requests; nil means Go's default.
	// Its timeout and redirects are not used: the provider bounds each
	// request by RequestTimeout and follows no redirect.
	HTTPClient *http.Client
	// RequestTimeout bounds one request, its answer included; 0 means a
	// minute.
	RequestTimeout time.Duration
	// Backoff says how long to wait before retry attempt (0 for the
	// first), given what the API's Retry-After asked (0 if nothing); nil
	// means DefaultBackoff.
	Backoff func(attempt int, retryAfter time.Duration) time.Duration
	// Logger receives the provider's logs.
	Logger *slog.Logger
}

// Provider launches Lambda Cloud instances.
type Provider struct {
	o   Options
	c   *client
	log *slog.Logger

	mu sync.Mutex
	// watched are the instances Watch has seen active, by id.
	watched map[string]provider.Instance
	// stopping are the instances Terminate was asked to stop, which Watch
	// must not report as gone.
	stopping map[string]bool
	// reported are the instances Watch reported gone, each once.
	reported map[string]bool
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Watcher  = (*Provider)(nil)
)

// New checks the options.
func New(o Options) (*Provider, error) {
	if err := checkEndpoint(o.Endpoint); err != nil {
		return nil, fmt.Errorf("lambda provider: endpoint: %w", err)
	}
	if o.APIKey == "" {
		return nil, errors.New("lambda provider: no API key")
	}
	if o.Cluster == "" {
		return nil, errors.New("lambda provider: no cluster name to tag instances with")
	}
	if o.InstanceType == "" {
		return nil, errors.New("lambda provider: no instance type")
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Minute
	}
	hc := &http.Client{Timeout: cmp.Or(o.RequestTimeout, requestTimeout), CheckRedirect: noRedirect}
	if o.HTTPClient != nil {
		hc.Transport = o.HTTPClient.Transport
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Provider{
		o:        o,
		c:        &client{base: strings.TrimRight(o.Endpoint, "/"), key: o.APIKey, http: hc, backoff: o.Backoff},
		log:      o.Logger.With("provider", "lambda"),
		watched:  make(map[string]provider.Instance),
		stopping: make(map[string]bool),
		reported: make(map[string]bool),
	}, nil
}

// Name is "lambda".
func (p *Provider) Name() string { return "lambda" }

// Description says what the provider starts.
func (p *Provider) Description() string {
	return "Lambda Cloud on-demand GPU instances (" + p.o.InstanceType + ")"
}

// maxUserData is the most user data Lambda takes with a launch.
const maxUserData = 1 << 20

// maxName is the longest instance name Lambda takes.
const maxName = 64

// errNoCapacity is a launch that found no region with capacity.
type errNoCapacity struct {
	instanceType string
	regions      []string
}

func (e *errNoCapacity) Error() string {
	return fmt.Sprintf("no capacity for %s in %s", e.instanceType, strings.Join(e.regions, ", "))
}

// Provision launches one instance per node id, each with its own user
// data. It stops at the first node that fails: the rest would fail the
// same way, and launches are limited to a few a minute.
func (p *Provider) Provision(ctx context.Context, spec provider.Spec) ([]provider.Instance, error) {
	if spec.UserData == nil {
		return nil, status.Error(codes.FailedPrecondition, "lambda: no bootstrap is configured, so a launched instance could not join the fleet")
	}
	if err := refuseSimulation(spec); err != nil {
		return nil, err
	}
	candidates, err := p.candidateRegions(spec)
	if err != nil {
		return nil, err
	}
	typ := cmp.Or(spec.InstanceType, p.o.InstanceType)
	types, err := p.c.instanceTypes(ctx)
	if err != nil {
		return nil, p.grpcError("list instance types", err)
	}
	it, ok := types[typ]
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "instance_type: Lambda Cloud offers no instance type %q", typ)
	}
	if gpus := it.InstanceType.Specs.GPUs; spec.GPUsPerNode != 0 && gpus != spec.GPUsPerNode {
		return nil, status.Errorf(codes.InvalidArgument, "gpus_per_node: %s has %d GPUs, not %d; choose another instance type", typ, gpus, spec.GPUsPerNode)
	}
	open := withCapacity(candidates, it.RegionsWithCapacity)
	if len(open) == 0 {
		tried := candidates
		if len(tried) == 0 {
			tried = []string{"any region"}
		}
		return nil, p.grpcError("launch", &errNoCapacity{instanceType: typ, regions: tried})
	}
	var out []provider.Instance
	for i, nodeID := range spec.NodeIDs {
		inst, err := p.launch(ctx, spec, typ, nodeID, &open)
		if err != nil {
			if len(out) == 0 {
				return nil, p.grpcError("launch "+nodeID, err)
			}
			p.log.Warn("launch failed; the rest of the request is not launched", "node", nodeID, "err", err)
			if spec.Failed != nil {
				spec.Failed(nodeID, "lambda launch: "+err.Error())
				for _, id := range spec.NodeIDs[i+1:] {
					spec.Failed(id, "not launched: the launch of "+nodeID+" before it failed: "+err.Error())
				}
			}
			break
		}
		out = append(out, inst)
	}
	return out, nil
}

func refuseSimulation(spec provider.Spec) error {
	if len(spec.Request.GetSimFaults()) > 0 {
		return status.Error(codes.InvalidArgument, "sim_faults: the lambda provider starts real machines; simulated faults are for the local provider")
	}
	if spec.Request.GetChaosInterval() != nil {
		return status.Error(codes.InvalidArgument, "chaos_interval: the lambda provider starts real machines; chaos is for the local provider")
	}
	return nil
}

// candidateRegions is the configured regions narrowed by the request:
// Lambda has no zones, so Zones name regions too, tried in their order.
// Empty means any region with capacity.
func (p *Provider) candidateRegions(spec provider.Spec) ([]string, error) {
	out := p.o.Regions
	if len(spec.Zones) > 0 {
		for _, z := range spec.Zones {
			if len(p.o.Regions) > 0 && !slices.Contains(p.o.Regions, z) {
				return nil, status.Errorf(codes.InvalidArgument, "zones: %q is not among the lambda provider's regions (%s)", z, strings.Join(p.o.Regions, ", "))
			}
		}
		out = spec.Zones
	}
	if spec.Region == "" {
		return slices.Clone(out), nil
	}
	if len(out) > 0 && !slices.Contains(out, spec.Region) {
		return nil, status.Errorf(codes.InvalidArgument, "region: %q is not among the regions the lambda provider may use (%s)", spec.Region, strings.Join(out, ", "))
	}
	return []string{spec.Region}, nil
}

// withCapacity keeps the candidates the API says have capacity, in order;
// no candidates means every region with capacity, by name.
func withCapacity(candidates []string, available []apiRegion) []string {
	var names []string
	for _, r := range available {
		names = append(names, r.Name)
	}
	if len(candidates) == 0 {
		sort.Strings(names)
		return names
	}
	var out []string
	for _, c := range candidates {
		if slices.Contains(names, c) {
			out = append(out, c)
		}
	}
	return out
}

// launch starts nodeID's instance in the first region of open that has
// room, dropping from open each region that answers it has none.
func (p *Provider) launch(ctx context.Context, spec provider.Spec, typ, nodeID string, open *[]string) (provider.Instance, error) {
	userData, err := spec.UserData(ctx, nodeID, spec.Labels)
	if err != nil {
		return provider.Instance{}, fmt.Errorf("render user data: %w", err)
	}
	if len(userData) > maxUserData {
		return provider.Instance{}, fmt.Errorf("user data is %d bytes; Lambda Cloud takes at most %d", len(userData), maxUserData)
	}
	tags := []apiTag{{Key: provider.TagCluster, Value: p.o.Cluster}, {Key: provider.TagNode, Value: nodeID}}
	if spec.Pool != "" {
		tags = append(tags, apiTag{Key: provider.TagPool, Value: spec.Pool})
	}
	name := nodeID
	if len(name) > maxName {
		// The tags keep the whole id; the name is for people.
		name = strings.ToValidUTF8(name[:maxName], "")
	}
	var tried []string
	for len(*open) > 0 {
		region := (*open)[0]
		id, err := p.c.launch(ctx, launchRequest{
			RegionName:       region,
			InstanceTypeName: typ,
			SSHKeyNames:      nonNil(p.o.SSHKeyNames),
			FileSystemNames:  nonNil(p.o.FileSystemNames),
			Quantity:         1,
			Name:             name,
			UserData:         string(userData),
			Tags:             tags,
		})
		if err == nil {
			p.log.Info("instance launched", "node", nodeID, "instance", id, "region", region, "type", typ)
			return provider.Instance{NodeID: nodeID, InstanceID: id, Pool: spec.Pool, Zone: region}, nil
		}
		ae, ok := asAPIError(err)
		if !ok || (ae.Code != codeInsufficientCap && ae.Code != codeFileSystemElsewhere) {
			return provider.Instance{}, err
		}
		p.log.Info("region cannot take the instance; trying the next", "node", nodeID, "region", region, "code", ae.Code)
		tried = append(tried, region)
		*open = (*open)[1:]
	}
	return provider.Instance{}, &errNoCapacity{instanceType: typ, regions: tried}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// grpcError turns what the API said into what the operator is told: a
// refused key or a launch that cannot succeed as configured is
// FailedPrecondition, no capacity or quota ResourceExhausted, a rate
// limit that outlasted the retries Unavailable; anything else is left for
// the fleet to report as Unavailable.
func (p *Provider) grpcError(step string, err error) error {
	var nc *errNoCapacity
	if errors.As(err, &nc) {
		return status.Error(codes.ResourceExhausted, "lambda: "+nc.Error())
	}
	ae, ok := asAPIError(err)
	switch {
	case !ok:
		return fmt.Errorf("lambda: %s: %w", step, err)
	case ae.keyRefused():
		return status.Error(codes.FailedPrecondition, "lambda: API key refused: "+ae.Error())
	case ae.Status == http.StatusTooManyRequests:
		return status.Error(codes.Unavailable, "lambda: rate limited, retries spent: "+ae.Error())
	case ae.Code == codeQuotaExceeded:
		return status.Error(codes.ResourceExhausted, "lambda: quota exceeded: "+ae.Error())
	case ae.Status >= 400 && ae.Status < 500:
		return status.Errorf(codes.FailedPrecondition, "lambda: %s refused: %s", step, ae.Error())
	}
	return fmt.Errorf("lambda: %s: %w", step, err)
}

// Terminate stops an instance once the API shows it is this cluster's
// node: tagged navarch-cluster with this cluster's name, and
// navarch-node (or, without that tag, named) with inst's node id. The API
// key reaches every instance of the account, so one that is not, such as
// a recorded id that names another cluster's instance or one launched by
// hand, is refused and left running. One the API no longer knows, or
// knows as terminated, is already gone.
func (p *Provider) Terminate(ctx context.Context, inst provider.Instance) error {
	if inst.InstanceID == "" {
		return nil
	}
	p.mu.Lock()
	p.stopping[inst.InstanceID] = true
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		delete(p.stopping, inst.InstanceID)
		p.mu.Unlock()
	}
	cur, err := p.c.instance(ctx, inst.InstanceID)
	if ae, ok := asAPIError(err); ok && ae.notFound() {
		return nil
	}
	if err != nil {
		forget()
		return p.grpcError("look up instance "+inst.InstanceID+" before terminating it", err)
	}
	if gone(cur.Status) {
		return nil
	}
	if !p.ours(cur) || toInstance(cur).NodeID != inst.NodeID {
		forget()
		p.log.Warn("instance to terminate is not this cluster's node; left running", "node", inst.NodeID, "instance", inst.InstanceID,
			provider.TagCluster, cur.tag(provider.TagCluster), provider.TagNode, cur.tag(provider.TagNode), "name", cur.Name)
		return status.Errorf(codes.FailedPrecondition,
			"lambda: instance %s is not node %s of cluster %s (it is tagged %s=%q, %s=%q, named %q); it is not terminated",
			inst.InstanceID, inst.NodeID, p.o.Cluster, provider.TagCluster, cur.tag(provider.TagCluster), provider.TagNode, cur.tag(provider.TagNode), cur.Name)
	}
	err = p.c.terminate(ctx, inst.InstanceID)
	if err == nil {
		p.log.Info("instance terminated", "node", inst.NodeID, "instance", inst.InstanceID)
		return nil
	}
	if ae, ok := asAPIError(err); ok && ae.notFound() {
		return nil
	}
	// Lambda may refuse to stop an instance that stopped in the meantime;
	// ask how it stands.
	cur, gerr := p.c.instance(ctx, inst.InstanceID)
	if gerr == nil && gone(cur.Status) {
		return nil
	}
	if ae, ok := asAPIError(gerr); ok && ae.notFound() {
		return nil
	}
	forget()
	return p.grpcError("terminate "+inst.InstanceID, err)
}

// gone reports whether an instance status is one of stopping for good.
func gone(status string) bool {
	switch status {
	case "terminated", "terminating", "preempted":
		return true
	}
	return false
}

// List lists this cluster's instances that are not terminated, by node id.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	all, err := p.c.instances(ctx)
	if err != nil {
		return nil, p.grpcError("list instances", err)
	}
	var out []provider.Instance
	for _, i := range all {
		if p.ours(i) && !gone(i.Status) {
			out = append(out, toInstance(i))
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].NodeID < out[b].NodeID })
	return out, nil
}

func (p *Provider) ours(i apiInstance) bool { return i.tag(provider.TagCluster) == p.o.Cluster }

func toInstance(i apiInstance) provider.Instance {
	return provider.Instance{
		NodeID:     cmp.Or(i.tag(provider.TagNode), i.Name),
		InstanceID: i.ID,
		Pool:       i.tag(provider.TagPool),
		Zone:       i.Region.Name,
	}
}
