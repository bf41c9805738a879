package apierr

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

func TestErrorsCarryCodeAndDetail(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		code     codes.Code
		reason   string
		message  string
		describe string
	}{
		{"node-not-found", NodeNotFound("gpu-7"), codes.NotFound, ReasonNodeNotFound, `node_id: no node "gpu-7"`, "gpu-7: no such node"},
		{"not-registered", NotRegistered("gpu-7"), codes.NotFound, ReasonNodeNotFound,
			`node_id: node "gpu-7" is not registered; register first`, "gpu-7: no such node"},
		{"forbidden", Forbidden("gpu-7", fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATED, "cordoned"), codes.FailedPrecondition, ReasonLifecycle,
			`node_id: node "gpu-7" is TERMINATED; it cannot be cordoned`, "gpu-7 is TERMINATED; it cannot be cordoned"},
		{"not-saved", NotSaved(), codes.Unavailable, ReasonNotSaved,
			"state could not be saved; nothing was changed", "gpu-7: state could not be saved; nothing was changed"},
		{"plain", status.Error(codes.Internal, "boom"), codes.Internal, "", "boom", "gpu-7: boom"},
		{"not-a-status", errors.New("dial failed"), codes.Unknown, "", "dial failed", "gpu-7: dial failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := status.Code(tt.err); got != tt.code {
				t.Errorf("code %s, want %s", got, tt.code)
			}
			if got := status.Convert(tt.err).Message(); got != tt.message {
				t.Errorf("message %q, want %q", got, tt.message)
			}
			info, ok := Info(tt.err)
			if ok != (tt.reason != "") || info.GetReason() != tt.reason {
				t.Errorf("reason %q (found %t), want %q", info.GetReason(), ok, tt.reason)
			}
			if got := Describe("gpu-7", tt.err); got != tt.describe {
				t.Errorf("Describe = %q, want %q", got, tt.describe)
			}
		})
	}
}

func TestInvalidNamesTheField(t *testing.T) {
	err := Invalid("deadline", "is %d days away; the limit is %d", 9, 7)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("code %s", status.Code(err))
	}
	if got := status.Convert(err).Message(); got != "deadline: is 9 days away; the limit is 7" {
		t.Errorf("message %q", got)
	}
	if f, ok := Field(err); !ok || f != "deadline" {
		t.Errorf("field %q %t", f, ok)
	}
	if _, ok := Field(NodeNotFound("x")); ok {
		t.Error("a NotFound names no field")
	}
}

func TestRoleTooLowSaysBothRoles(t *testing.T) {
	err := RoleTooLow("dashboards", "viewer", "CordonNode", "operator")
	info, ok := Info(err)
	if status.Code(err) != codes.PermissionDenied || !ok || info.GetReason() != ReasonRoleTooLow ||
		info.GetMetadata()["role"] != "viewer" || info.GetMetadata()["required_role"] != "operator" {
		t.Fatalf("%v %v", err, info)
	}
}

func TestNotLeaderNamesTheLeader(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		leader  string
		standby bool
	}{
		{"known-leader", NotLeader("cp-2:50051"), "cp-2:50051", true},
		{"no-leader-yet", NotLeader(""), "", true},
		{"not-saved-is-not-standby", NotSaved(), "", false},
		{"plain-unavailable", status.Error(codes.Unavailable, "connection refused"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leader, standby := Leader(tt.err)
			if leader != tt.leader || standby != tt.standby {
				t.Fatalf("Leader = %q, %v; want %q, %v", leader, standby, tt.leader, tt.standby)
			}
			if tt.standby && status.Code(tt.err) != codes.Unavailable {
				t.Fatalf("code %s, want Unavailable", status.Code(tt.err))
			}
		})
	}
}
