package store

import (
	"time"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Token is an operator token as the store keeps it: its hash, never its
// secret, so that a copy of the data directory lets no one in.
type Token struct {
	// Name names the token; unique.
	Name string
	// Role is what the token allows.
	Role controlplanev1.Role
	// Hash is the SHA-256 of the token's secret.
	Hash []byte
	// CreatedAt is when it was created.
	CreatedAt time.Time
	// ExpiresAt is when it stops working; zero means never.
	ExpiresAt time.Time
	// RevokedAt is when it was revoked; zero means it was not.
	RevokedAt time.Time
	// MaxUses is how many agents may join with it; 0 means no limit.
	MaxUses int
	// Used is how many agents have joined with it.
	Used int
	// NodeID, when set, is the one node an agent token may join as: the
	// token a launched instance bootstraps with.
	NodeID string
}
