// Package standbytest runs a standby control plane for tests: a real gRPC
// server on loopback that answers every call of both services, unary and
// streaming, as a standby does, with apierr.NotLeader naming the leader it
// is told of, and counts the calls it answered.
package standbytest

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Options adjust a standby.
type Options struct {
	// Creds are its transport credentials; nil serves plaintext.
	Creds credentials.TransportCredentials
	// Leader is the HOST:PORT it names as the leader; "" names none.
	Leader string
}

// Standby is a running standby control plane.
type Standby struct {
	// Addr is where it listens.
	Addr string

	mu     sync.Mutex
	leader string
	calls  atomic.Int64
	stop   func()
}

// Start runs a standby until the test ends.
func Start(t testing.TB, o Options) *Standby {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Standby{Addr: lis.Addr().String(), leader: o.Leader}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error) {
			return nil, s.answer()
		}),
		grpc.ChainStreamInterceptor(func(any, grpc.ServerStream, *grpc.StreamServerInfo, grpc.StreamHandler) error {
			return s.answer()
		}),
	}
	if o.Creds != nil {
		opts = append(opts, grpc.Creds(o.Creds))
	}
	srv := grpc.NewServer(opts...)
	// The services are registered so that their calls reach the
	// interceptors, which answer every one of them.
	controlplanev1.RegisterControlPlaneServiceServer(srv, controlplanev1.UnimplementedControlPlaneServiceServer{})
	nodev1.RegisterNodeServiceServer(srv, nodev1.UnimplementedNodeServiceServer{})
	go func() { _ = srv.Serve(lis) }()
	s.stop = sync.OnceFunc(srv.Stop)
	t.Cleanup(s.stop)
	return s
}

func (s *Standby) answer() error {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return apierr.NotLeader(s.leader)
}

// SetLeader changes the leader it names; "" names none.
func (s *Standby) SetLeader(addr string) {
	s.mu.Lock()
	s.leader = addr
	s.mu.Unlock()
}

// Calls is how many calls and streams it has answered.
func (s *Standby) Calls() int64 { return s.calls.Load() }

// Stop stops it before the test ends.
func (s *Standby) Stop() { s.stop() }

// DeadAddr is a loopback address nothing listens on. Listed after a
// standby, with the leader left out, it makes the standby the only
// control plane a client can reach first, so that reaching the leader
// shows the client followed the standby's answer: with the leader listed
// too, a standby slower to connect than gRPC's 250 ms between attempts
// could lose the race to it.
func DeadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
