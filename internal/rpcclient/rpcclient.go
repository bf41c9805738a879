// Package rpcclient holds every client's dial options in one place: the
// agent, the console and the scripting commands dial the control plane
// through Dial, so transport security and credentials are the same for
// all of them.
package rpcclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/navarch/navarch/internal/statedir"
)

// DefaultServer is the control plane address when none is given.
const DefaultServer = "127.0.0.1:50051"

// The environment variables a client reads its settings from when no flag
// gives them.
const (
	EnvServer = "NAVARCH_SERVER"
	EnvCACert = "NAVARCH_CA_CERT"
	EnvToken  = "NAVARCH_TOKEN"
)

// Target is a control plane and how to trust it.
type Target struct {
	// Addr is its HOST:PORT, or the addresses of several control planes
	// (one leader, the others standbys) joined by commas, as ParseAddrs
	// reads them.
	Addr string
	// CACert is a PEM file with the CA that signed its certificate: its
	// own CA's DATA_DIR/pki/ca.crt, or the operator's.
	CACert string
	// Insecure dials without TLS, a control plane started with --insecure.
	Insecure bool
	// CAPin, used when CACert is empty, trusts the control plane by the
	// hash of its CA's public key instead of a CA file: "sha256:HEX", the
	// SHA-256 of the CA certificate's DER SubjectPublicKeyInfo, as
	// kubeadm's --discovery-token-ca-cert-hash (see Pin). The server must
	// present that CA in its chain.
	CAPin string
	// Token is the operator token sent with every call; empty sends none.
	Token string
	// Certificate is the client certificate to present, asked at each TLS
	// handshake so that a renewed certificate is used by the next
	// connection; nil presents none.
	Certificate func() (*tls.Certificate, error)
	// Context names the client context (navarch config) the target was
	// chosen by, for the console to show; empty when none was. Dial does
	// not read it.
	Context string
}

// ServerFromEnv returns flagValue if set, else $NAVARCH_SERVER, else the
// default address.
func ServerFromEnv(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv(EnvServer); v != "" {
		return v
	}
	return DefaultServer
}

// CACertFromEnv returns flagValue if set, else $NAVARCH_CA_CERT, else the
// CA of a control plane with the default data directory on this machine,
// if there is one; else "".
func CACertFromEnv(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv(EnvCACert); v != "" {
		return v
	}
	return LocalCACert()
}

// LocalCACert is the CA of a control plane with the default data
// directory on this machine, if there is one; else "".
func LocalCACert() string {
	if _, err := os.Stat(statedir.CACert()); err == nil {
		return statedir.CACert()
	}
	return ""
}

// Dial prepares a connection to the control plane. The connection is
// lazy: it connects on first use and reconnects by itself. Without
// Insecure it speaks TLS and trusts only t.CACert, or else the CA pinned
// by t.CAPin, and checks each control plane's certificate against the
// host it was dialled as. Given several addresses, the connection follows
// the leader among them (see follower).
func Dial(t Target) (*grpc.ClientConn, error) {
	addrs, err := t.Addrs()
	if err != nil {
		return nil, err
	}
	creds, err := transport(t, addrs)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(unaryExplain(t)),
		grpc.WithChainStreamInterceptor(streamExplain(t)),
	}
	if t.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer{token: t.Token, tls: !t.Insecure}))
	}
	target := addrs[0]
	if len(addrs) > 1 {
		f := newFollower(addrs)
		target = followScheme + ":///control-plane"
		// Inside explain, so that the caller is told of the last answer.
		opts = append(opts, grpc.WithResolvers(f), grpc.WithContextDialer(f.dial),
			grpc.WithChainUnaryInterceptor(f.unary), grpc.WithChainStreamInterceptor(f.stream))
	}
	conn, err := grpc.NewClient(target, append(opts,
		// Reconnect within seconds of a control plane restart, not minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 10 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", t.Addr, err)
	}
	return conn, nil
}

func transport(t Target, addrs []string) (credentials.TransportCredentials, error) {
	if t.Insecure {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.Certificate != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := t.Certificate()
			if err != nil {
				return nil, fmt.Errorf("client certificate: %w", err)
			}
			if c == nil {
				return &tls.Certificate{}, nil // present none
			}
			return c, nil
		}
	}
	switch {
	case t.CACert != "":
		pem, err := os.ReadFile(t.CACert)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read CA certificate: %s holds no PEM certificate", t.CACert)
		}
		cfg.RootCAs = pool
	case t.CAPin != "":
		sum, err := parsePin(t.CAPin)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if host, _, _ := net.SplitHostPort(a); host == "" {
				return nil, fmt.Errorf("server address %q names no host to check the pinned control plane's certificate against", a)
			}
		}
		return pinned{cfg: cfg, sum: sum}, nil
	default:
		return nil, errors.New("no CA certificate to trust the control plane with: give its DATA_DIR/pki/ca.crt (--ca-cert or NAVARCH_CA_CERT), or --insecure for a control plane started with --insecure")
	}
	return credentials.NewTLS(cfg), nil
}

// bearer sends an operator token with every call, as
// "authorization: Bearer TOKEN".
type bearer struct {
	token string
	tls   bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity keeps the token off plaintext connections,
// except to a control plane that serves plaintext on loopback.
func (b bearer) RequireTransportSecurity() bool { return b.tls }

// LocalAdminToken is, for a control plane on this machine (addr on
// loopback, or every address of a list), the admin token of a control
// plane with the default data directory, if this user can read it; else
// "". This machine's admin token is never sent anywhere else.
func LocalAdminToken(addr string) (string, error) {
	addrs, err := ParseAddrs(addr)
	if err != nil || slices.ContainsFunc(addrs, func(a string) bool { return !onLoopback(a) }) {
		return "", nil
	}
	b, err := os.ReadFile(statedir.AdminToken())
	switch {
	case err == nil:
		return strings.TrimSpace(string(b)), nil
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission):
		return "", nil
	default:
		return "", fmt.Errorf("read %s: %w", statedir.AdminToken(), err)
	}
}

// onLoopback reports whether addr (HOST:PORT) names this machine.
func onLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
