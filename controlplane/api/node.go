// Package api is the control plane's gRPC face: NodeService for agents and
// ControlPlaneService for operators. It checks every request field by field
// (InvalidArgument names the field) and hands what passes to the fleet; it
// holds no state of its own.
package api

import (
	"context"
	"fmt"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"google.golang.org/grpc"
)

// Nodes is what NodeService needs of the fleet.
type Nodes interface {
	Register(ctx context.Context, req *nodev1.RegisterNodeRequest) (*nodev1.RegisterNodeResponse, error)
	Heartbeat(ctx context.Context, req *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error)
	ReportHealth(ctx context.Context, req *nodev1.ReportHealthRequest) (*nodev1.ReportHealthResponse, error)
	NodeCommands(ctx context.Context, nodeID string, wait time.Duration) ([]*fleetv1.Command, error)
	WatchCommands(ctx context.Context, nodeID string, send func([]*fleetv1.Command) error) error
	CommandResult(ctx context.Context, req *nodev1.ReportCommandResultRequest) (*fleetv1.Command, error)
}

// RegisterNodeService registers NodeService, served by fleet and the
// agents' identities, on s.
func RegisterNodeService(s grpc.ServiceRegistrar, fleet Nodes, ids Identities) {
	nodev1.RegisterNodeServiceServer(s, &nodeService{fleet: fleet, ids: ids})
}

// nodeService is NodeService: every request is checked field by field, its
// node_id against the caller's certificate, then handed to the fleet.
type nodeService struct {
	nodev1.UnimplementedNodeServiceServer
	fleet Nodes
	ids   Identities
}

func (s *nodeService) RegisterNode(ctx context.Context, req *nodev1.RegisterNodeRequest) (*nodev1.RegisterNodeResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if err := sameNode(ctx, req.GetNodeId()); err != nil {
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
	if err := checkScheduler("scheduler", req.GetScheduler()); err != nil {
		return nil, err
	}
	return s.fleet.Register(ctx, req)
}

func (s *nodeService) Heartbeat(ctx context.Context, req *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if err := sameNode(ctx, req.GetNodeId()); err != nil {
		return nil, err
	}
	if err := checkSamples(req.GetSamples()); err != nil {
		return nil, err
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
	if err := sameNode(ctx, req.GetNodeId()); err != nil {
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
	if err := checkReportMetrics(req); err != nil {
		return nil, err
	}
	if err := checkScheduler("scheduler", req.GetScheduler()); err != nil {
		return nil, err
	}
	return s.fleet.ReportHealth(ctx, req)
}

func (s *nodeService) GetNodeCommands(ctx context.Context, req *nodev1.GetNodeCommandsRequest) (*nodev1.GetNodeCommandsResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if err := sameNode(ctx, req.GetNodeId()); err != nil {
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

func (s *nodeService) WatchNodeCommands(req *nodev1.WatchNodeCommandsRequest, stream grpc.ServerStreamingServer[nodev1.WatchNodeCommandsResponse]) error {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return err
	}
	ctx := stream.Context()
	if err := sameNode(ctx, req.GetNodeId()); err != nil {
		return err
	}
	// Headers at once tell the agent its stream was taken, before any
	// command: it can stop backing off.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	return s.fleet.WatchCommands(ctx, req.GetNodeId(), func(cmds []*fleetv1.Command) error {
		return stream.Send(&nodev1.WatchNodeCommandsResponse{Commands: cmds})
	})
}

func (s *nodeService) ReportCommandResult(ctx context.Context, req *nodev1.ReportCommandResultRequest) (*nodev1.ReportCommandResultResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if err := sameNode(ctx, req.GetNodeId()); err != nil {
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
