package rpcclient

import (
	"cmp"
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"

	"github.com/navarch/navarch/internal/apierr"
)

// A connection dialled to several control planes follows the leader.
// Only the leader serves; a standby answers every call with
// apierr.NotLeader, having read and changed nothing, and names the leader
// when one is elected.
//
// The connection's resolver (the follower) gives gRPC's pick_first
// balancer the addresses in the order to try them. pick_first connects to
// the first that accepts a connection, so an address that is down is
// passed over without failing a call; and it keeps a connection that is
// up for as long as its address stays in the list, so a standby, which is
// up, is left out of the list until a call is answered elsewhere.
//
// On a standby's answer that names the leader, the leader goes first and
// the call is made again at once, once: a unary call, or a
// server-streaming call whose stream has delivered nothing yet. When it
// names none, the address after the standby's goes first and the error
// goes back to the caller, whose own retry finds the next control plane;
// a call that failed in the transport is never made again here, since it
// may have reached a leader.

// followScheme is the scheme of the follower's resolver; each connection
// registers its own.
const followScheme = "navarch-cp"

// follower resolves a connection's addresses and moves it to the leader.
type follower struct {
	addrs []string

	// dialled maps the remote IP:PORT of each connection made to the
	// address it was dialled as, to tell which address a standby's
	// answer came from.
	dialled sync.Map

	// mu is held while a new list reaches gRPC, so lists arrive in order.
	mu    sync.Mutex
	cc    resolver.ClientConn
	first string // the address pick_first tries first
	left  string // a standby left out of the list, or ""
	// leaving is whether left is set, read without mu by every answer
	// from a leader.
	leaving atomic.Bool
}

func newFollower(addrs []string) *follower {
	return &follower{addrs: addrs, first: addrs[0]}
}

// Build implements resolver.Builder. gRPC builds the resolver when the
// connection is first used and again when it leaves idleness; each build
// starts from the list as the follower left it.
func (f *follower) Build(_ resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cc = cc
	f.publishLocked()
	return builtFollower{f: f, cc: cc}, nil
}

// Scheme implements resolver.Builder.
func (f *follower) Scheme() string { return followScheme }

// builtFollower is one build of the follower's resolver.
type builtFollower struct {
	f  *follower
	cc resolver.ClientConn
}

// ResolveNow implements resolver.Resolver: the list changes only when an
// answer moves the connection, never by asking.
func (builtFollower) ResolveNow(resolver.ResolveNowOptions) {}

// Close implements resolver.Resolver.
func (b builtFollower) Close() {
	b.f.mu.Lock()
	defer b.f.mu.Unlock()
	if b.f.cc == b.cc {
		b.f.cc = nil
	}
}

// order is the list pick_first is given: first, then the addresses given
// at Dial, from the one after first round to the one before it, without
// the standby left out.
func (f *follower) order() []string {
	start := slices.Index(f.addrs, f.first) + 1 // 0 when first is not in the list
	out := []string{f.first}
	for i := range f.addrs {
		a := f.addrs[(start+i)%len(f.addrs)]
		if a != f.first && a != f.left {
			out = append(out, a)
		}
	}
	return out
}

func (f *follower) publishLocked() {
	if f.cc == nil {
		return // not built yet, or idle: the next build publishes
	}
	var s resolver.State
	for _, a := range f.order() {
		// Each address is verified against its own host, not the first's.
		s.Addresses = append(s.Addresses, resolver.Address{Addr: a, ServerName: a})
	}
	// An error means the channel is closing or the list was refused;
	// either way the next call reports it.
	_ = f.cc.UpdateState(s)
}

// dial connects to addr and remembers the remote address it reached.
func (f *follower) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	f.dialled.Store(c.RemoteAddr().String(), addr)
	return c, nil
}

// answeredBy is the address, as dialled, of the control plane that p
// names; "" when none is known.
func (f *follower) answeredBy(p *peer.Peer) string {
	if p == nil || p.Addr == nil {
		return ""
	}
	if a, ok := f.dialled.Load(p.Addr.String()); ok {
		return a.(string)
	}
	return ""
}

// learn moves the connection after a call's outcome, answered by the
// control plane p names, and reports whether the call should be made
// again at once: a standby named the leader.
func (f *follower) learn(p *peer.Peer, err error) bool {
	leader, standby := apierr.Leader(err)
	if !standby && !f.leaving.Load() {
		return false
	}
	from := f.answeredBy(p)
	f.mu.Lock()
	defer f.mu.Unlock()
	from = cmp.Or(from, f.first)
	switch {
	case !standby:
		// A leader answered, or none was reached: bring back the standby
		// left out, which may lead by now. pick_first keeps the
		// connection it has, which is in the list.
		f.leave("")
	case leader != "" && leader != from && checkAddr(leader) == nil:
		f.first = leader
		f.leave(from)
		return true
	default:
		// No leader yet (or a standby naming itself): try the next.
		f.first = f.addrs[(slices.Index(f.addrs, from)+1)%len(f.addrs)]
		f.leave(from)
	}
	return false
}

// leave leaves addr out of the list ("" leaves none out) and publishes
// the list; f.mu is held.
func (f *follower) leave(addr string) {
	if addr == f.first {
		addr = ""
	}
	f.left = addr
	f.leaving.Store(addr != "")
	f.publishLocked()
}

// unary makes a call and, when a standby answered naming the leader, makes
// it again there, once.
func (f *follower) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var p peer.Peer
	err := invoker(ctx, method, req, reply, cc, append(slices.Clip(opts), grpc.Peer(&p))...)
	if !f.learn(&p, err) {
		return err
	}
	var again peer.Peer
	err = invoker(ctx, method, req, reply, cc, append(slices.Clip(opts), grpc.Peer(&again))...)
	f.learn(&again, err)
	return err
}

// stream opens a stream; a server-streaming one is opened again on the
// leader when a standby's answer is the first thing it receives.
func (f *follower) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if !desc.ServerStreams || desc.ClientStreams {
		return streamer(ctx, desc, cc, method, opts...)
	}
	s := &followedStream{f: f, open: func(p *peer.Peer) (grpc.ClientStream, error) {
		return streamer(ctx, desc, cc, method, append(slices.Clip(opts), grpc.Peer(p))...)
	}}
	s.peer = new(peer.Peer)
	cs, err := s.open(s.peer)
	if err != nil {
		f.learn(nil, err)
		return nil, err
	}
	s.cur = cs
	return s, nil
}

// followedStream is a server-streaming call that keeps its one request,
// so that it can be sent again to the leader if the first answer is a
// standby's.
type followedStream struct {
	f    *follower
	open func(*peer.Peer) (grpc.ClientStream, error)

	mu       sync.Mutex
	cur      grpc.ClientStream
	peer     *peer.Peer
	req      any
	sent     bool // the request was sent
	closed   bool // CloseSend was called
	received bool // a message arrived: the stream is past moving
	reopened bool
}

func (s *followedStream) current() grpc.ClientStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *followedStream) Header() (metadata.MD, error) { return s.current().Header() }
func (s *followedStream) Trailer() metadata.MD         { return s.current().Trailer() }
func (s *followedStream) Context() context.Context     { return s.current().Context() }

func (s *followedStream) SendMsg(m any) error {
	s.mu.Lock()
	s.req, s.sent = m, true
	cur := s.cur
	s.mu.Unlock()
	return cur.SendMsg(m)
}

func (s *followedStream) CloseSend() error {
	s.mu.Lock()
	s.closed = true
	cur := s.cur
	s.mu.Unlock()
	return cur.CloseSend()
}

func (s *followedStream) RecvMsg(m any) error {
	s.mu.Lock()
	cur, p := s.cur, s.peer
	s.mu.Unlock()
	err := cur.RecvMsg(m)
	s.mu.Lock()
	first := !s.received
	s.received = s.received || err == nil
	mayReopen := first && err != nil && !s.reopened
	s.mu.Unlock()
	if err == nil {
		if first {
			s.f.learn(p, nil)
		}
		return nil
	}
	// A stream that ends, well or not, tells where the next should go.
	if !s.f.learn(p, err) || !mayReopen {
		return err
	}
	if rerr := s.reopen(); rerr != nil {
		return rerr
	}
	return s.RecvMsg(m)
}

// reopen opens the stream again, on the leader the connection now
// prefers, and sends it what the first one was sent.
func (s *followedStream) reopen() error {
	p := new(peer.Peer)
	cs, err := s.open(p)
	if err != nil {
		s.f.learn(nil, err)
		return err
	}
	s.mu.Lock()
	s.cur, s.peer, s.reopened = cs, p, true
	req, sent, closed := s.req, s.sent, s.closed
	s.mu.Unlock()
	if sent {
		if err := cs.SendMsg(req); err != nil {
			return err
		}
	}
	if closed {
		return cs.CloseSend()
	}
	return nil
}
