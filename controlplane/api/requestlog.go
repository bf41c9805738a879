package api

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/navarch/navarch/controlplane/auth"
	"github.com/navarch/navarch/internal/display"
)

// maxLoggedMessage is where a failed call's message is cut in its line.
const maxLoggedMessage = 1024

// RequestLog logs one line for each call the server answers: its method,
// the node its request names, who called, how long it took and its code.
// The traffic of a fleet (heartbeats, health reports, command polls,
// reads) is logged at debug, since at a hundred thousand nodes a line per
// heartbeat at info would bury everything else; the calls that change the
// fleet or its tokens (those the audit log records) at info; a failed call
// at warn, with its message. A request's body, and so any token or
// certificate it carries, is never logged; the caller is named by its
// token's name or its node certificate's node id. A call the gate refuses
// as its headers arrive never reaches the server's interceptors: the gate
// logs it.
type RequestLog struct {
	log *slog.Logger
	// stopping reports whether the server is shutting down, when calls
	// end Unavailable by design rather than by failure.
	stopping func() bool
}

// NewRequestLog logs to log; stopping, which may be nil, says whether the
// server is shutting down.
func NewRequestLog(log *slog.Logger, stopping func() bool) *RequestLog {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if stopping == nil {
		stopping = func() bool { return false }
	}
	return &RequestLog{log: log, stopping: stopping}
}

func (l *RequestLog) record(ctx context.Context, method string, req any, took time.Duration, err error) {
	code := status.Code(err)
	level := slog.LevelDebug
	if _, changes := audited(method); changes {
		level = slog.LevelInfo
	}
	msg := "rpc"
	if l.failed(code) {
		level, msg = slog.LevelWarn, "rpc failed"
	}
	if !l.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 7)
	attrs = append(attrs, slog.String("method", method))
	if id := requestNodeID(req); id != "" {
		attrs = append(attrs, slog.String("node_id", id))
	}
	if name, role, ok := callerOf(ctx); ok {
		attrs = append(attrs, slog.String("caller", name), slog.String("role", role))
	}
	attrs = append(attrs, slog.Duration("duration", took), slog.String("code", code.String()))
	if code != codes.OK {
		attrs = append(attrs, slog.String("err", logText(status.Convert(err).Message(), maxLoggedMessage)))
	}
	l.log.LogAttrs(ctx, level, msg, attrs...)
}

// failed reports whether a call that ended with code failed. A call its
// caller cancelled (an agent's long poll as the agent stops), or one
// ended because the server is shutting down, did not.
func (l *RequestLog) failed(code codes.Code) bool {
	switch code {
	case codes.OK, codes.Canceled:
		return false
	case codes.Unavailable:
		return !l.stopping()
	}
	return true
}

// requestNodeID is the request's top-level node_id field, read through
// reflection so that every request naming a node is covered, RPCs added
// later included; "" when it has none.
func requestNodeID(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return ""
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("node_id")
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated {
		return ""
	}
	// Logged before the handler has checked it: kept short and valid.
	return logText(r.Get(fd).String(), MaxNodeIDLen)
}

// callerOf names who made the call: an operator token's name and role, or
// the node whose certificate an agent called with. A call that needs no
// identity (the health check, a join, an agent on a control plane without
// agent identities) has none.
func callerOf(ctx context.Context) (name, role string, ok bool) {
	if c, ok := auth.CallerFrom(ctx); ok {
		return c.Name, display.Role(c.Role), true
	}
	if node, ok := auth.NodeFrom(ctx); ok {
		return node, "agent", true
	}
	return "", "", false
}

// logText is s as a log line keeps it: valid UTF-8, at most n bytes, cut
// at a character and marked with "…".
func logText(s string, n int) string {
	return display.Cut(strings.ToValidUTF8(s, "\uFFFD"), n, "…")
}
