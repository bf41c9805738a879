// Package rpcclient holds every client's dial options in one place: the
// agent, the console and the scripting commands dial the control plane
// through Dial, so transport security and credentials slot in here.
package rpcclient

import (
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// DefaultServer is the control plane address when none is given.
const DefaultServer = "127.0.0.1:50051"

// ServerFromEnv returns flagValue if set, else $NAVARCH_SERVER, else the
// default address.
func ServerFromEnv(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if v := os.Getenv("NAVARCH_SERVER"); v != "" {
		return v
	}
	return DefaultServer
}

// Dial prepares a connection to the control plane at addr (HOST:PORT). The
// connection is lazy: it connects on first use and reconnects by itself.
func Dial(addr string) (*grpc.ClientConn, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("server address %q is not HOST:PORT", addr)
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect within seconds of a control plane restart, not minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 10 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}
