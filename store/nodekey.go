package store

import "time"

// NodeKey binds a node id to the public key of the agent that joined as it.
type NodeKey struct {
	// NodeID is the node.
	NodeID string
	// KeyHash is the SHA-256 of the key's DER-encoded SubjectPublicKeyInfo.
	KeyHash []byte
	// BoundAt is when the agent joined.
	BoundAt time.Time
}
