package fleet

import (
	"context"

	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Heartbeat records a sign of life. It never writes to disk.
func (f *Fleet) Heartbeat(ctx context.Context, req *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error) {
	ns := f.get(req.GetNodeId())
	if ns == nil {
		return nil, apierr.NotRegistered(req.GetNodeId())
	}
	now := f.clock.Now()
	lifecycle := ns.node.Load().GetLifecycle()
	gone := lifecycle == terminated
	var samples []sample
	if !gone {
		samples = packSamples(req.GetSamples())
	}
	ns.live.mu.Lock()
	ns.live.lastHeartbeat = now
	ns.live.samples = samples
	for _, smp := range samples {
		historyOf(&ns.live.history, smp.idx).add(smp)
	}
	ns.live.mu.Unlock()
	switch {
	case gone:
		// A terminated node stays OFFLINE until its agent registers again,
		// which starts it afresh.
	case ns.reachability() != fleetv1.Reachability_REACHABILITY_ONLINE:
		f.setReachability(ns, fleetv1.Reachability_REACHABILITY_ONLINE)
	default:
		f.hub.Heartbeat(ns)
	}
	return &nodev1.HeartbeatResponse{Lifecycle: lifecycle, PendingCommands: uint32(max(ns.pending.Load(), 0))}, nil
}
