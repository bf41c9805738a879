package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/agent/identity"
	"github.com/navarch/navarch/internal/rpcclient"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// errNotJoined says what to do when there is no identity and no token.
var errNotJoined = errors.New("this node has not joined: give --join-token (an operator makes one with 'navarch token create NAME --role agent')")

// Join attempts that fail for a reason that may pass (the control plane
// not up yet) are retried from firstJoinRetry, doubling, up to
// maxJoinRetry; each attempt is bounded by joinTimeout.
const (
	firstJoinRetry = time.Second
	maxJoinRetry   = 30 * time.Second
	joinTimeout    = 30 * time.Second
)

// trust is what the agent was told about the control plane.
type trust struct {
	addr     string
	nodeID   string
	stateDir string
	// token is the join token; needed only until the node has joined.
	token string
	// caCert is a CA file given by --ca-cert or $NAVARCH_CA_CERT.
	caCert string
	// caPin is --ca-hash.
	caPin string
}

// joinTokenFromEnv returns flagValue if set, else $NAVARCH_JOIN_TOKEN.
func joinTokenFromEnv(flagValue string) string {
	return cmp.Or(flagValue, os.Getenv("NAVARCH_JOIN_TOKEN"))
}

// identify opens the node's identity, joins with the token when there is
// none (or it has expired), and returns the identity and how to reach the
// control plane as that node: with its certificate, trusting the CA file
// given or else the CA the control plane gave at the join.
func identify(ctx context.Context, log *slog.Logger, tr trust) (*identity.Identity, rpcclient.Target, error) {
	id, err := identity.Open(tr.stateDir)
	if err != nil {
		return nil, rpcclient.Target{}, err
	}
	if id.Joined() && id.NodeID() != tr.nodeID {
		return nil, rpcclient.Target{}, fmt.Errorf("%s holds the identity of node %q, not %q: give each node its own --state-dir", tr.stateDir, id.NodeID(), tr.nodeID)
	}
	expired := id.Joined() && !time.Now().Before(id.NotAfter())
	switch {
	case id.Joined() && !expired:
		log.Info("node identity found", "node", tr.nodeID, "state_dir", tr.stateDir, "expires", id.NotAfter())
	case tr.token == "" && expired:
		return nil, rpcclient.Target{}, fmt.Errorf("the node certificate in %s expired at %s: give --join-token to join again", tr.stateDir, id.NotAfter().Format(time.RFC3339))
	case tr.token == "":
		return nil, rpcclient.Target{}, errNotJoined
	default:
		if err := join(ctx, log, id, tr); err != nil {
			return nil, rpcclient.Target{}, err
		}
	}
	if tr.caPin != "" && rpcclient.Pin(id.CA()) != tr.caPin {
		return nil, rpcclient.Target{}, fmt.Errorf("the CA in %s does not have the --ca-hash pin %s (it has %s)", id.CAFile(), tr.caPin, rpcclient.Pin(id.CA()))
	}
	return id, rpcclient.Target{Addr: tr.addr, CACert: cmp.Or(tr.caCert, id.CAFile()), Certificate: id.Certificate}, nil
}

// join gets the node its certificate over a connection that checks the
// control plane (by the CA file or the pin) but presents no certificate.
// It retries while the control plane cannot be reached and stops when ctx
// ends. The token is never logged.
func join(ctx context.Context, log *slog.Logger, id *identity.Identity, tr trust) error {
	target := rpcclient.Target{Addr: tr.addr, CAPin: tr.caPin}
	if tr.caPin == "" {
		target.CACert = rpcclient.CACertFromEnv(tr.caCert)
	}
	conn, err := rpcclient.Dial(target)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := nodev1.NewNodeServiceClient(conn)
	var retry time.Duration
	for {
		attempt, cancel := context.WithTimeout(ctx, joinTimeout)
		err := id.Join(attempt, client, tr.nodeID, tr.token)
		cancel()
		if err == nil {
			log.Info("joined the control plane", "node", tr.nodeID, "state_dir", tr.stateDir, "expires", id.NotAfter())
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !mayPass(status.Code(err)) {
			return err
		}
		retry = min(max(2*retry, firstJoinRetry), maxJoinRetry)
		log.Warn("join failed; retrying", "node", tr.nodeID, "err", err, "retry_in", retry)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}

// mayPass reports whether a failed join is worth trying again as it is:
// a refused token or node id will be refused again.
func mayPass(code codes.Code) bool {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// errNoToken says what an operator must do when the control plane refused
// the node's certificate and the agent has no token to join again with.
var errNoToken = errors.New("no join token: give --join-token or NAVARCH_JOIN_TOKEN and restart the agent")

// rejoiner joins the node again after the control plane refused its
// certificate (an operator reset its identity), with the same key, and
// re-dials conn so that the calls after it present the new certificate.
type rejoiner struct {
	log  *slog.Logger
	id   *identity.Identity
	tr   trust
	conn *redialConn
}

func (r *rejoiner) rejoin(ctx context.Context) error {
	if r.tr.token == "" {
		return errNoToken
	}
	tr := r.tr
	if tr.caPin == "" && tr.caCert == "" {
		// Trust the CA this node was given at its first join, as its
		// calls do, not this machine's default control plane's.
		tr.caCert = r.id.CAFile()
	}
	if err := join(ctx, r.log, r.id, tr); err != nil {
		return err
	}
	return r.conn.redial()
}

// redialConn is the agent's connection to the control plane. A
// grpc.ClientConn keeps the TLS session it opened, and with it the
// certificate it presented; redial replaces it with a new one whose
// handshake presents the certificate the node has now.
type redialConn struct {
	target rpcclient.Target

	mu   sync.RWMutex
	conn *grpc.ClientConn
}

func dialRedial(t rpcclient.Target) (*redialConn, error) {
	conn, err := rpcclient.Dial(t)
	if err != nil {
		return nil, err
	}
	return &redialConn{target: t, conn: conn}, nil
}

func (c *redialConn) current() *grpc.ClientConn {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.conn
}

// Invoke implements grpc.ClientConnInterface.
func (c *redialConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.current().Invoke(ctx, method, args, reply, opts...)
}

// NewStream implements grpc.ClientConnInterface.
func (c *redialConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.current().NewStream(ctx, desc, method, opts...)
}

// redial opens a new connection and closes the old one; calls still on
// the old one fail as canceled and are made again by their loops.
func (c *redialConn) redial() error {
	conn, err := rpcclient.Dial(c.target)
	if err != nil {
		return fmt.Errorf("reconnect with the new node certificate: %w", err)
	}
	c.mu.Lock()
	old := c.conn
	c.conn = conn
	c.mu.Unlock()
	return old.Close()
}

// Close closes the connection in use.
func (c *redialConn) Close() error { return c.current().Close() }
