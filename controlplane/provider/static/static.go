// Package static is the "static" provider: bare-metal machines listed in
// the configuration, each with an agent installed already and a BMC that
// powers it on and off over Redfish. It chooses the machines a request
// gets (those of the request's pool that are powered off and not being
// provisioned), powers them on for Provision, shuts them down for
// Terminate, and power-cycles one whose agent has gone silent.
//
// Bare metal carries no tags, so the configuration is what makes a
// machine this control plane's: List reports every listed machine that
// is not powered off.
package static

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/apierr"
)

// Machine is one machine New is given.
type Machine struct {
	// NodeID is the node id its agent registers with.
	NodeID string
	// BMC is the BMC's https URL.
	BMC string
	// System is the Redfish path of its computer system; empty means the
	// first member of the BMC's Systems collection.
	System string
	// Pool is the pool it serves; empty means only nodes provisioned
	// directly.
	Pool string
	// Labels are the labels its agent registers with.
	Labels map[string]string
	// Credentials log in to the BMC.
	Credentials Credentials
	// HTTPClient talks to the BMC, with the TLS settings it needs; nil
	// means http.DefaultClient.
	HTTPClient *http.Client
}

// Credentials are a BMC account's.
type Credentials struct {
	Username string
	Password string
}

// Options configures New.
type Options struct {
	// Machines are the machines the provider may power on. Required.
	Machines []Machine
	// ForceOff has Terminate cut a machine's power at once instead of
	// asking its operating system to shut down first.
	ForceOff bool
	// ShutdownTimeout is how long a graceful shutdown may take before the
	// machine is forced off; 0 means 3 minutes.
	ShutdownTimeout time.Duration
	// RequestTimeout bounds each request to a BMC; 0 means 30 seconds.
	RequestTimeout time.Duration
	// PollInterval is how often a machine's power state is read while
	// waiting for it to change; 0 means 5 seconds.
	PollInterval time.Duration
	// Attempts is how many times a request a BMC answers 503 or 429 is
	// made in all; 0 means 5.
	Attempts int
	// Backoff is the wait before the next attempt after the given one
	// (1, 2, …); nil means 500 ms doubling up to 8 s.
	Backoff func(attempt int) time.Duration
	// Clock times the waits; nil means the real clock.
	Clock clockwork.Clock
	// Logger receives the provider's logs.
	Logger *slog.Logger
}

const (
	// parallel bounds the BMCs one call talks to at once.
	parallel = 16
	// forceOffWait is how long a machine may take to show Off after a
	// ForceOff.
	forceOffWait = time.Minute
	// settle is how long after a power-on Choose passes a machine over
	// though its BMC may still say Off: BMCs report a new power state some
	// seconds after they accept a reset.
	settle = 2 * time.Minute
)

var discard = slog.New(slog.DiscardHandler)

// Provider powers listed machines on and off through their BMCs.
type Provider struct {
	o        Options
	log      *slog.Logger
	machines []*machine // in the configuration's order
	bmcs     []*bmc
	byNode   map[string]*machine

	mu sync.Mutex
	// busy maps a machine's node id to the time until which Choose passes
	// it over: the zero time while a provision, terminate or power cycle
	// of it is under way.
	busy map[string]time.Time
}

type machine struct {
	Machine
	sys *system
}

var (
	_ provider.Provider    = (*Provider)(nil)
	_ provider.Chooser     = (*Provider)(nil)
	_ provider.PowerCycler = (*Provider)(nil)
)

// New checks the options and makes the provider; it talks to no BMC yet.
func New(o Options) (*Provider, error) {
	if len(o.Machines) == 0 {
		return nil, errors.New("static provider: no machines")
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 3 * time.Minute
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 5 * time.Second
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Backoff == nil {
		o.Backoff = func(attempt int) time.Duration {
			return min(500*time.Millisecond<<min(attempt-1, 10), 8*time.Second)
		}
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = discard
	}
	p := &Provider{o: o, log: o.Logger.With("provider", "static"), byNode: make(map[string]*machine), busy: make(map[string]time.Time)}
	// Machines on one BMC with the same account share its session.
	type bmcKey struct {
		host  string
		creds Credentials
		hc    *http.Client
	}
	bmcs := make(map[bmcKey]*bmc)
	for _, m := range o.Machines {
		if err := checkNodeID(m.NodeID); err != nil {
			return nil, fmt.Errorf("static provider: node id: %w", err)
		}
		if p.byNode[m.NodeID] != nil {
			return nil, fmt.Errorf("static provider: node id %q is listed twice", m.NodeID)
		}
		base, err := checkBMC(m.BMC)
		if err != nil {
			return nil, fmt.Errorf("static provider: machine %s: bmc: %w", m.NodeID, err)
		}
		base.Path = ""
		hc := cmp.Or(m.HTTPClient, http.DefaultClient)
		key := bmcKey{base.Host, m.Credentials, hc}
		if bmcs[key] == nil {
			bmcs[key] = newBMC(base, hc, m.Credentials, o)
			p.bmcs = append(p.bmcs, bmcs[key])
		}
		mm := &machine{Machine: m, sys: &system{bmc: bmcs[key], path: m.System}}
		p.machines = append(p.machines, mm)
		p.byNode[m.NodeID] = mm
	}
	return p, nil
}

// Name is "static".
func (p *Provider) Name() string { return "static" }

// Description says what the provider starts.
func (p *Provider) Description() string {
	return "bare-metal machines listed in its configuration, powered on and off through their BMCs (Redfish)"
}

// Choose names up to count machines that serve pool and are free now:
// powered off, as their BMCs say, and neither being provisioned nor
// powered on in the last minutes by this provider. A machine with a pool
// serves that pool only; one without serves only nodes provisioned
// directly (pool ""). A BMC that cannot be read is passed over, and is an
// error only when no machine is free.
func (p *Provider) Choose(ctx context.Context, count int, pool string) ([]string, error) {
	now := p.o.Clock.Now()
	var candidates []*machine
	p.mu.Lock()
	for _, m := range p.machines {
		until, busy := p.busy[m.NodeID]
		if m.Pool == pool && !(busy && (until.IsZero() || now.Before(until))) {
			candidates = append(candidates, m)
		}
	}
	p.mu.Unlock()
	var out []string
	var errs []error
	for start := 0; start < len(candidates) && len(out) < count; start += parallel {
		batch := candidates[start:min(start+parallel, len(candidates))]
		states := make([]*systemState, len(batch))
		failures := make([]error, len(batch))
		each(len(batch), func(i int) { states[i], failures[i] = batch[i].sys.read(ctx, false) })
		for i, m := range batch {
			switch {
			case failures[i] != nil:
				err := p.bmcError(m, "read power state", failures[i])
				p.log.Warn("machine passed over: its BMC could not be read", "node", m.NodeID, "err", err)
				errs = append(errs, err)
			case states[i].power == powerOff && len(out) < count:
				out = append(out, m.NodeID)
			}
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, combine(errs)
	}
	return out, nil
}

// Provision powers on the machines of spec.NodeIDs, which Choose named,
// and returns their instances once their BMCs have taken the power-on;
// their agents register as the machines boot. A machine that is powered
// on already is in use and fails. The machines' agents are installed
// already, so the user data is not used.
func (p *Provider) Provision(ctx context.Context, spec provider.Spec) ([]provider.Instance, error) {
	ms, err := p.check(spec)
	if err != nil {
		return nil, err
	}
	insts := make([]provider.Instance, len(ms))
	failures := make([]error, len(ms))
	each(len(ms), func(i int) { insts[i], failures[i] = p.powerOn(ctx, ms[i]) })
	var out []provider.Instance
	for i, err := range failures {
		if err == nil {
			out = append(out, insts[i])
		}
	}
	if len(out) == 0 {
		return nil, combine(failures)
	}
	for i, err := range failures {
		if err != nil && spec.Failed != nil {
			spec.Failed(ms[i].NodeID, err.Error())
		}
	}
	return out, nil
}

// check refuses a request the machines cannot serve, naming the field.
func (p *Provider) check(spec provider.Spec) ([]*machine, error) {
	switch {
	case spec.InstanceType != "":
		return nil, apierr.Invalid("instance_type", "the static provider's machines are what they are; it takes no instance type")
	case spec.GPUsPerNode != 0:
		return nil, apierr.Invalid("gpus_per_node", "the static provider's machines have the GPUs they have; it takes no GPU count")
	case spec.Region != "" || len(spec.Zones) > 0:
		return nil, apierr.Invalid("region", "the static provider's machines are where they are; it takes no region or zones")
	case len(spec.Request.GetSimFaults()) > 0:
		return nil, apierr.Invalid("sim_faults", "are for simulated nodes; the static provider's are real")
	case spec.Request.GetChaosInterval() != nil:
		return nil, apierr.Invalid("chaos_interval", "is for simulated nodes; the static provider's are real")
	case len(spec.NodeIDs) == 0:
		return nil, apierr.Invalid("node_ids", "name no machine")
	}
	ms := make([]*machine, 0, len(spec.NodeIDs))
	seen := make(map[string]bool)
	for _, id := range spec.NodeIDs {
		m := p.byNode[id]
		switch {
		case m == nil:
			return nil, apierr.Invalid("node_ids", "%q is not one of the static provider's machines", id)
		case seen[id]:
			return nil, apierr.Invalid("node_ids", "%q is named twice", id)
		case m.Pool != spec.Pool:
			return nil, apierr.Invalid("pool", "machine %s serves %s, not %s", id, poolName(m.Pool), poolName(spec.Pool))
		}
		seen[id] = true
		for k, v := range spec.Labels {
			if have, ok := m.Labels[k]; !ok || have != v {
				return nil, apierr.Invalid("labels["+k+"]", "machine %s is not labelled %s=%s; its agent registers with the labels set on the machine, which its labels in static_provider.machines list", id, k, v)
			}
		}
		ms = append(ms, m)
	}
	return ms, nil
}

func poolName(pool string) string {
	if pool == "" {
		return "nodes provisioned directly"
	}
	return "pool " + pool
}

// List lists every listed machine whose BMC says it is not off, by node
// id: bare metal carries no tags, so being listed is what makes a machine
// this control plane's. A BMC that cannot be read fails the list, which
// would otherwise say its machine is gone.
func (p *Provider) List(ctx context.Context) ([]provider.Instance, error) {
	states := make([]*systemState, len(p.machines))
	failures := make([]error, len(p.machines))
	each(len(p.machines), func(i int) { states[i], failures[i] = p.machines[i].sys.read(ctx, false) })
	var out []provider.Instance
	var errs []error
	for i, m := range p.machines {
		switch {
		case failures[i] != nil:
			errs = append(errs, p.bmcError(m, "read power state", failures[i]))
		case states[i].power != powerOff:
			out = append(out, provider.Instance{NodeID: m.NodeID, InstanceID: states[i].url, Pool: m.Pool})
		}
	}
	if len(errs) > 0 {
		return nil, combine(errs)
	}
	return out, nil
}

// Close logs out of the BMCs' sessions; the control plane calls it as it
// shuts down.
func (p *Provider) Close() error {
	errs := make([]error, len(p.bmcs))
	each(len(p.bmcs), func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), p.o.RequestTimeout)
		defer cancel()
		if err := p.bmcs[i].logout(ctx); err != nil {
			errs[i] = fmt.Errorf("log out of BMC %s: %w", p.bmcs[i].base.Host, err)
		}
	})
	return errors.Join(errs...)
}

// lookup finds an instance's machine by node id, else by its system URL.
func (p *Provider) lookup(inst provider.Instance) *machine {
	if m := p.byNode[inst.NodeID]; m != nil {
		return m
	}
	for _, m := range p.machines {
		if u := m.sys.url(); u != "" && u == inst.InstanceID {
			return m
		}
	}
	return nil
}

// bmcError says which step failed on which machine. A BMC that refuses
// the credentials (401) or the account's rights (403), or whose
// certificate is not trusted, is a FailedPrecondition: trying again will
// not help.
func (p *Provider) bmcError(m *machine, step string, err error) error {
	var untrusted *tls.CertificateVerificationError
	if errors.As(err, &untrusted) {
		return status.Errorf(codes.FailedPrecondition,
			"static: BMC of %s showed a certificate that is not trusted (%v); set ca_file to the CA that signed it", m.NodeID, untrusted)
	}
	switch statusOf(err) {
	case http.StatusUnauthorized:
		return status.Errorf(codes.FailedPrecondition, "static: BMC of %s refused the credentials", m.NodeID)
	case http.StatusForbidden:
		return status.Errorf(codes.FailedPrecondition,
			"static: BMC of %s refused to %s: its account needs a role with the ConfigureComponents privilege, such as Operator (%v)", m.NodeID, step, err)
	}
	return fmt.Errorf("static: machine %s: %s: %w", m.NodeID, step, err)
}

// combine joins the failures of several machines. When they share a gRPC
// code the result has it, so the operator sees why; else it is an error
// the fleet reports as Unavailable.
func combine(errs []error) error {
	var msgs []string
	var code codes.Code
	for _, err := range errs {
		if err == nil {
			continue
		}
		c := codes.Unknown
		if st, ok := status.FromError(err); ok {
			c = st.Code()
		}
		if len(msgs) > 0 && c != code {
			c = codes.Unknown
		}
		code = c
		msgs = append(msgs, status.Convert(err).Message())
	}
	msg := strings.Join(msgs, "; ")
	if code == codes.Unknown {
		return errors.New(msg)
	}
	return status.Error(code, msg)
}

// each runs f for 0…n-1, parallel at a time.
func each(n int, f func(i int)) {
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(i)
		}()
	}
	wg.Wait()
}
