package api

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/auth"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Pools is what ControlPlaneService needs of the pools.
type Pools interface {
	List() []*fleetv1.Pool
	Scale(ctx context.Context, name string, wanted uint32, reason, by string) (*fleetv1.Pool, error)
	Put(ctx context.Context, name string, spec *fleetv1.PoolSpec, by string) (*fleetv1.Pool, bool, error)
	Delete(ctx context.Context, name string) error
}

// PowerCycler power-cycles a node's machine.
type PowerCycler interface {
	PowerCycle(ctx context.Context, id, reason string, force bool) (*fleetv1.Node, error)
}

// Limits on a pool spec.
const (
	MaxPoolProviders = 8
	MaxPoolZones     = 32
	MaxPoolSchedules = 16
)

// ListPools returns every pool.
func (s *operatorService) ListPools(context.Context, *controlplanev1.ListPoolsRequest) (*controlplanev1.ListPoolsResponse, error) {
	if s.pools == nil {
		return &controlplanev1.ListPoolsResponse{}, nil
	}
	return &controlplanev1.ListPoolsResponse{Pools: s.pools.List()}, nil
}

// ScalePool sets a pool's wanted size.
func (s *operatorService) ScalePool(ctx context.Context, req *controlplanev1.ScalePoolRequest) (*controlplanev1.ScalePoolResponse, error) {
	if err := checkPoolName(req.GetName()); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.GetReason(), MaxReasonLen, false); err != nil {
		return nil, err
	}
	if s.pools == nil {
		return nil, status.Errorf(codes.NotFound, "name: no pool %q", req.GetName())
	}
	p, err := s.pools.Scale(ctx, req.GetName(), req.GetWanted(), req.GetReason(), callerName(ctx))
	if err != nil {
		return nil, err
	}
	return &controlplanev1.ScalePoolResponse{Pool: p}, nil
}

// PutPool creates or replaces a pool.
func (s *operatorService) PutPool(ctx context.Context, req *controlplanev1.PutPoolRequest) (*controlplanev1.PutPoolResponse, error) {
	if err := checkPoolName(req.GetName()); err != nil {
		return nil, err
	}
	if err := CheckPoolSpec("spec", req.GetSpec()); err != nil {
		return nil, err
	}
	if s.pools == nil {
		return nil, status.Error(codes.FailedPrecondition, "this control plane keeps no pools")
	}
	p, created, err := s.pools.Put(ctx, req.GetName(), req.GetSpec(), callerName(ctx))
	if err != nil {
		return nil, err
	}
	return &controlplanev1.PutPoolResponse{Pool: p, Created: created}, nil
}

// DeletePool forgets a pool the API made.
func (s *operatorService) DeletePool(ctx context.Context, req *controlplanev1.DeletePoolRequest) (*controlplanev1.DeletePoolResponse, error) {
	if err := checkPoolName(req.GetName()); err != nil {
		return nil, err
	}
	if s.pools == nil {
		return nil, status.Errorf(codes.NotFound, "name: no pool %q", req.GetName())
	}
	if err := s.pools.Delete(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return &controlplanev1.DeletePoolResponse{}, nil
}

// PowerCycleNode power-cycles a silent node's machine.
func (s *operatorService) PowerCycleNode(ctx context.Context, req *controlplanev1.PowerCycleNodeRequest) (*controlplanev1.PowerCycleNodeResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.GetReason(), MaxReasonLen, false); err != nil {
		return nil, err
	}
	n, err := s.power.PowerCycle(ctx, req.GetNodeId(), req.GetReason(), req.GetForce())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.PowerCycleNodeResponse{Node: n}, nil
}

// checkPoolName checks a request's pool name is there and short; the
// pools check its grammar.
func checkPoolName(name string) error {
	if name == "" {
		return invalid("name", "is required")
	}
	return checkText("name", name, MaxShortText, false)
}

// CheckPoolSpec checks the shape of a pool spec's fields: text, labels,
// durations and list lengths. The pools check what it means (providers
// offered, min within max, autoscaling rules). The configuration file's
// pools pass the same check.
func CheckPoolSpec(field string, s *fleetv1.PoolSpec) error {
	if s == nil {
		return invalid(field, "is required")
	}
	if len(s.GetProviders()) > MaxPoolProviders {
		return invalid(field+".providers", "has %d; the limit is %d", len(s.GetProviders()), MaxPoolProviders)
	}
	for i, p := range s.GetProviders() {
		if err := checkText(fmt.Sprintf("%s.providers[%d]", field, i), p, MaxShortText, false); err != nil {
			return err
		}
	}
	if err := checkText(field+".instance_type", s.GetInstanceType(), MaxShortText, false); err != nil {
		return err
	}
	if err := checkText(field+".region", s.GetRegion(), MaxShortText, false); err != nil {
		return err
	}
	if len(s.GetZones()) > MaxPoolZones {
		return invalid(field+".zones", "has %d; the limit is %d", len(s.GetZones()), MaxPoolZones)
	}
	for i, z := range s.GetZones() {
		if z == "" {
			return invalid(fmt.Sprintf("%s.zones[%d]", field, i), "is empty")
		}
		if err := checkText(fmt.Sprintf("%s.zones[%d]", field, i), z, MaxShortText, false); err != nil {
			return err
		}
	}
	if err := checkLabels(field+".labels", s.GetLabels()); err != nil {
		return err
	}
	if err := checkDuration(field+".unhealthy_grace", s.GetUnhealthyGrace(), 0, 7*24*time.Hour); err != nil {
		return err
	}
	if err := checkDuration(field+".drain_timeout", s.GetDrainTimeout(), 0, MaxDrainDeadline); err != nil {
		return err
	}
	as := s.GetAutoscaling()
	if as == nil {
		return nil
	}
	if u := as.GetUtilization(); u != nil {
		if err := checkDuration(field+".autoscaling.utilization.window", u.GetWindow(), 0, 24*time.Hour); err != nil {
			return err
		}
		if err := checkDuration(field+".autoscaling.utilization.cooldown", u.GetCooldown(), 0, 24*time.Hour); err != nil {
			return err
		}
	}
	if len(as.GetSchedules()) > MaxPoolSchedules {
		return invalid(field+".autoscaling.schedules", "has %d; the limit is %d", len(as.GetSchedules()), MaxPoolSchedules)
	}
	for i, sc := range as.GetSchedules() {
		f := fmt.Sprintf("%s.autoscaling.schedules[%d]", field, i)
		if err := checkText(f+".cron", sc.GetCron(), MaxShortText, false); err != nil {
			return err
		}
		if err := checkText(f+".time_zone", sc.GetTimeZone(), MaxShortText, false); err != nil {
			return err
		}
		if err := checkDuration(f+".duration", sc.GetDuration(), 0, 31*24*time.Hour); err != nil {
			return err
		}
	}
	if q := as.GetQueue(); q != nil {
		if err := checkText(field+".autoscaling.queue.partition", q.GetPartition(), MaxShortText, false); err != nil {
			return err
		}
	}
	return nil
}

// callerName is the caller's token name, for the decisions they make.
func callerName(ctx context.Context) string {
	if c, ok := auth.CallerFrom(ctx); ok && c.Name != "" {
		return c.Name
	}
	return "operator"
}
