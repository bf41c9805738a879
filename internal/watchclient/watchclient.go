// Package watchclient reads a WatchFleet stream with its messages decoded
// on several goroutines at once and handed out in the order they came.
//
// A snapshot of 100 000 nodes is about 80 MB in 200 chunks, and decoding
// it into messages takes a core about a second: most of the time a
// console waits for its first full fleet. gRPC decodes a stream's
// messages one after another on the goroutine that reads them; here the
// reader only takes each message's bytes, and one decoder a core (up to
// eight) turns them into messages while the next chunks arrive.
package watchclient

import (
	"context"
	"runtime"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// maxDecoders bounds a stream's decoders, and with them what it reads
// ahead: three messages a decoder, up to about 400 KB each in a snapshot.
// Eight bring a 100 000-node snapshot's decoding, about a second of one
// core, near the control plane's own time to send it.
const maxDecoders = 8

// Stream is an open WatchFleet stream. Recv is called from one goroutine.
type Stream struct {
	ctx    context.Context
	cancel context.CancelFunc
	// order holds the messages in the order they came, each decoded or
	// being decoded; the reader closes it after the stream's end.
	order chan *message
	err   error
}

// message is one message of the stream: its bytes until decoded, then
// the message or the error; done is closed once decoded. A message with
// err set and no bytes is the stream's end.
type message struct {
	raw  mem.BufferSlice
	resp *controlplanev1.WatchFleetResponse
	err  error
	done chan struct{}
}

// Watch opens a WatchFleet stream on c. Cancelling ctx, or Close, ends
// it.
func Watch(ctx context.Context, c controlplanev1.ControlPlaneServiceClient, req *controlplanev1.WatchFleetRequest) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	cs, err := c.WatchFleet(ctx, req, grpc.ForceCodecV2(codec{}))
	if err != nil {
		cancel()
		return nil, err
	}
	decoders := min(runtime.GOMAXPROCS(0), maxDecoders)
	s := &Stream{ctx: ctx, cancel: cancel, order: make(chan *message, 2*decoders)}
	work := make(chan *message, decoders)
	for range decoders {
		go decode(work)
	}
	go s.read(ctx, cs, work)
	return s, nil
}

// read takes each message's bytes off the stream and passes the message
// to the decoders and to Recv, in that order on order, until the stream
// ends.
func (s *Stream) read(ctx context.Context, cs grpc.ClientStream, work chan<- *message) {
	defer close(s.order)
	defer close(work)
	for {
		m := &message{done: make(chan struct{})}
		err := cs.RecvMsg(m)
		if err != nil {
			m.err = err
			close(m.done)
		}
		select {
		case s.order <- m:
		case <-ctx.Done():
			m.raw.Free()
			return
		}
		if err != nil {
			return
		}
		select {
		case work <- m:
		case <-ctx.Done():
			m.raw.Free()
			m.err = canceled(ctx)
			close(m.done)
			return
		}
	}
}

// decode decodes messages until work is closed.
func decode(work <-chan *message) {
	for m := range work {
		buf := m.raw.MaterializeToBuffer(mem.DefaultBufferPool())
		m.raw.Free()
		m.raw = nil
		m.resp = &controlplanev1.WatchFleetResponse{}
		if err := proto.Unmarshal(buf.ReadOnlyData(), m.resp); err != nil {
			// As gRPC's own stream reports it.
			m.err = status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
		}
		buf.Free()
		close(m.done)
	}
}

// Recv returns the stream's next message, or the error that ended it;
// after an error it returns that error again.
func (s *Stream) Recv() (*controlplanev1.WatchFleetResponse, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.ctx.Err() != nil {
		// Closed, or its context ended: what was read ahead is not handed
		// out.
		s.err = canceled(s.ctx)
		return nil, s.err
	}
	m, ok := <-s.order
	if !ok {
		// The reader stopped for a cancelled context before it could say so.
		s.err = canceled(s.ctx)
		return nil, s.err
	}
	<-m.done
	if m.err != nil {
		s.err = m.err
		s.cancel()
		return nil, m.err
	}
	return m.resp, nil
}

// canceled is the error gRPC gives a call whose context ended.
func canceled(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}

// Close ends the stream.
func (s *Stream) Close() { s.cancel() }

// codec is gRPC's protobuf codec, but for a message, which it keeps as
// the bytes it came as.
type codec struct{}

func (codec) Name() string { return grpcproto.Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(grpcproto.Name).Marshal(v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*message)
	if !ok {
		return encoding.GetCodecV2(grpcproto.Name).Unmarshal(data, v)
	}
	// gRPC frees data once Unmarshal returns; the reference taken here
	// keeps it for the decoder, which frees it.
	data.Ref()
	m.raw = data
	return nil
}
