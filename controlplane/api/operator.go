package api

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/controlplane/watch"
	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/version"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// Operators is what ControlPlaneService needs of the fleet.
type Operators interface {
	Status() *controlplanev1.GetFleetStatusResponse
	List(nf fleet.NodeFilter, pageSize int, after string) ([]*fleetv1.Node, string, int, uint64)
	NodeDetail(ctx context.Context, id string, eventLimit int) (*controlplanev1.GetNodeResponse, error)
	Has(id string) bool
	Events(ctx context.Context, nodeID string, minHealth fleetv1.HealthStatus, text string, limit int) ([]*fleetv1.HealthEvent, error)
	Cordon(ctx context.Context, id, reason string) (*fleetv1.Node, error)
	Uncordon(ctx context.Context, id, reason string) (*fleetv1.Node, error)
	Release(ctx context.Context, id, reason string) (*fleetv1.Node, error)
	Drain(ctx context.Context, id, reason string, deadline time.Time, force bool) (*fleetv1.Node, *fleetv1.Command, error)
	Terminate(ctx context.Context, id, reason string, force bool, drainTimeout time.Duration) (*fleetv1.Node, error)
	Diagnose(ctx context.Context, id string) (*fleetv1.Command, error)
	ResetGPU(ctx context.Context, id string, gpu uint32, reason string, force bool) (*fleetv1.Command, error)
	Reboot(ctx context.Context, id, reason string, force bool) (*fleetv1.Command, error)
	Provision(ctx context.Context, req *controlplanev1.ProvisionNodesRequest) ([]*fleetv1.Node, error)
	Watch(ctx context.Context, since uint64, stream watch.Stream) error
	Audit(ctx context.Context, nodeID string, limit int) ([]*store.AuditEntry, error)
}

// ControlPlaneOptions are what ControlPlaneService is served with.
type ControlPlaneOptions struct {
	Fleet  Operators
	Tokens Tokens
	// Clock is the fleet's, for checking deadlines; nil means the real one.
	Clock clockwork.Clock
	// WatchStreamsPerToken caps the WatchFleet streams one token holds
	// open at once; 0 means no cap.
	WatchStreamsPerToken int
	// Identities resets agents' identities; nil where agents have none.
	Identities Resetter
	// Pools keeps the pools; nil where there are none.
	Pools Pools
	// Power power-cycles machines. Required.
	Power PowerCycler
	// Election shows the election among the control planes sharing the
	// fleet; nil for a lone control plane.
	Election Election
}

// Election is the election among control planes, as GetFleetStatus shows
// it.
type Election interface {
	ControlPlanes(ctx context.Context) (*controlplanev1.ControlPlanes, error)
}

// RegisterControlPlaneService registers ControlPlaneService on s.
func RegisterControlPlaneService(s grpc.ServiceRegistrar, o ControlPlaneOptions) {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	controlplanev1.RegisterControlPlaneServiceServer(s, &operatorService{
		fleet: o.Fleet, tokens: o.Tokens, clock: o.Clock, identities: o.Identities, pools: o.Pools, power: o.Power, election: o.Election,
		watches: &perToken{limit: o.WatchStreamsPerToken, open: map[string]int{}},
	})
}

// operatorService is ControlPlaneService.
type operatorService struct {
	controlplanev1.UnimplementedControlPlaneServiceServer
	fleet   Operators
	tokens  Tokens
	clock   clockwork.Clock
	watches *perToken
	// identities is nil on a plaintext control plane.
	identities Resetter
	pools      Pools
	power      PowerCycler
	election   Election
}

// perToken counts what each token holds open, up to a limit.
type perToken struct {
	limit int
	mu    sync.Mutex
	open  map[string]int
}

// acquire takes a slot for token, or says why there is none; release
// gives it back.
func (p *perToken) acquire(token string) (release func(), err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limit > 0 && p.open[token] >= p.limit {
		return nil, status.Errorf(codes.ResourceExhausted, "token %q holds %d WatchFleet streams, the most one token may; close one", token, p.open[token])
	}
	p.open[token]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.open[token]--; p.open[token] <= 0 {
			delete(p.open, token)
		}
	}, nil
}

func (s *operatorService) GetFleetStatus(ctx context.Context, _ *controlplanev1.GetFleetStatusRequest) (*controlplanev1.GetFleetStatusResponse, error) {
	resp := s.fleet.Status()
	if c, ok := auth.CallerFrom(ctx); ok {
		resp.Caller = &controlplanev1.Caller{Name: c.Name, Role: c.Role}
	}
	resp.Version = version.String()
	if s.election != nil {
		// The members and the last failover are read from etcd.
		cps, err := s.election.ControlPlanes(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "the control planes' election could not be read: %v", err)
		}
		resp.ControlPlanes = cps
	}
	resp.Limits = &controlplanev1.OperatorLimits{
		MaxDrainDeadline:             durationpb.New(MaxDrainDeadline),
		DefaultDrainDeadline:         durationpb.New(fleet.DefaultDrainDeadline),
		MinTerminateDrainTimeout:     durationpb.New(minTerminateDrain),
		DefaultTerminateDrainTimeout: durationpb.New(fleet.DefaultTerminateDrain),
		MaxProvisionCount:            MaxProvision,
		MaxReasonBytes:               MaxReasonLen,
		MaxGpusPerNode:               MaxGPUs,
	}
	return resp, nil
}

func (s *operatorService) ListNodes(_ context.Context, req *controlplanev1.ListNodesRequest) (*controlplanev1.ListNodesResponse, error) {
	for i, l := range req.GetLifecycle() {
		if err := checkEnum(fmt.Sprintf("lifecycle[%d]", i), l, fleetv1.LifecycleState_name, false); err != nil {
			return nil, err
		}
	}
	for i, h := range req.GetHealth() {
		if err := checkEnum(fmt.Sprintf("health[%d]", i), h, fleetv1.HealthStatus_name, false); err != nil {
			return nil, err
		}
	}
	for i, r := range req.GetReachability() {
		if err := checkEnum(fmt.Sprintf("reachability[%d]", i), r, fleetv1.Reachability_name, false); err != nil {
			return nil, err
		}
	}
	if err := checkText("label_selector", req.GetLabelSelector(), MaxFilterLen, false); err != nil {
		return nil, err
	}
	terms, err := fleet.ParseLabelSelector(req.GetLabelSelector())
	if err != nil {
		return nil, invalid("label_selector", "%v", err)
	}
	if err := checkText("text", req.GetText(), MaxShortText, false); err != nil {
		return nil, err
	}
	if req.GetPageSize() > MaxPageSize {
		return nil, invalid("page_size", "%d is above %d", req.GetPageSize(), MaxPageSize)
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultPageSize
	}
	after, err := pagePosition(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	nodes, next, total, rev := s.fleet.List(fleet.NodeFilter{
		Lifecycle:    req.GetLifecycle(),
		Health:       req.GetHealth(),
		Reachability: req.GetReachability(),
		Labels:       terms,
		Text:         req.GetText(),
		HeldBack:     req.GetHeldBack(),
	}, size, after)
	return &controlplanev1.ListNodesResponse{Nodes: nodes, NextPageToken: pageToken(next), TotalSize: uint32(total), Revision: rev}, nil
}

// pageTokenPrefix starts every ListNodes page token: it says what the token
// is and the version of its format, so anything else is refused rather than
// read as a position.
const pageTokenPrefix = "nodes.v1:"

// pageToken is the opaque token for the page that starts after the node id
// after; "" (no next page) for "".
func pageToken(after string) string {
	if after == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + after))
}

// pagePosition reads a page token back to the node id its page starts
// after; "" for the first page.
func pagePosition(token string) (string, error) {
	if token == "" {
		return "", nil
	}
	if err := checkText("page_token", token, MaxFilterLen, false); err != nil {
		return "", err
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	after, ok := strings.CutPrefix(string(b), pageTokenPrefix)
	if err != nil || !ok || checkNodeID("page_token", after) != nil {
		return "", invalid("page_token", "not a token from a previous ListNodes response")
	}
	return after, nil
}

func (s *operatorService) GetNode(ctx context.Context, req *controlplanev1.GetNodeRequest) (*controlplanev1.GetNodeResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if req.GetEventLimit() > maxEventLimit {
		return nil, invalid("event_limit", "%d is above %d", req.GetEventLimit(), maxEventLimit)
	}
	limit := int(req.GetEventLimit())
	if limit == 0 {
		limit = defaultEventLimit
	}
	return s.fleet.NodeDetail(ctx, req.GetNodeId(), limit)
}

func (s *operatorService) ListEvents(ctx context.Context, req *controlplanev1.ListEventsRequest) (*controlplanev1.ListEventsResponse, error) {
	if req.GetNodeId() != "" {
		if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
			return nil, err
		}
	}
	if err := checkEnum("min_health", req.GetMinHealth(), fleetv1.HealthStatus_name, true); err != nil {
		return nil, err
	}
	if req.GetLimit() > maxEventLimit {
		return nil, invalid("limit", "%d is above %d", req.GetLimit(), maxEventLimit)
	}
	if err := checkText("text", req.GetText(), MaxShortText, false); err != nil {
		return nil, err
	}
	evs, err := s.fleet.Events(ctx, req.GetNodeId(), req.GetMinHealth(), req.GetText(), int(req.GetLimit()))
	if err != nil {
		return nil, err
	}
	return &controlplanev1.ListEventsResponse{Events: evs}, nil
}

func checkReason(id, reason string) error {
	if err := checkNodeID("node_id", id); err != nil {
		return err
	}
	return checkText("reason", reason, MaxReasonLen, false)
}

func (s *operatorService) CordonNode(ctx context.Context, req *controlplanev1.CordonNodeRequest) (*controlplanev1.CordonNodeResponse, error) {
	if err := checkReason(req.GetNodeId(), req.GetReason()); err != nil {
		return nil, err
	}
	n, err := s.fleet.Cordon(ctx, req.GetNodeId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.CordonNodeResponse{Node: n}, nil
}

func (s *operatorService) UncordonNode(ctx context.Context, req *controlplanev1.UncordonNodeRequest) (*controlplanev1.UncordonNodeResponse, error) {
	if err := checkReason(req.GetNodeId(), req.GetReason()); err != nil {
		return nil, err
	}
	n, err := s.fleet.Uncordon(ctx, req.GetNodeId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.UncordonNodeResponse{Node: n}, nil
}

func (s *operatorService) ReleaseNode(ctx context.Context, req *controlplanev1.ReleaseNodeRequest) (*controlplanev1.ReleaseNodeResponse, error) {
	if err := checkReason(req.GetNodeId(), req.GetReason()); err != nil {
		return nil, err
	}
	n, err := s.fleet.Release(ctx, req.GetNodeId(), req.GetReason())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.ReleaseNodeResponse{Node: n}, nil
}

func (s *operatorService) DrainNode(ctx context.Context, req *controlplanev1.DrainNodeRequest) (*controlplanev1.DrainNodeResponse, error) {
	if err := checkReason(req.GetNodeId(), req.GetReason()); err != nil {
		return nil, err
	}
	var deadline time.Time
	if req.GetDeadline() != nil {
		if err := checkTimestamp("deadline", req.GetDeadline()); err != nil {
			return nil, err
		}
		deadline = req.GetDeadline().AsTime()
		now := s.clock.Now()
		if !deadline.After(now) {
			return nil, invalid("deadline", "%s is not in the future", deadline.Format(time.RFC3339))
		}
		if deadline.Sub(now) > MaxDrainDeadline {
			return nil, invalid("deadline", "%s is more than %s away", deadline.Format(time.RFC3339), MaxDrainDeadline)
		}
	}
	n, cmd, err := s.fleet.Drain(ctx, req.GetNodeId(), req.GetReason(), deadline, req.GetForce())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.DrainNodeResponse{Node: n, Command: cmd}, nil
}

func (s *operatorService) TerminateNode(ctx context.Context, req *controlplanev1.TerminateNodeRequest) (*controlplanev1.TerminateNodeResponse, error) {
	if err := checkReason(req.GetNodeId(), req.GetReason()); err != nil {
		return nil, err
	}
	if err := checkDuration("drain_timeout", req.GetDrainTimeout(), minTerminateDrain, MaxDrainDeadline); err != nil {
		return nil, err
	}
	n, err := s.fleet.Terminate(ctx, req.GetNodeId(), req.GetReason(), req.GetForce(), req.GetDrainTimeout().AsDuration())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.TerminateNodeResponse{Node: n}, nil
}

func (s *operatorService) RunDiagnostics(ctx context.Context, req *controlplanev1.RunDiagnosticsRequest) (*controlplanev1.RunDiagnosticsResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	cmd, err := s.fleet.Diagnose(ctx, req.GetNodeId())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.RunDiagnosticsResponse{Command: cmd}, nil
}

func (s *operatorService) ProvisionNodes(ctx context.Context, req *controlplanev1.ProvisionNodesRequest) (*controlplanev1.ProvisionNodesResponse, error) {
	if req.GetProvider() == "" {
		return nil, invalid("provider", "is required")
	}
	if err := checkText("provider", req.GetProvider(), MaxShortText, false); err != nil {
		return nil, err
	}
	if req.GetCount() < 1 || req.GetCount() > MaxProvision {
		return nil, invalid("count", "%d is not within 1–%d", req.GetCount(), MaxProvision)
	}
	if req.GetGpusPerNode() > MaxGPUs {
		return nil, invalid("gpus_per_node", "%d is above %d", req.GetGpusPerNode(), MaxGPUs)
	}
	if err := checkText("instance_type", req.GetInstanceType(), MaxShortText, false); err != nil {
		return nil, err
	}
	if err := checkLabels("labels", req.GetLabels()); err != nil {
		return nil, err
	}
	if len(req.GetSimFaults()) > MaxSimFaults {
		return nil, invalid("sim_faults", "has %d specs; the limit is %d", len(req.GetSimFaults()), MaxSimFaults)
	}
	for i, spec := range req.GetSimFaults() {
		if _, err := faultspec.Parse(spec); err != nil {
			return nil, invalid(fmt.Sprintf("sim_faults[%d]", i), "%v", err)
		}
	}
	if err := checkDuration("chaos_interval", req.GetChaosInterval(), time.Second, 24*time.Hour); err != nil {
		return nil, err
	}
	nodes, err := s.fleet.Provision(ctx, req)
	if err != nil {
		return nil, err
	}
	return &controlplanev1.ProvisionNodesResponse{Nodes: nodes}, nil
}

// WatchFleet streams a snapshot (or the changes since a revision), then
// every change.
func (s *operatorService) WatchFleet(req *controlplanev1.WatchFleetRequest, stream controlplanev1.ControlPlaneService_WatchFleetServer) error {
	caller, _ := auth.CallerFrom(stream.Context())
	release, err := s.watches.acquire(caller.Name)
	if err != nil {
		return err
	}
	defer release()
	return s.fleet.Watch(stream.Context(), req.GetSinceRevision(), stream)
}
