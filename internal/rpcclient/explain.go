package rpcclient

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The transport reports a failed connection in its own words, deep in a
// gRPC Unavailable status: "transport: authentication handshake failed:
// tls: failed to verify certificate: x509: ...". explain puts in front of
// such a message what is wrong and what to change, keeping the original
// after it. The code stays Unavailable: the call never reached the
// control plane, so there is nothing it could have authenticated.

// unaryExplain and streamExplain explain the failures of every call and
// stream made through a connection to t.
func unaryExplain(t Target) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return explain(t, invoker(ctx, method, req, reply, cc, opts...))
	}
}

func streamExplain(t Target) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			return nil, explain(t, err)
		}
		return explainedStream{ClientStream: s, t: t}, nil
	}
}

type explainedStream struct {
	grpc.ClientStream
	t Target
}

func (s explainedStream) SendMsg(m any) error { return explain(s.t, s.ClientStream.SendMsg(m)) }
func (s explainedStream) RecvMsg(m any) error { return explain(s.t, s.ClientStream.RecvMsg(m)) }

// explain returns err with the reason in front when it is a connection
// failure whose cause is known, else err unchanged.
func explain(t Target, err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return err
	}
	why := cause(t, st.Message())
	if why == "" {
		return err
	}
	return status.Error(codes.Unavailable, why+" ("+st.Message()+")")
}

// What Unreachable says of a connection that failed, in a few words.
const (
	NoSuchHost       = "no such host"
	LookupFailed     = "host name lookup failed"
	Refused          = "connection refused"
	TimedOut         = "timed out"
	UnknownAuthority = "TLS failure: certificate from an unknown authority"
	OtherHost        = "TLS failure: certificate names another host"
	Expired          = "TLS failure: certificate expired or not yet valid"
	Plaintext        = "TLS failure: the control plane answers in plaintext"
	HandshakeFailed  = "TLS failure: handshake failed"
	Closed           = "connection closed by the control plane"
	Unavailable      = "control plane unavailable"
)

// Unreachable names, from the transport's message (explained or not), why
// the control plane could not be reached; TLS failures say which check
// failed.
func Unreachable(msg string) string {
	has := func(words ...string) bool {
		return slices.ContainsFunc(words, func(w string) bool { return strings.Contains(msg, w) })
	}
	switch {
	case has("produced zero addresses", "no such host"):
		return NoSuchHost
	case has("lookup error"):
		return LookupFailed
	case has("connection refused"):
		return Refused
	case has("i/o timeout", "deadline exceeded"):
		return TimedOut
	case has("certificate signed by unknown authority", "has the CA pin"):
		return UnknownAuthority
	case has("certificate is valid for", "certificate is not valid for any names", "doesn't contain any IP SANs"):
		return OtherHost
	case has("certificate has expired or is not yet valid"):
		return Expired
	case has("first record does not look like a TLS handshake"):
		return Plaintext
	case has("tls:", "x509:", "handshake"):
		return HandshakeFailed
	case has("connection reset", "error reading server preface", "EOF", "transport is closing", "broken pipe"):
		return Closed
	}
	return Unavailable
}

// cause says, from the transport's message, why the connection to t
// failed and what to change; "" when the message says nothing it knows.
func cause(t Target, msg string) string {
	// A connection to several control planes fails when none could be
	// reached, and the transport's words are those of the last tried.
	addrs, _ := t.Addrs()
	where := strings.Join(addrs, ", ")
	if len(addrs) > 1 {
		switch why := Unreachable(msg); why {
		case Refused:
			return fmt.Sprintf("nothing listens at %s: is navarch-controlplane running there, and are those its listen addresses?", where)
		case OtherHost:
			return fmt.Sprintf("a control plane's certificate does not name the host it was dialled as (of %s): dial names they have, or add them to tls.names in their configuration", where)
		}
	}
	host, _, _ := net.SplitHostPort(t.Addr)
	switch why := Unreachable(msg); {
	case why == Refused:
		return fmt.Sprintf("nothing listens at %s: is navarch-controlplane running there, and is that its listen address?", where)
	case why == Closed && t.Insecure && (strings.Contains(msg, "error reading server preface") || strings.Contains(msg, "connection reset by peer")):
		return fmt.Sprintf("the control plane at %s closed a plaintext connection: it serves TLS, so leave out --insecure", where)
	case why == Plaintext && !t.Insecure:
		return fmt.Sprintf("the control plane at %s answers in plaintext: it was started with --insecure, so dial it with --insecure (loopback only) or start it with TLS", where)
	case why == OtherHost:
		return fmt.Sprintf("the control plane's certificate does not name %q, the host dialled: dial a name it has, or add %q to tls.names in its configuration", host, host)
	case why == Expired:
		return "the control plane's certificate has expired or is not yet valid: check both machines' clocks; a certificate the control plane generated renews itself while it runs"
	case why == UnknownAuthority && t.CACert != "" && strings.Contains(msg, "certificate signed by unknown authority"):
		return fmt.Sprintf("the control plane at %s presents a certificate that the CA in %s did not sign: give the CA it uses, its DATA_DIR/pki/ca.crt or the operator's (--ca-cert, NAVARCH_CA_CERT or the context's ca-cert)", where, t.CACert)
	case why == UnknownAuthority && t.CAPin != "":
		return fmt.Sprintf("the control plane at %s does not present the CA pinned by %s: it is not the control plane the pin was taken from, or its CA changed; take the pin again from its DATA_DIR/pki/ca.crt", where, t.CAPin)
	}
	return ""
}
