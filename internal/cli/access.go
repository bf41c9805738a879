package cli

import (
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// deniedError is a call the control plane refused for want of a valid
// token (Unauthenticated) or of a role that allows it (PermissionDenied),
// said so that the operator knows what to give instead. It keeps the
// status, whose code sets the exit code.
type deniedError struct {
	// cmd is the command as typed: "cordon", "token create".
	cmd string
	// sent says whether the command sent a token at all.
	sent bool
	err  error
}

func (e deniedError) Error() string {
	st := status.Convert(e.err)
	if st.Code() == codes.Unauthenticated {
		if !e.sent {
			return "not authenticated: give a token with --token, NAVARCH_TOKEN or a context (navarch config set-context)"
		}
		return "not authenticated: " + st.Message() + "; give a valid token with --token, NAVARCH_TOKEN or a context"
	}
	if have, need, ok := roleShortfall(e.err); ok {
		return fmt.Sprintf("permission denied: this token's role is %s; %s needs %s", have, e.cmd, need)
	}
	return "permission denied: " + st.Message()
}

func (e deniedError) Unwrap() error { return e.err }

// denial describes err as a refusal of cmd where the control plane said
// it is one; other errors stay as they are.
func denial(cf *connFlags, cmd string, err error) error {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied:
	default:
		return err
	}
	target, _ := cf.target()
	return deniedError{cmd: cmd, sent: target.Token != "", err: err}
}

// roleShortfall reads what a PermissionDenied answer says of roles: the
// caller's and the one the call needs, each as roleName writes it.
func roleShortfall(err error) (have, need string, ok bool) {
	info, ok := apierr.Info(err)
	if !ok || info.GetReason() != apierr.ReasonRoleTooLow {
		return "", "", false
	}
	md := info.GetMetadata()
	have, need = md["role"], md["required_role"]
	return have, need, have != "" && need != ""
}

// commandName is the command as its usage names it: "cordon", or with
// its kind, "get nodes", "token create".
func commandName(cmd string, args []string) string {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return cmd + " " + args[0]
	}
	return cmd
}

// roles are the roles a token may have, as the command line writes them:
// the operators' roles lowest first, then agent, which is no rung on that
// ladder (a join token lets agents join and does nothing else).
var roles = []struct {
	name string
	role controlplanev1.Role
}{
	{"viewer", controlplanev1.Role_ROLE_VIEWER},
	{"operator", controlplanev1.Role_ROLE_OPERATOR},
	{"admin", controlplanev1.Role_ROLE_ADMIN},
	{"agent", controlplanev1.Role_ROLE_AGENT},
}

// roleChoices lists the roles for a message: "viewer, operator, admin or
// agent".
func roleChoices() string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = r.name
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// parseRole reads a role as the command line writes it.
func parseRole(s string) (controlplanev1.Role, bool) {
	for _, n := range roles {
		if n.name == s {
			return n.role, true
		}
	}
	return controlplanev1.Role_ROLE_UNSPECIFIED, false
}
