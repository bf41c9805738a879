package api

import (
	"context"
	"time"

	"github.com/navarch/navarch/controlplane/auth"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Tokens is what the token RPCs need of the operator tokens.
type Tokens interface {
	Create(ctx context.Context, name string, role controlplanev1.Role, ttl time.Duration, uses int) (string, *controlplanev1.TokenInfo, error)
	List() []*controlplanev1.TokenInfo
	Revoke(ctx context.Context, name string) (*controlplanev1.TokenInfo, error)
}

func (s *operatorService) CreateToken(ctx context.Context, req *controlplanev1.CreateTokenRequest) (*controlplanev1.CreateTokenResponse, error) {
	if err := auth.CheckName(req.GetName()); err != nil {
		return nil, err
	}
	if err := checkEnum("role", req.GetRole(), controlplanev1.Role_name, false); err != nil {
		return nil, err
	}
	if req.GetTtl() != nil {
		if err := checkDuration("ttl", req.GetTtl(), auth.MinTTL, 10*365*24*time.Hour); err != nil {
			return nil, err
		}
	}
	token, info, err := s.tokens.Create(ctx, req.GetName(), req.GetRole(), req.GetTtl().AsDuration(), int(req.GetUses()))
	if err != nil {
		return nil, err
	}
	return &controlplanev1.CreateTokenResponse{Token: token, Info: info}, nil
}

func (s *operatorService) ListTokens(context.Context, *controlplanev1.ListTokensRequest) (*controlplanev1.ListTokensResponse, error) {
	return &controlplanev1.ListTokensResponse{Tokens: s.tokens.List()}, nil
}

func (s *operatorService) RevokeToken(ctx context.Context, req *controlplanev1.RevokeTokenRequest) (*controlplanev1.RevokeTokenResponse, error) {
	if err := auth.CheckName(req.GetName()); err != nil {
		return nil, err
	}
	info, err := s.tokens.Revoke(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &controlplanev1.RevokeTokenResponse{Info: info}, nil
}
