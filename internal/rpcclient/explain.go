package rpcclient

import (
	"context"
	"fmt"
	"net"
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

// cause says, from the transport's message, why the connection to t
// failed and what to change; "" when the message says nothing it knows.
func cause(t Target, msg string) string {
	host, _, _ := net.SplitHostPort(t.Addr)
	has := func(s string) bool { return strings.Contains(msg, s) }
	switch {
	case has("connection refused"):
		return fmt.Sprintf("nothing listens at %s: is navarch-controlplane running there, and is that its listen address?", t.Addr)
	case t.Insecure && (has("error reading server preface") || has("connection reset by peer")):
		return fmt.Sprintf("the control plane at %s closed a plaintext connection: it serves TLS, so leave out --insecure", t.Addr)
	case !t.Insecure && has("first record does not look like a TLS handshake"):
		return fmt.Sprintf("the control plane at %s answers in plaintext: it was started with --insecure, so dial it with --insecure (loopback only) or start it with TLS", t.Addr)
	case has("certificate is valid for"), has("certificate is not valid for any names"), has("doesn't contain any IP SANs"):
		return fmt.Sprintf("the control plane's certificate does not name %q, the host dialled: dial a name it has, or add %q to tls.names in its configuration", host, host)
	case has("certificate has expired or is not yet valid"):
		return "the control plane's certificate has expired or is not yet valid: check both machines' clocks; a certificate the control plane generated renews itself while it runs"
	case has("certificate signed by unknown authority") && t.CACert != "":
		return fmt.Sprintf("the control plane at %s presents a certificate that the CA in %s did not sign: give the CA it uses, its DATA_DIR/pki/ca.crt or the operator's (--ca-cert, NAVARCH_CA_CERT or the context's ca-cert)", t.Addr, t.CACert)
	case t.CAPin != "" && (has("certificate signed by unknown authority") || has("has the CA pin")):
		return fmt.Sprintf("the control plane at %s does not present the CA pinned by %s: it is not the control plane the pin was taken from, or its CA changed; take the pin again from its DATA_DIR/pki/ca.crt", t.Addr, t.CAPin)
	}
	return ""
}
