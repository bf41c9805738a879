package api

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/auth"
)

// Interceptors is what the server does around every call, outermost
// first:
//
//  1. the request log times the call and logs its line once it is
//     answered, whatever answered it;
//  2. a handler's panic is logged with its stack and answered Internal;
//  3. the gate checks, a second time, that it let the call in;
//  4. the audit records a call that changes the fleet or its tokens,
//     with its result (a panic recorded as Internal), before the reply
//     goes; an entry that cannot be written is logged, and the call's
//     answer stands, since the change it records is made;
//  5. the codec refuses a request whose string field is not UTF-8.
//
// They run in one function for unary calls and one for streams, not as a
// chain of five interceptors: each link of gRPC's chain is two frames on
// the call's stack and, for a unary call, a closure on the heap. A command
// stream keeps its frames for as long as an agent holds it open, and the
// collector walks every such stack at every cycle; at 100 000 nodes the
// chain's links were half the frames of each of 100 000 stacks. (With
// metrics_listen set, gRPC's metrics interceptor is chained outside it.)
//
// A nil part is skipped, so that a test can run one.
type Interceptors struct {
	Log   *RequestLog
	Gate  *auth.Gate
	Audit *Audit
	Codec *Codec
	// Panics is where a handler's panic is logged; nil discards it.
	Panics *slog.Logger
}

// internalAnswer is what a caller is told of a handler's panic.
const internalAnswer = "internal error; the control plane logged the details"

// Unary is the interceptor for unary calls.
func (in *Interceptors) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	var rpc string
	audit := false
	defer func() {
		if r := recover(); r != nil {
			if audit {
				r = in.auditPanic(ctx, rpc, req, r)
			}
			resp, err = nil, in.panicked(info.FullMethod, "panic in handler", r)
		}
		if in.Log != nil {
			in.Log.record(ctx, info.FullMethod, req, time.Since(start), err)
		}
	}()
	if in.Gate != nil {
		if err := in.Gate.Passed(ctx, info.FullMethod); err != nil {
			return nil, err
		}
	}
	if in.Audit != nil {
		rpc, audit = audited(info.FullMethod)
	}
	if in.Codec != nil {
		err = in.Codec.refuse(req)
	}
	if err == nil {
		resp, err = handler(ctx, req)
	}
	if audit {
		// Recorded once: a panic in the record is not the handler's.
		audit = false
		in.Audit.record(ctx, rpc, req, resp, err)
	}
	return resp, err
}

// Stream is the interceptor for streams. A stream is logged as it ends,
// and its requests are not read here, so its line names no node; the
// codec refuses a streamed request as the handler receives it.
func (in *Interceptors) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = in.panicked(info.FullMethod, "panic in stream handler", r)
		}
		if in.Log != nil {
			in.Log.record(ss.Context(), info.FullMethod, nil, time.Since(start), err)
		}
	}()
	if in.Gate != nil {
		if err := in.Gate.Passed(ss.Context(), info.FullMethod); err != nil {
			return err
		}
	}
	if in.Codec != nil {
		ss = &checkedStream{ServerStream: ss, c: in.Codec}
	}
	return handler(srv, ss)
}

// auditPanic records a call whose handler panicked with r as the Internal
// it is answered, and returns the panic to log: r, or the record's own.
func (in *Interceptors) auditPanic(ctx context.Context, rpc string, req, r any) (logged any) {
	logged = r
	defer func() {
		if r2 := recover(); r2 != nil {
			logged = r2
		}
	}()
	in.Audit.record(ctx, rpc, req, nil, status.Error(codes.Internal, "the handler panicked"))
	return logged
}

func (in *Interceptors) panicked(method, msg string, r any) error {
	if in.Panics != nil {
		in.Panics.Error(msg, "method", method, "panic", r, "stack", string(debug.Stack()))
	}
	return status.Error(codes.Internal, internalAnswer)
}
