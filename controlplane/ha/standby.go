package ha

import (
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/navarch/navarch/internal/apierr"
)

// Standby is a standby's gRPC server: every call but the health check is
// answered with apierr.NotLeader and the leader's address, before its
// request is read, so that clients move to the leader; the health check
// says NOT_SERVING. It holds nothing of the fleet.
type Standby struct {
	srv *grpc.Server
}

// NewStandby builds the standby's server over creds (the control plane's
// own transport security, so clients verify it as they verify the
// leader); leader says where the leader is, "" while none is known.
func NewStandby(creds credentials.TransportCredentials, leader func() string) *Standby {
	srv := grpc.NewServer(grpc.Creds(creds), grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return apierr.NotLeader(leader())
	}))
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, h)
	return &Standby{srv: srv}
}

// Serve answers calls on lis until Stop.
func (s *Standby) Serve(lis net.Listener) error { return s.srv.Serve(lis) }

// Stop closes the standby's connections and its listener at once: its
// calls are all answered as they arrive, so none is cut short.
func (s *Standby) Stop() { s.srv.Stop() }

// Handoff shares one listening socket between the servers that take turns
// on it, a standby and then the leader, so the port is never closed
// between them and a client never finds it refused. Each turn gets a
// listener whose Close ends that turn only.
type Handoff struct {
	lis    net.Listener
	conns  chan net.Conn
	errc   chan error
	closed chan struct{}
	once   sync.Once
}

// NewHandoff starts accepting on lis.
func NewHandoff(lis net.Listener) *Handoff {
	h := &Handoff{lis: lis, conns: make(chan net.Conn), errc: make(chan error, 1), closed: make(chan struct{})}
	go h.accept()
	return h
}

func (h *Handoff) accept() {
	for {
		c, err := h.lis.Accept()
		if err != nil {
			h.errc <- err
			return
		}
		select {
		case h.conns <- c:
		case <-h.closed:
			// No turn will take it.
			_ = c.Close()
			return
		}
	}
}

// Turn is a listener for the next server: its Accept takes the
// connections that arrive until it is closed.
func (h *Handoff) Turn() net.Listener {
	return &turn{h: h, closed: make(chan struct{})}
}

// Close closes the socket.
func (h *Handoff) Close() error {
	var err error
	h.once.Do(func() {
		close(h.closed)
		err = h.lis.Close()
	})
	return err
}

type turn struct {
	h      *Handoff
	closed chan struct{}
	once   sync.Once
}

func (t *turn) Accept() (net.Conn, error) {
	select {
	case c := <-t.h.conns:
		return c, nil
	case err := <-t.h.errc:
		// Kept for the next turn too: the socket is gone for all.
		t.h.errc <- err
		return nil, err
	case <-t.closed:
		return nil, net.ErrClosed
	}
}

func (t *turn) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}

func (t *turn) Addr() net.Addr { return t.h.lis.Addr() }
