package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/internal/display"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// AuditRecorder is what the audit interceptor needs of the fleet.
type AuditRecorder interface {
	// RecordAudit writes an entry, giving it its id and, unless it has
	// one, its time.
	RecordAudit(ctx context.Context, e *store.AuditEntry) error
}

const (
	// maxAuditText is where an entry's node id, reason, params and message
	// are cut, so a refused request of megabytes leaves a short entry.
	maxAuditText = 1024
	// auditWriteTimeout bounds the write of one entry, which goes on when
	// the caller has gone: the change it records is made.
	auditWriteTimeout = 10 * time.Second
	defaultAuditLimit = 100
	maxAuditLimit     = 1000
)

// auditReads are the ControlPlaneService methods that need the operator
// role or more and change nothing. Every other such method is audited, so
// an RPC added to auth.Required is recorded unless it is named here.
var auditReads = []string{"ListTokens", "ListAudit"}

// auditParams keeps, for the methods listed, only these fields of the
// request in an entry's params: what a token request may carry beyond
// them must never reach the log. A token's response, which holds its
// secret, is never looked at.
var auditParams = map[string][]protoreflect.Name{
	"CreateToken": {"name", "role", "ttl"},
}

// controlPlaneMethods begins the full name of every ControlPlaneService
// method.
var controlPlaneMethods = "/" + controlplanev1.ControlPlaneService_ServiceDesc.ServiceName + "/"

// audited reports whether a method's calls are recorded, and its short
// name.
func audited(method string) (string, bool) {
	name, ok := strings.CutPrefix(method, controlPlaneMethods)
	if !ok || slices.Contains(auditReads, name) {
		return "", false
	}
	return name, auth.Required[method] >= auth.Operator
}

// Audit records in the audit log every ControlPlaneService call that
// changes the fleet or its tokens, with who made it and its result,
// refusals by the handler included. It runs after the gate: a call the
// gate refused (no token, a role too low) changed nothing, never reaches
// it, and is logged by the gate.
type Audit struct {
	rec AuditRecorder
	log *slog.Logger
}

// NewAudit records through rec and logs an entry it could not write to
// log.
func NewAudit(rec AuditRecorder, log *slog.Logger) *Audit {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Audit{rec: rec, log: log}
}

func (a *Audit) record(ctx context.Context, rpc string, req, resp any, err error) {
	caller, _ := auth.CallerFrom(ctx)
	st := status.Convert(err)
	e := &store.AuditEntry{
		Who:     caller.Name,
		Role:    caller.Role,
		RPC:     rpc,
		Params:  auditText(params(rpc, req)),
		Code:    st.Code().String(),
		Message: auditText(st.Message()),
	}
	if r, ok := req.(interface{ GetNodeId() string }); ok {
		e.NodeID = auditText(r.GetNodeId())
	}
	if r, ok := req.(interface{ GetReason() string }); ok {
		e.Reason = auditText(r.GetReason())
	}
	if err == nil {
		e.Message = auditText(outcome(resp))
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditWriteTimeout)
	defer cancel()
	if werr := a.rec.RecordAudit(wctx, e); werr != nil {
		a.log.Error("audit entry not written", "rpc", rpc, "who", e.Who, "node", e.NodeID, "code", e.Code, "err", werr)
	}
}

// params renders the request's fields other than node_id and reason as
// compact JSON; "" when there are none.
func params(rpc string, req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	r := proto.Clone(m).ProtoReflect()
	keep, only := auditParams[rpc]
	var drop []protoreflect.FieldDescriptor
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if fd.Name() == "node_id" || fd.Name() == "reason" || (only && !slices.Contains(keep, fd.Name())) {
			drop = append(drop, fd)
		}
		return true
	})
	for _, fd := range drop {
		r.Clear(fd)
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r.Interface())
	if err != nil {
		// Only a string that is not UTF-8, which the codec refuses after
		// this runs.
		return fmt.Sprintf("(not shown: %v)", err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return fmt.Sprintf("(not shown: %v)", err)
	}
	if out.String() == "{}" {
		return ""
	}
	return out.String()
}

// outcome says what a successful call left: the node's lifecycle, the
// command it queued, the nodes it made.
func outcome(resp any) string {
	var parts []string
	if r, ok := resp.(interface{ GetNode() *fleetv1.Node }); ok && r.GetNode() != nil {
		parts = append(parts, "lifecycle "+display.Lifecycle(r.GetNode().GetLifecycle()))
	}
	if r, ok := resp.(interface{ GetCommand() *fleetv1.Command }); ok && r.GetCommand() != nil {
		parts = append(parts, "command "+r.GetCommand().GetId())
	}
	if r, ok := resp.(*controlplanev1.ProvisionNodesResponse); ok {
		ids := make([]string, 0, len(r.GetNodes()))
		for _, n := range r.GetNodes() {
			ids = append(ids, n.GetNodeId())
		}
		parts = append(parts, "nodes "+strings.Join(ids, ", "))
	}
	return strings.Join(parts, "; ")
}

// auditText is s as an entry keeps it: valid UTF-8, at most maxAuditText
// bytes, cut at a character and marked with "…".
func auditText(s string) string {
	return display.Cut(strings.ToValidUTF8(s, "\uFFFD"), maxAuditText, "…")
}

func (s *operatorService) ListAudit(ctx context.Context, req *controlplanev1.ListAuditRequest) (*controlplanev1.ListAuditResponse, error) {
	// A node's entries outlive it: an id no node has now is no error.
	if req.GetNodeId() != "" {
		if err := checkNodeID("node_id", req.GetNodeId()); err != nil {
			return nil, err
		}
	}
	if req.GetLimit() > maxAuditLimit {
		return nil, invalid("limit", "%d is above %d", req.GetLimit(), maxAuditLimit)
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = defaultAuditLimit
	}
	entries, err := s.fleet.Audit(ctx, req.GetNodeId(), limit)
	if err != nil {
		return nil, err
	}
	resp := &controlplanev1.ListAuditResponse{Entries: make([]*controlplanev1.AuditEntry, 0, len(entries))}
	for _, e := range entries {
		resp.Entries = append(resp.Entries, &controlplanev1.AuditEntry{
			Id:      e.ID,
			Time:    timestamppb.New(e.Time),
			Who:     e.Who,
			Role:    e.Role,
			Rpc:     e.RPC,
			NodeId:  e.NodeID,
			Reason:  e.Reason,
			Params:  e.Params,
			Code:    e.Code,
			Message: e.Message,
		})
	}
	return resp, nil
}
