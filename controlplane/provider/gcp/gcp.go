// Package gcp is the "gcp" provider: it starts nodes as Compute Engine
// instances through Google's Go client for the Compute Engine REST API,
// one instance per node and named after it, with the node's cloud-init
// user data in its metadata. A zone with no capacity moves a launch on to
// the next zone; rate-limited calls are retried with bounded backoff. It
// stops an instance only once it has read its labels and found this
// control plane's cluster and the node on them, lists those labelled with
// the cluster, and watches them for ones that stopped or were reclaimed.
// Its calls follow no redirect, and each call, answer and wait is bounded.
package gcp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
)

// Options configures New.
type Options struct {
	// Config is the provider's section; New checks it as if enabled.
	Config Config
	// Cluster is this control plane's cluster name (provider.Env.Cluster).
	// Required.
	Cluster string
	// ClientOptions reach the Compute Engine API: credentials, an
	// endpoint, an HTTP client.
	ClientOptions []option.ClientOption
	// Clock paces retries, operation polls and Watch; nil means the real
	// clock.
	Clock clockwork.Clock
	// Backoff bounds the retries of rate-limited and failed calls.
	Backoff Backoff
	// OperationPoll is the pause before asking again about an operation
	// that the API's wait returned unfinished; 0 means 1s.
	OperationPoll time.Duration
	// OperationTimeout bounds the wait for one operation to finish; 0
	// means 10 minutes.
	OperationTimeout time.Duration
	// RequestTimeout bounds each call to the API, reading its answer
	// included; 0 means 3 minutes, longer than the 2 minutes an
	// operation's wait may hold a call open.
	RequestTimeout time.Duration
	// Parallel caps the instances one Provision launches at once; 0
	// means 8.
	Parallel int
	// Logger receives the provider's logs.
	Logger *slog.Logger
}

// Backoff bounds the retries of one call. Zero fields take defaults.
type Backoff struct {
	// Attempts is the most tries of one call; 0 means 6.
	Attempts int
	// Base is the first pause, doubled after each try up to Max; 0 means
	// 1s and 30s.
	Base, Max time.Duration
}

// Provider starts nodes as Compute Engine instances.
type Provider struct {
	o       Options
	cfg     Config
	svc     *compute.Service
	clock   clockwork.Clock
	log     *slog.Logger
	cluster string // the navarch-cluster label's value

	mu sync.Mutex
	// gen counts Watch's listings; watched and deleted entries remember
	// the one under way when they were made, so a listing that began
	// before an instance started, or before it was deleted, is not read
	// as news about it.
	gen     uint64
	watched map[string]*watchEntry // instances seen running, by zone/name
	deleted map[string]uint64      // instances Terminate deleted, by zone/name
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Watcher  = (*Provider)(nil)
)

// New checks the options and makes the Compute Engine client; it finds
// the credentials now and fails when there are none. Its errors name the
// configuration key they concern.
func New(o Options) (*Provider, error) {
	if err := o.Config.check(true); err != nil {
		return nil, err
	}
	if o.Cluster == "" {
		return nil, errors.New("cluster: required, to label the instances with")
	}
	o.Backoff.Attempts = cmp.Or(o.Backoff.Attempts, 6)
	o.Backoff.Base = cmp.Or(o.Backoff.Base, time.Second)
	o.Backoff.Max = cmp.Or(o.Backoff.Max, 30*time.Second)
	o.OperationPoll = cmp.Or(o.OperationPoll, time.Second)
	o.OperationTimeout = cmp.Or(o.OperationTimeout, 10*time.Minute)
	o.RequestTimeout = cmp.Or(o.RequestTimeout, 3*time.Minute)
	o.Parallel = cmp.Or(o.Parallel, 8)
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	hc, err := httpClient(context.Background(), o)
	switch {
	case err != nil && o.Config.CredentialsFile != "":
		return nil, fmt.Errorf("credentials_file: %w", err)
	case err != nil:
		return nil, fmt.Errorf("credentials_file: not set, and no Application Default Credentials: %w", err)
	}
	svc, err := compute.NewService(context.Background(), append(slices.Clip(o.ClientOptions), option.WithHTTPClient(hc))...)
	if err != nil {
		return nil, fmt.Errorf("make the Compute Engine client: %w", err)
	}
	return &Provider{
		o:       o,
		cfg:     o.Config,
		svc:     svc,
		clock:   o.Clock,
		log:     o.Logger.With("provider", "gcp"),
		cluster: labelValue(o.Cluster),
		watched: make(map[string]*watchEntry),
		deleted: make(map[string]uint64),
	}, nil
}

// Name is "gcp".
func (p *Provider) Name() string { return "gcp" }

// Description says what the provider starts.
func (p *Provider) Description() string {
	return fmt.Sprintf("Compute Engine instances in project %s (%s)", p.cfg.Project, strings.Join(p.cfg.Zones, ", "))
}

// launchPlan is what every node of one Provision shares.
type launchPlan struct {
	spec        provider.Spec
	zones       []string
	machineType string
	accels      []Accelerator
}

// Provision launches one instance per node id, each named after its
// node, Parallel at a time. Each node tries the zones in order; a zone
// that had no capacity for one node is skipped by the others.
func (p *Provider) Provision(ctx context.Context, spec provider.Spec) ([]provider.Instance, error) {
	plan, err := p.plan(spec)
	if err != nil {
		return nil, err
	}
	type result struct {
		inst provider.Instance
		err  error
	}
	results := make([]result, len(spec.NodeIDs))
	full := &fullZones{reason: make(map[string]string)}
	sem := make(chan struct{}, p.o.Parallel)
	var wg sync.WaitGroup
	for i, nodeID := range spec.NodeIDs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i].err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			results[i].inst, results[i].err = p.launch(ctx, plan, nodeID, full)
		}()
	}
	wg.Wait()
	var started []provider.Instance
	var errs []error
	for _, r := range results {
		if r.err == nil {
			started = append(started, r.inst)
		} else {
			errs = append(errs, r.err)
		}
	}
	if len(started) == 0 {
		return nil, launchError(errs)
	}
	p.track(started)
	for i, r := range results {
		if r.err != nil {
			p.log.Warn("instance not launched", "node", spec.NodeIDs[i], "err", r.err)
			if spec.Failed != nil {
				spec.Failed(spec.NodeIDs[i], r.err.Error())
			}
		}
	}
	return started, nil
}

// plan checks the spec and settles what its nodes share.
func (p *Provider) plan(spec provider.Spec) (launchPlan, error) {
	if spec.UserData == nil {
		return launchPlan{}, status.Error(codes.FailedPrecondition, "gcp: the control plane has no bootstrap configured, so a launched instance could not join")
	}
	if len(spec.NodeIDs) == 0 {
		return launchPlan{}, status.Error(codes.InvalidArgument, "count: no node to start")
	}
	if len(spec.Request.GetSimFaults()) > 0 {
		return launchPlan{}, status.Error(codes.InvalidArgument, "sim_faults: the gcp provider starts real machines, which take no simulated faults")
	}
	if spec.Request.GetChaosInterval() != nil {
		return launchPlan{}, status.Error(codes.InvalidArgument, "chaos_interval: the gcp provider starts real machines, which take no simulated chaos")
	}
	for _, id := range spec.NodeIDs {
		if !nameRE.MatchString(id) {
			return launchPlan{}, status.Errorf(codes.InvalidArgument, "gcp: node id %q is not a Compute Engine instance name (a lowercase letter, then up to 62 of a-z, 0-9 and -, not ending in -)", id)
		}
	}
	machineType := cmp.Or(spec.InstanceType, p.cfg.MachineType)
	if !nameRE.MatchString(machineType) {
		return launchPlan{}, status.Errorf(codes.InvalidArgument, "instance_type: %q is not a Compute Engine machine type", machineType)
	}
	zones, err := p.zones(spec)
	if err != nil {
		return launchPlan{}, err
	}
	accels := p.cfg.Accelerators
	// Attached GPUs of one type take their count from the request; a
	// machine type with GPUs built in decides its own.
	if spec.GPUsPerNode > 0 && len(accels) == 1 {
		accels = []Accelerator{{Type: accels[0].Type, Count: int64(spec.GPUsPerNode)}}
	}
	return launchPlan{spec: spec, zones: zones, machineType: machineType, accels: accels}, nil
}

// zones are the configured zones, narrowed and reordered by the spec's
// zones and narrowed to its region.
func (p *Provider) zones(spec provider.Spec) ([]string, error) {
	zones := p.cfg.Zones
	if len(spec.Zones) > 0 {
		zones = nil
		for _, z := range spec.Zones {
			if !slices.Contains(p.cfg.Zones, z) {
				return nil, status.Errorf(codes.InvalidArgument, "zones: %q is not one of the gcp provider's zones (%s)", z, strings.Join(p.cfg.Zones, ", "))
			}
			if !slices.Contains(zones, z) {
				zones = append(zones, z)
			}
		}
	}
	if spec.Region == "" {
		return zones, nil
	}
	var inRegion []string
	for _, z := range zones {
		if region(z) == spec.Region {
			inRegion = append(inRegion, z)
		}
	}
	if len(inRegion) == 0 {
		return nil, status.Errorf(codes.InvalidArgument, "region: none of the zones %s is in %q", strings.Join(zones, ", "), spec.Region)
	}
	return inRegion, nil
}

// region is a zone's region: us-central1 for us-central1-a.
func region(zone string) string {
	if i := strings.LastIndex(zone, "-"); i > 0 {
		return zone[:i]
	}
	return zone
}

// fullZones are the zones one Provision found without capacity, with
// what Compute Engine said.
type fullZones struct {
	mu     sync.Mutex
	reason map[string]string
}

func (f *fullZones) get(zone string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.reason[zone]
	return r, ok
}

func (f *fullZones) set(zone, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reason[zone] = reason
}

// noCapacityError is a node that no zone had capacity for.
type noCapacityError struct {
	nodeID  string
	reasons []string // one per zone, in order
}

func (e *noCapacityError) Error() string {
	return fmt.Sprintf("no zone had capacity for %s: %s", e.nodeID, strings.Join(e.reasons, "; "))
}

// launch renders one node's user data and inserts its instance, zone
// after zone until one has capacity.
func (p *Provider) launch(ctx context.Context, plan launchPlan, nodeID string, full *fullZones) (provider.Instance, error) {
	userData, err := plan.spec.UserData(ctx, nodeID, plan.spec.Labels)
	if err != nil {
		return provider.Instance{}, fmt.Errorf("render user data for %s: %w", nodeID, err)
	}
	noCap := &noCapacityError{nodeID: nodeID}
	for _, zone := range plan.zones {
		if reason, ok := full.get(zone); ok {
			noCap.reasons = append(noCap.reasons, zone+": "+reason)
			continue
		}
		err := p.insert(ctx, zone, p.instance(plan, nodeID, zone, string(userData)))
		if err == nil {
			p.log.Info("instance launched", "node", nodeID, "zone", zone, "machine_type", plan.machineType)
			return provider.Instance{NodeID: nodeID, InstanceID: nodeID, Pool: plan.spec.Pool, Zone: zone}, nil
		}
		if classify(err) != kindCapacity {
			return provider.Instance{}, err
		}
		p.log.Info("zone has no capacity; trying the next", "node", nodeID, "zone", zone, "err", err)
		full.set(zone, err.Error())
		noCap.reasons = append(noCap.reasons, zone+": "+err.Error())
	}
	return provider.Instance{}, noCap
}

// launchError is Provision's error when no instance started: refused
// credentials as they are, ResourceExhausted when every node found every
// zone full, else the first other failure.
func launchError(errs []error) error {
	var other error
	for _, err := range errs {
		if status.Code(err) == codes.FailedPrecondition {
			return err
		}
		var noCap *noCapacityError
		if other == nil && !errors.As(err, &noCap) {
			other = err
		}
	}
	if other != nil {
		return other
	}
	return status.Errorf(codes.ResourceExhausted, "gcp: %v", errs[0])
}
