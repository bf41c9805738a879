package api

import (
	"context"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// The remedies an operator asks an agent to carry out. The fleet refuses
// what the node's inventory, lifecycle or agent does not allow; what the
// request itself gets wrong is refused here first.

func (s *operatorService) ResetGpu(ctx context.Context, req *controlplanev1.ResetGpuRequest) (*controlplanev1.ResetGpuResponse, error) {
	if err := checkReason(req.GetNodeId(), req.GetReason()); err != nil {
		return nil, err
	}
	if req.GetGpuIndex() >= MaxGPUs {
		return nil, invalid("gpu_index", "%d is not below %d", req.GetGpuIndex(), MaxGPUs)
	}
	cmd, err := s.fleet.ResetGPU(ctx, req.GetNodeId(), req.GetGpuIndex(), req.GetReason(), req.GetForce())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.ResetGpuResponse{Command: cmd}, nil
}

func (s *operatorService) RebootNode(ctx context.Context, req *controlplanev1.RebootNodeRequest) (*controlplanev1.RebootNodeResponse, error) {
	if err := checkReason(req.GetNodeId(), req.GetReason()); err != nil {
		return nil, err
	}
	cmd, err := s.fleet.Reboot(ctx, req.GetNodeId(), req.GetReason(), req.GetForce())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.RebootNodeResponse{Command: cmd}, nil
}
