package store

import (
	"time"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// AuditEntry is one change an operator or the policy made, or an operator
// tried to make, as the audit log keeps it. It never holds a secret.
type AuditEntry struct {
	// ID is made by FormatSeq("au", seq) from the caller's id counter, the
	// one commands and events draw from; its sequence number orders the
	// log.
	ID string
	// Time is when the change was made, or refused.
	Time time.Time
	// Who is the token's name, or "policy" for a change the fault policy
	// made.
	Who string
	// Role is the token's role; unspecified for the policy.
	Role controlplanev1.Role
	// RPC is the method's short name ("CordonNode"), or what the policy
	// did ("AutoCordon").
	RPC string
	// NodeID is the node the change was about; empty when it was about no
	// single node (provisioning, tokens).
	NodeID string
	// Reason is the reason given.
	Reason string
	// Params renders the request's other fields, for people to read.
	Params string
	// Code is the gRPC code name of the result: "OK" on success.
	Code string
	// Message says more about the result: the refusal's message, or what
	// was made.
	Message string
}

// AuditQuery selects audit entries for Audit.
type AuditQuery struct {
	// NodeID keeps the entries about one node; empty means every entry.
	NodeID string
	// Limit is the most entries to return; 0 means 100.
	Limit int
}
