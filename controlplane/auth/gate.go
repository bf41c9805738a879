package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Need is what a call needs before its handler runs.
type Need int

const (
	// Anyone may call: the gRPC health check, which load balancers use.
	Anyone Need = iota
	// Agent calls are NodeService's: they need the node certificate the
	// agent got when it joined.
	Agent
	// Viewer, Operator and Admin need an operator token of that role or
	// above.
	Viewer
	Operator
	Admin
)

func (n Need) String() string {
	switch n {
	case Anyone:
		return "anyone"
	case Agent:
		return "agent"
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return fmt.Sprintf("need(%d)", int(n))
}

// role is the operator role a Need asks for.
func (n Need) role() controlplanev1.Role {
	switch n {
	case Viewer:
		return controlplanev1.Role_ROLE_VIEWER
	case Operator:
		return controlplanev1.Role_ROLE_OPERATOR
	case Admin:
		return controlplanev1.Role_ROLE_ADMIN
	}
	return controlplanev1.Role_ROLE_UNSPECIFIED
}

const (
	cps = "/" + "navarch.controlplane.v1.ControlPlaneService/"
	ns  = "/" + "navarch.node.v1.NodeService/"
)

// Required is what every RPC the server hosts needs: the one table, which
// docs/security.md prints. A method missing from it is refused.
var Required = map[string]Need{
	"/grpc.health.v1.Health/Check": Anyone,
	"/grpc.health.v1.Health/Watch": Anyone,
	"/grpc.health.v1.Health/List":  Anyone,

	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      Viewer,
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Viewer,

	ns + "RegisterNode":         Agent,
	ns + "Heartbeat":            Agent,
	ns + "ReportHealth":         Agent,
	ns + "GetNodeCommands":      Agent,
	ns + "WatchNodeCommands":    Agent,
	ns + "ReportCommandResult":  Agent,
	ns + "RenewNodeCertificate": Agent,
	ns + "JoinNode":             Anyone,

	cps + "GetFleetStatus": Viewer,
	cps + "ListNodes":      Viewer,
	cps + "GetNode":        Viewer,
	cps + "ListEvents":     Viewer,
	cps + "WatchFleet":     Viewer,
	cps + "CordonNode":     Operator,
	cps + "UncordonNode":   Operator,
	cps + "ReleaseNode":    Operator,
	cps + "DrainNode":      Operator,
	cps + "TerminateNode":  Operator,
	cps + "RunDiagnostics": Operator,
	cps + "ResetGpu":       Operator,
	cps + "RebootNode":     Operator,
	cps + "ProvisionNodes": Operator,
	cps + "CreateToken":    Admin,
	cps + "ListTokens":     Admin,
	cps + "RevokeToken":    Admin,
	// Reading the audit log needs an operator: reasons may say more than
	// a viewer should read.
	cps + "ResetNodeIdentity": Operator,
	cps + "ListAudit":         Operator,
	cps + "ListPools":         Viewer,
	cps + "ScalePool":         Operator,
	cps + "PowerCycleNode":    Operator,
	// A pool's spec names providers, instance types and where they run:
	// what the fleet costs, which only an admin sets.
	cps + "PutPool":    Admin,
	cps + "DeletePool": Admin,
}

// Refusal is why the gate refused a call: a label value of the control
// plane's navarch_auth_refused_total.
type Refusal string

// The reasons the gate refuses a call for.
const (
	// RefusedUnauthenticated: an operator call without a token, or with one
	// that is unknown, revoked or expired.
	RefusedUnauthenticated Refusal = "unauthenticated"
	// RefusedUntrustedCertificate: a client certificate no CA of the
	// control plane's signed.
	RefusedUntrustedCertificate Refusal = "untrusted_certificate"
	// RefusedNoNodeCertificate: an agent's call without the certificate it
	// gets when it joins.
	RefusedNoNodeCertificate Refusal = "no_node_certificate"
	// RefusedRoleTooLow: a valid token whose role is below the method's.
	RefusedRoleTooLow Refusal = "role_too_low"
	// RefusedRateLimited: a failed authentication from an address that
	// failed too often, answered ResourceExhausted.
	RefusedRateLimited Refusal = "rate_limited"
	// RefusedUnknownMethod: a method the table does not know.
	RefusedUnknownMethod Refusal = "unknown_method"
)

// Refusals are every reason the gate gives, so that each can be counted
// from zero.
var Refusals = []Refusal{
	RefusedUnauthenticated, RefusedUntrustedCertificate, RefusedNoNodeCertificate,
	RefusedRoleTooLow, RefusedRateLimited, RefusedUnknownMethod,
}

// Services are the services whose every method Required must list.
var Services = []grpc.ServiceDesc{nodev1.NodeService_ServiceDesc, controlplanev1.ControlPlaneService_ServiceDesc}

// Gate authenticates and authorises each call as its headers arrive,
// before the request is read, and refuses it there.
type Gate struct {
	tokens *Tokens
	// agents judges client certificates; nil on a plaintext control
	// plane. identities says whether NodeService calls need one.
	agents     *Agents
	identities bool
	log        *slog.Logger
	// refused is told of each call the gate refuses, for the metrics: the
	// gate refuses before any interceptor runs, so gRPC's own metrics
	// never see those calls.
	refused func(Refusal)

	mu       sync.Mutex
	failures map[string]*rate.Limiter // by peer IP
}

// Failed authentications a peer may make: a burst, then one a second.
const (
	failureBurst = 10
	failureRate  = 1
	maxPeers     = 10000
)

// NewGate checks operators' calls against tokens, and any client
// certificate shown against agents (nil on a plaintext control plane).
// With identities, agents' calls need their node's certificate; without,
// as for a simulator on loopback, they go without one.
func NewGate(tokens *Tokens, agents *Agents, identities bool, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{
		tokens: tokens, agents: agents, identities: identities && agents != nil, log: log,
		refused: func(Refusal) {}, failures: make(map[string]*rate.Limiter),
	}
}

// OnRefused has fn told why of each call the gate refuses. Call it before
// the server serves; fn must not block.
func (g *Gate) OnRefused(fn func(Refusal)) { g.refused = fn }

// rank orders the operator roles; an agent's join token ranks with no
// role, so it reads nothing and changes nothing.
func rank(r controlplanev1.Role) int {
	switch r {
	case controlplanev1.Role_ROLE_VIEWER:
		return 1
	case controlplanev1.Role_ROLE_OPERATOR:
		return 2
	case controlplanev1.Role_ROLE_ADMIN:
		return 3
	}
	return 0
}

type callerKey struct{}

// CallerFrom returns who made the call that ctx belongs to.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// WithCaller returns ctx as the gate passes it on for a call c made.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// Tap is the server's grpc.InTapHandle: it runs as a call's headers
// arrive, before its request is read, and refuses a call whose caller is
// not allowed it. It must not block.
func (g *Gate) Tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	need, ok := Required[info.FullMethodName]
	if !ok {
		g.refused(RefusedUnknownMethod)
		return ctx, status.Errorf(codes.Unimplemented, "unknown method %s", info.FullMethodName)
	}
	if need == Anyone {
		return ctx, nil
	}
	if g.agents != nil {
		// A client certificate shown must be one this control plane
		// trusts, whatever else the call carries.
		if _, _, presented, err := g.agents.clientChain(ctx); presented && err != nil {
			return ctx, g.refuse(ctx, info.FullMethodName, RefusedUntrustedCertificate, "untrusted client certificate", err,
				fmt.Sprintf("client certificate: not one this control plane trusts (its CA, or a tls.client_ca_file CA): %v", err))
		}
	}
	switch {
	case need == Agent && !g.identities:
		// A plaintext control plane on loopback, or one set up for a
		// simulator there: agents call without certificates.
		return ctx, nil
	case need == Agent:
		node, ok := g.agents.nodeOf(ctx)
		if !ok {
			return ctx, g.refuse(ctx, info.FullMethodName, RefusedNoNodeCertificate, "agent call without a node certificate", nil,
				"NodeService needs the node's certificate: join first (navarch-agent --join-token)")
		}
		return context.WithValue(ctx, nodeKey{}, node), nil
	}
	token, err := bearer(info.Header)
	var caller Caller
	if err == nil {
		caller, err = g.tokens.Verify(token)
	}
	if err != nil {
		return ctx, g.refuse(ctx, info.FullMethodName, RefusedUnauthenticated, "authentication failed", err,
			fmt.Sprintf("%v; give an operator token (--token or NAVARCH_TOKEN)", err))
	}
	if rank(caller.Role) < rank(need.role()) {
		// Refused before any interceptor runs, so the request log never
		// sees it: said here, by whom and for what.
		g.refused(RefusedRoleTooLow)
		g.log.Warn("call refused: role too low", "peer", peerIP(ctx), "method", info.FullMethodName,
			"caller", caller.Name, "role", display.Role(caller.Role), "needs", need.String())
		return ctx, apierr.RoleTooLow(caller.Name, display.Role(caller.Role), info.FullMethodName[strings.LastIndex(info.FullMethodName, "/")+1:], need.String())
	}
	return WithCaller(ctx, caller), nil
}

// Passed refuses, as a second line, a call that reached its handler
// without the gate's word on it: a method the table does not know, or a
// caller the tap did not name.
func (g *Gate) Passed(ctx context.Context, method string) error {
	need, ok := Required[method]
	switch {
	case !ok:
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	case need == Anyone, need == Agent && !g.identities:
		return nil
	case need == Agent:
		if _, ok := NodeFrom(ctx); !ok {
			return status.Error(codes.PermissionDenied, "the call was not authorised")
		}
		return nil
	}
	if c, ok := CallerFrom(ctx); !ok || rank(c.Role) < rank(need.role()) {
		return status.Error(codes.PermissionDenied, "the call was not authorised")
	}
	return nil
}

// refuse answers a failed authentication: Unauthenticated with msg, or
// ResourceExhausted once the peer's address has failed too often. Each
// refusal is counted under reason, or as rate-limited, and each within the
// rate is logged with what and why (never a secret).
func (g *Gate) refuse(ctx context.Context, method string, reason Refusal, what string, why error, msg string) error {
	addr := peerIP(ctx)
	if !g.allowFailure(addr) {
		g.refused(RefusedRateLimited)
		return status.Error(codes.ResourceExhausted, "too many failed authentications from this address; wait and try again")
	}
	args := []any{"peer", addr, "method", method}
	if why != nil {
		args = append(args, "reason", why)
	}
	g.refused(reason)
	g.log.Warn(what, args...)
	return status.Error(codes.Unauthenticated, msg)
}

// allowFailure counts a failed authentication from addr, and reports
// whether it is within the rate a peer is allowed.
func (g *Gate) allowFailure(addr string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.failures[addr]
	if l == nil {
		if len(g.failures) >= maxPeers {
			// Forget them all rather than grow: a flood from many
			// addresses costs each a fresh burst, never memory.
			clear(g.failures)
		}
		l = rate.NewLimiter(failureRate, failureBurst)
		g.failures[addr] = l
	}
	return l.Allow()
}

func bearer(md metadata.MD) (string, error) {
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", errNoToken
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", errNoToken
	}
	return strings.TrimSpace(token), nil
}

var errNoToken = fmt.Errorf("no operator token")

func peerIP(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	return host
}
