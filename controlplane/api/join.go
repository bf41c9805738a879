package api

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/auth"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// maxCertificateRequest bounds a certificate request's size, in bytes.
const maxCertificateRequest = 16 << 10

// Identities is what NodeService needs of the agents' identities.
type Identities interface {
	Join(ctx context.Context, nodeID, token string, csr []byte) (cert, ca []byte, err error)
	Renew(nodeID string, csr []byte) ([]byte, error)
}

// sameNode refuses a call about a node other than the one the caller's
// certificate stands for. Where agents need no certificate (a plaintext
// control plane on loopback), there is nothing to compare.
func sameNode(ctx context.Context, nodeID string) error {
	if caller, ok := auth.NodeFrom(ctx); ok && caller != nodeID {
		return status.Errorf(codes.PermissionDenied, "node_id: the caller's certificate is for node %q, not %q", caller, nodeID)
	}
	return nil
}

func checkRequest(csr []byte) error {
	switch {
	case len(csr) == 0:
		return invalid("certificate_request", "is required")
	case len(csr) > maxCertificateRequest:
		return invalid("certificate_request", "is %d bytes; the limit is %d", len(csr), maxCertificateRequest)
	}
	return nil
}

func (s *nodeService) JoinNode(ctx context.Context, req *nodev1.JoinNodeRequest) (*nodev1.JoinNodeResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if req.GetJoinToken() == "" {
		return nil, invalid("join_token", "is required")
	}
	if err := checkText("join_token", req.GetJoinToken(), MaxShortText, false); err != nil {
		return nil, err
	}
	if err := checkRequest(req.GetCertificateRequest()); err != nil {
		return nil, err
	}
	cert, ca, err := s.ids.Join(ctx, req.GetNodeId(), req.GetJoinToken(), req.GetCertificateRequest())
	if err != nil {
		return nil, err
	}
	return &nodev1.JoinNodeResponse{Certificate: cert, CaCertificate: ca}, nil
}

func (s *nodeService) RenewNodeCertificate(ctx context.Context, req *nodev1.RenewNodeCertificateRequest) (*nodev1.RenewNodeCertificateResponse, error) {
	node, ok := auth.NodeFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "renewing needs the node's current certificate")
	}
	if err := checkRequest(req.GetCertificateRequest()); err != nil {
		return nil, err
	}
	cert, err := s.ids.Renew(node, req.GetCertificateRequest())
	if err != nil {
		return nil, err
	}
	return &nodev1.RenewNodeCertificateResponse{Certificate: cert}, nil
}

// Resetter forgets a node's identity, and says whether it had one.
type Resetter interface {
	Reset(ctx context.Context, nodeID string) (bool, error)
}

func (s *operatorService) ResetNodeIdentity(ctx context.Context, req *controlplanev1.ResetNodeIdentityRequest) (*controlplanev1.ResetNodeIdentityResponse, error) {
	if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	if s.identities == nil {
		return nil, status.Error(codes.FailedPrecondition, "node_id: this control plane serves plaintext, so its agents have no identities to reset")
	}
	had, err := s.identities.Reset(ctx, req.GetNodeId())
	if err != nil {
		return nil, err
	}
	if !had && !s.fleet.Has(req.GetNodeId()) {
		return nil, status.Errorf(codes.NotFound, "node_id: no node %q, and no agent identity bound to that id", req.GetNodeId())
	}
	return &controlplanev1.ResetNodeIdentityResponse{HadIdentity: had}, nil
}
