// Package tlsmux shares one TLS port between gRPC and plain HTTPS
// downloads. It reads the ALPN protocols of each connection's TLS
// ClientHello, without taking part in the handshake: a client that offers
// HTTP/2 ("h2", which every gRPC client offers) goes on, untouched, to the
// gRPC server, which makes the handshake itself and sees the client's
// certificate as before; any other (curl --http1.1, wget) is served by an
// HTTP/1.1 handler over the same certificate. The control plane uses it to
// serve the agent's package to the instances it launches at the address
// they already dial.
package tlsmux

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// helloTimeout bounds the wait for a new connection's ClientHello, so a
// client that connects and says nothing holds no goroutine for long.
const helloTimeout = 10 * time.Second

// maxHello bounds the ClientHello read: one TLS record.
const maxHello = 16384 + 5

// Mux splits a listener.
type Mux struct {
	inner net.Listener
	grpc  *chanListener
	http  *chanListener
	srv   *http.Server
	log   *slog.Logger
	wg    sync.WaitGroup
}

// New splits l: GRPC returns the listener to give the gRPC server, and the
// connections that do not offer h2 are served by handler over TLS with
// config. Serve must run for either to get connections.
func New(l net.Listener, config *tls.Config, handler http.Handler, log *slog.Logger) *Mux {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := config.Clone()
	c.NextProtos = []string{"http/1.1"}
	m := &Mux{inner: l, grpc: newChanListener(l.Addr()), http: newChanListener(l.Addr()), log: log}
	m.srv = &http.Server{
		Handler:           handler,
		TLSConfig:         c,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return m
}

// GRPC is the listener for the gRPC server.
func (m *Mux) GRPC() net.Listener { return m.grpc }

// Serve accepts connections until the listener is closed, and serves the
// HTTPS side; it returns the accept error that ended it.
func (m *Mux) Serve() error {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_ = m.srv.ServeTLS(m.http, "", "")
	}()
	for {
		conn, err := m.inner.Accept()
		if err != nil {
			m.grpc.close(err)
			m.http.close(err)
			return err
		}
		go m.route(conn)
	}
}

// Close closes the listener and the HTTPS side's connections.
func (m *Mux) Close() error {
	err := m.inner.Close()
	_ = m.srv.Close()
	m.wg.Wait()
	return err
}

// route hands a connection to the side its ClientHello asks for.
func (m *Mux) route(conn net.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(helloTimeout))
	br := bufio.NewReaderSize(conn, maxHello)
	protos, err := peekALPN(br)
	_ = conn.SetReadDeadline(time.Time{})
	c := &peekedConn{Conn: conn, r: br}
	switch {
	case err != nil:
		// Not TLS as this parser reads it: let the gRPC server's own
		// handshake answer and fail it.
		m.log.Debug("unreadable TLS ClientHello", "peer", conn.RemoteAddr().String(), "err", err)
		m.grpc.deliver(c)
	case offers(protos, "h2"):
		m.grpc.deliver(c)
	default:
		m.http.deliver(c)
	}
}

func offers(protos []string, p string) bool {
	for _, q := range protos {
		if q == p {
			return true
		}
	}
	return false
}

// peekALPN reads, without consuming, the ALPN protocols a ClientHello
// offers; none is an empty list.
func peekALPN(br *bufio.Reader) ([]string, error) {
	hdr, err := br.Peek(5)
	if err != nil {
		return nil, err
	}
	if hdr[0] != 22 { // handshake record
		return nil, errors.New("not a TLS handshake")
	}
	n := int(binary.BigEndian.Uint16(hdr[3:5]))
	if n > maxHello-5 {
		return nil, errors.New("record too long")
	}
	rec, err := br.Peek(5 + n)
	if err != nil {
		return nil, err
	}
	return alpn(rec[5:])
}

// alpn parses a ClientHello handshake message for its ALPN extension.
func alpn(b []byte) ([]string, error) {
	r := reader(b)
	typ, ok := r.u8()
	if !ok || typ != 1 {
		return nil, errors.New("not a ClientHello")
	}
	body, ok := r.vec(3)
	if !ok {
		return nil, errShort
	}
	r = reader(body)
	if !r.skip(2+32) || !r.skipVec(1) || !r.skipVec(2) || !r.skipVec(1) {
		return nil, errShort
	}
	if len(r) == 0 {
		return nil, nil // no extensions
	}
	exts, ok := r.vec(2)
	if !ok {
		return nil, errShort
	}
	r = reader(exts)
	for len(r) > 0 {
		typ, ok1 := r.u16()
		data, ok2 := r.vec(2)
		if !ok1 || !ok2 {
			return nil, errShort
		}
		if typ != 16 {
			continue
		}
		list := reader(data)
		names, ok := list.vec(2)
		if !ok {
			return nil, errShort
		}
		var out []string
		for nr := reader(names); len(nr) > 0; {
			name, ok := nr.vec(1)
			if !ok {
				return nil, errShort
			}
			out = append(out, string(name))
		}
		return out, nil
	}
	return nil, nil
}

var errShort = errors.New("ClientHello cut short")

// reader reads TLS's big-endian, length-prefixed fields.
type reader []byte

func (r *reader) u8() (byte, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := (*r)[0]
	*r = (*r)[1:]
	return v, true
}

func (r *reader) u16() (uint16, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := binary.BigEndian.Uint16(*r)
	*r = (*r)[2:]
	return v, true
}

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

// vec reads a field prefixed by its length in size bytes.
func (r *reader) vec(size int) ([]byte, bool) {
	if len(*r) < size {
		return nil, false
	}
	n := 0
	for _, b := range (*r)[:size] {
		n = n<<8 | int(b)
	}
	*r = (*r)[size:]
	if len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

func (r *reader) skipVec(size int) bool { _, ok := r.vec(size); return ok }

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r io.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a listener fed connections by the mux.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
	err   error
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

func (l *chanListener) close(err error) {
	l.once.Do(func() {
		l.err = err
		close(l.done)
	})
}

// Close ends Accept; the mux's own listener stays open until Mux.Close.
func (l *chanListener) Close() error {
	l.close(net.ErrClosed)
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
