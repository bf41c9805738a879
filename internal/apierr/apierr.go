// Package apierr builds the errors the control plane answers with and reads
// them back in its clients. Every error is a gRPC status whose code says what
// kind of failure it is; the ones a client acts on also carry a typed detail
// (google.rpc.ErrorInfo or google.rpc.BadRequest), so the console and the
// command line tell failures apart by code and detail, never by the text.
package apierr

import (
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Domain names Navarch as the source of an ErrorInfo.
const Domain = "navarch"

// Reasons an ErrorInfo gives. They are part of the API: clients compare them.
const (
	// ReasonNodeNotFound: the node named by node_id does not exist.
	// Metadata: node_id.
	ReasonNodeNotFound = "NODE_NOT_FOUND"
	// ReasonLifecycle: the node's lifecycle state forbids the action.
	// Metadata: node_id, lifecycle (such as "TERMINATED"), action.
	ReasonLifecycle = "LIFECYCLE_FORBIDS"
	// ReasonNotSaved: the change could not be written to the store, and
	// nothing was changed; the call may be retried.
	ReasonNotSaved = "STATE_NOT_SAVED"
	// ReasonRoleTooLow: the caller's token has a role below what the RPC
	// needs. Metadata: token (its name), role and required_role (such as
	// "viewer" and "operator").
	ReasonRoleTooLow = "ROLE_TOO_LOW"
	// ReasonNotLeader: the control plane called is a standby; only the
	// leader serves. Metadata: leader, the leader's address as HOST:PORT,
	// empty while no leader is known (an election under way).
	ReasonNotLeader = "NOT_LEADER"
)

func withInfo(code codes.Code, msg, reason string, meta map[string]string) error {
	st := status.New(code, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: Domain, Metadata: meta}); err == nil {
		st = d
	}
	return st.Err()
}

// NodeNotFound is the NotFound answer for a node that does not exist.
func NodeNotFound(id string) error {
	return withInfo(codes.NotFound, fmt.Sprintf("node_id: no node %q", id), ReasonNodeNotFound, map[string]string{"node_id": id})
}

// NotRegistered is the NotFound answer to an agent whose node is not
// registered.
func NotRegistered(id string) error {
	return withInfo(codes.NotFound, fmt.Sprintf("node_id: node %q is not registered; register first", id),
		ReasonNodeNotFound, map[string]string{"node_id": id})
}

// Forbidden is the FailedPrecondition answer for an action the node's
// lifecycle state does not allow; action is a past participle such as
// "cordoned". Like every message, it starts with the field it concerns.
func Forbidden(id string, l fleetv1.LifecycleState, action string) error {
	name := display.Lifecycle(l)
	return withInfo(codes.FailedPrecondition, fmt.Sprintf("node_id: node %q is %s; it cannot be %s", id, name, action),
		ReasonLifecycle, map[string]string{"node_id": id, "lifecycle": name, "action": action})
}

// RoleTooLow is the PermissionDenied answer for a token whose role is
// below what the RPC needs; roles are written as "viewer", "operator",
// "admin".
func RoleTooLow(token, role, rpc, required string) error {
	return withInfo(codes.PermissionDenied, fmt.Sprintf("token %q has the %s role; %s needs %s", token, role, rpc, required),
		ReasonRoleTooLow, map[string]string{"token": token, "role": role, "required_role": required})
}

// NotSaved is the Unavailable answer when the store refused a change.
func NotSaved() error {
	return withInfo(codes.Unavailable, "state could not be saved; nothing was changed", ReasonNotSaved, nil)
}

// NotLeader is the Unavailable answer of a standby control plane: nothing
// was read or changed, and the call may be made again to leader, the
// leader's HOST:PORT ("" while none is known).
func NotLeader(leader string) error {
	msg := "this control plane is a standby; the leader is at " + leader
	if leader == "" {
		msg = "this control plane is a standby and no leader is elected yet; try again shortly"
	}
	return withInfo(codes.Unavailable, msg, ReasonNotLeader, map[string]string{"leader": leader})
}

// Leader reads a NotLeader answer: whether err is one, and the leader it
// names ("" when none is known).
func Leader(err error) (leader string, standby bool) {
	info, ok := Info(err)
	if !ok || info.GetReason() != ReasonNotLeader || status.Code(err) != codes.Unavailable {
		return "", false
	}
	return info.GetMetadata()["leader"], true
}

// Invalid is the InvalidArgument answer for a bad field. The message starts
// with the field's path; a google.rpc.BadRequest names it too.
func Invalid(field, format string, args ...any) error {
	desc := fmt.Sprintf(format, args...)
	st := status.New(codes.InvalidArgument, field+": "+desc)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: desc}}}); err == nil {
		st = d
	}
	return st.Err()
}

// Info returns err's ErrorInfo from Navarch, if it has one.
func Info(err error) (*errdetails.ErrorInfo, bool) {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info, true
		}
	}
	return nil, false
}

// Field returns the field an InvalidArgument error names, if it names one.
func Field(err error) (string, bool) {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField(), true
		}
	}
	return "", false
}

// Describe says why an action on node id failed, naming the node once, for
// an operator's screen: "gpu-7 is TERMINATED; it cannot be cordoned",
// "gpu-7: no such node", or the node and the server's message.
func Describe(id string, err error) string {
	if info, ok := Info(err); ok {
		switch info.GetReason() {
		case ReasonNodeNotFound:
			return id + ": no such node"
		case ReasonLifecycle:
			md := info.GetMetadata()
			return fmt.Sprintf("%s is %s; it cannot be %s", id, md["lifecycle"], md["action"])
		}
	}
	return id + ": " + status.Convert(err).Message()
}
