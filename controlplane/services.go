package controlplane

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/version"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// nodeService is NodeService: every request is checked field by field, then
// handed to the fleet.
type nodeService struct {
	nodev1.UnimplementedNodeServiceServer
	fleet *Fleet
}

func (s *nodeService) RegisterNode(ctx context.Context, req *nodev1.RegisterNodeRequest) (*nodev1.RegisterNodeResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	for _, t := range []struct{ field, v string }{
		{"hostname", req.GetHostname()}, {"driver_version", req.GetDriverVersion()}, {"cuda_version", req.GetCudaVersion()},
		{"agent_version", req.GetAgentVersion()}, {"instance_id", req.GetInstanceId()}, {"boot_id", req.GetBootId()},
	} {
		if err := checkText(t.field, t.v, MaxShortText, false); err != nil {
			return nil, err
		}
	}
	if err := checkLabels("labels", req.GetLabels()); err != nil {
		return nil, err
	}
	if err := checkInventory(req.GetGpus(), req.GetUnansweredGpus()); err != nil {
		return nil, err
	}
	return s.fleet.Register(ctx, req)
}

func (s *nodeService) Heartbeat(ctx context.Context, req *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if len(req.GetSamples()) > MaxGPUs {
		return nil, invalid("samples", "has %d entries; the limit is %d", len(req.GetSamples()), MaxGPUs)
	}
	for i, smp := range req.GetSamples() {
		if err := checkSample(fmt.Sprintf("samples[%d]", i), smp); err != nil {
			return nil, err
		}
	}
	if err := checkTimestamp("sent_at", req.GetSentAt()); err != nil {
		return nil, err
	}
	return s.fleet.Heartbeat(ctx, req)
}

func (s *nodeService) ReportHealth(ctx context.Context, req *nodev1.ReportHealthRequest) (*nodev1.ReportHealthResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if len(req.GetEvents()) > MaxEventsPerCall {
		return nil, invalid("events", "has %d events; the limit is %d per call", len(req.GetEvents()), MaxEventsPerCall)
	}
	for i, e := range req.GetEvents() {
		if err := checkEvent(fmt.Sprintf("events[%d]", i), e); err != nil {
			return nil, err
		}
	}
	if len(req.GetMetrics()) > MaxGPUs {
		return nil, invalid("metrics", "has %d entries; the limit is %d", len(req.GetMetrics()), MaxGPUs)
	}
	seen := make(map[uint32]bool)
	for i, m := range req.GetMetrics() {
		field := fmt.Sprintf("metrics[%d]", i)
		if err := checkMetrics(field, m); err != nil {
			return nil, err
		}
		if seen[m.GetGpuIndex()] {
			return nil, invalid(field+".gpu_index", "GPU %d appears twice", m.GetGpuIndex())
		}
		seen[m.GetGpuIndex()] = true
	}
	return s.fleet.ReportHealth(ctx, req)
}

func (s *nodeService) GetNodeCommands(ctx context.Context, req *nodev1.GetNodeCommandsRequest) (*nodev1.GetNodeCommandsResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if err := checkDuration("wait", req.GetWait(), 0, time.Hour); err != nil {
		return nil, err
	}
	cmds, err := s.fleet.NodeCommands(ctx, req.GetNodeId(), req.GetWait().AsDuration())
	if err != nil {
		return nil, err
	}
	return &nodev1.GetNodeCommandsResponse{Commands: cmds}, nil
}

func (s *nodeService) ReportCommandResult(ctx context.Context, req *nodev1.ReportCommandResultRequest) (*nodev1.ReportCommandResultResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if req.GetCommandId() == "" {
		return nil, invalid("command_id", "is required")
	}
	if err := checkText("command_id", req.GetCommandId(), MaxShortText, false); err != nil {
		return nil, err
	}
	switch req.GetStatus() {
	case fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED, fleetv1.CommandStatus_COMMAND_STATUS_SUCCEEDED, fleetv1.CommandStatus_COMMAND_STATUS_FAILED:
	default:
		return nil, invalid("status", "%s is not ACKNOWLEDGED, SUCCEEDED or FAILED", req.GetStatus())
	}
	if err := checkText("message", req.GetMessage(), MaxResultMessage, true); err != nil {
		return nil, err
	}
	if len(req.GetSignalledPids())+len(req.GetRemainingPids()) > 4096 {
		return nil, invalid("signalled_pids", "with remaining_pids has more than 4096 entries")
	}
	cmd, err := s.fleet.CommandResult(ctx, req)
	if err != nil {
		return nil, err
	}
	return &nodev1.ReportCommandResultResponse{Command: cmd}, nil
}

// operatorService is ControlPlaneService.
type operatorService struct {
	controlplanev1.UnimplementedControlPlaneServiceServer
	fleet *Fleet
}

func (s *operatorService) GetFleetStatus(context.Context, *controlplanev1.GetFleetStatusRequest) (*controlplanev1.GetFleetStatusResponse, error) {
	resp := s.fleet.Status()
	resp.Version = version.String()
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
	terms, err := ParseLabelSelector(req.GetLabelSelector())
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
	if err := checkText("page_token", req.GetPageToken(), MaxFilterLen, false); err != nil {
		return nil, err
	}
	nodes, next, total, rev, err := s.fleet.List(NodeFilter{
		Lifecycle:    req.GetLifecycle(),
		Health:       req.GetHealth(),
		Reachability: req.GetReachability(),
		Labels:       terms,
		Text:         req.GetText(),
	}, size, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.ListNodesResponse{Nodes: nodes, NextPageToken: next, TotalSize: uint32(total), Revision: rev}, nil
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
		now := s.fleet.clock.Now()
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
	if err := checkDuration("drain_timeout", req.GetDrainTimeout(), time.Second, MaxDrainDeadline); err != nil {
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
// every change. A watcher that falls behind gets a Resync and a fresh
// snapshot instead of growing the server's memory.
func (s *operatorService) WatchFleet(req *controlplanev1.WatchFleetRequest, stream controlplanev1.ControlPlaneService_WatchFleetServer) error {
	f := s.fleet
	w, st, ok := f.hub.subscribe(req.GetSinceRevision(), f.all)
	if !ok {
		return status.Error(codes.Unavailable, "control plane is shutting down")
	}
	defer f.hub.unsubscribe(w)
	if err := s.sendStart(stream, st); err != nil {
		return err
	}
	for {
		ch, lagged := f.hub.queue(w)
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-f.hub.done:
			return status.Error(codes.Unavailable, "control plane is shutting down")
		case m := <-ch:
			w.sent(m)
			if err := stream.Send(m); err != nil {
				return err
			}
			if err := s.sendMissed(stream, w); err != nil {
				return err
			}
		case <-w.kick:
			if err := s.sendMissed(stream, w); err != nil {
				return err
			}
		case <-lagged:
			f.log.Warn("watcher fell behind; resyncing it")
			// No revision: the watcher dropped changes, and one that resumes
			// before the snapshot arrives must resume from what it had.
			if err := stream.Send(&controlplanev1.WatchFleetResponse{
				Change: &controlplanev1.WatchFleetResponse_Resync{Resync: &controlplanev1.Resync{Reason: "watcher fell behind"}},
			}); err != nil {
				return err
			}
			if err := s.sendStart(stream, f.hub.resync(w, f.all)); err != nil {
				return err
			}
		}
	}
}

// sendMissed sends the latest state of the nodes whose heartbeat batches
// the watcher missed while it was behind on them.
func (s *operatorService) sendMissed(stream controlplanev1.ControlPlaneService_WatchFleetServer, w *watcher) error {
	rev, batches := s.fleet.hub.missed(w)
	for _, b := range batches {
		if err := stream.Send(&controlplanev1.WatchFleetResponse{Revision: rev, Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: b}}); err != nil {
			return err
		}
	}
	return nil
}

func (s *operatorService) sendStart(stream controlplanev1.ControlPlaneService_WatchFleetServer, st start) error {
	if st.snapshot == nil {
		for _, m := range st.replay {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		return nil
	}
	f := s.fleet
	total := len(st.snapshot)
	for i := 0; ; i += snapshotChunk {
		end := min(i+snapshotChunk, total)
		snap := &controlplanev1.Snapshot{Nodes: make([]*fleetv1.Node, 0, end-i)}
		for _, e := range st.snapshot[i:end] {
			snap.Nodes = append(snap.Nodes, e.ns.viewOf(e.node, e.reach, false))
		}
		if end == total {
			snap.Complete = true
			snap.Summary = f.summary()
			snap.Breaker = f.breaker.status(f.clock.Now())
			snap.RecentEvents = st.events
		}
		if err := stream.Send(&controlplanev1.WatchFleetResponse{Revision: st.rev, Change: &controlplanev1.WatchFleetResponse_Snapshot{Snapshot: snap}}); err != nil {
			return err
		}
		if end == total {
			return nil
		}
	}
}
