// Package watchclient reads a WatchFleet stream with its messages decoded
// on several goroutines at once and handed out in the order they came.
//
// A snapshot of 100 000 nodes is about 80 MB in 200 chunks, and decoding
// it into messages takes a core about a second: most of the time a
// console waits for its first full fleet. gRPC decodes a stream's
// messages one after another on the goroutine that reads them; here the
// reader only takes each message's bytes, and one decoder a core (up to
// eight) turns them into what the client keeps while the next chunks
// arrive. The client says how: Message decodes whole messages, and a
// client that keeps less of each node (the console) decodes only that.
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

// Decoder turns one message's wire bytes into what the client keeps of
// it. It runs on several goroutines at once, so it keeps no state of its
// own, and must not keep b, which is reused once it returns.
type Decoder[T any] func(b []byte) (T, error)

// Message decodes a whole WatchFleetResponse.
func Message(b []byte) (*controlplanev1.WatchFleetResponse, error) {
	m := &controlplanev1.WatchFleetResponse{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, err
	}
	return m, nil
}

// Stream is an open WatchFleet stream whose messages decode as T. Recv is
// called from one goroutine.
type Stream[T any] struct {
	ctx    context.Context
	cancel context.CancelFunc
	// order holds the messages in the order they came, each decoded or
	// being decoded; the reader closes it after the stream's end.
	order chan *message[T]
	err   error
}

// message is one message of the stream: its bytes until decoded, then
// what it decoded to or the error; done is closed once decoded. A message
// with err set and no bytes is the stream's end.
type message[T any] struct {
	raw  mem.BufferSlice
	resp T
	err  error
	done chan struct{}
}

// Watch opens a WatchFleet stream on c whose messages decode decodes.
// Cancelling ctx, or Close, ends it.
func Watch[T any](ctx context.Context, c controlplanev1.ControlPlaneServiceClient, req *controlplanev1.WatchFleetRequest, decode Decoder[T]) (*Stream[T], error) {
	ctx, cancel := context.WithCancel(ctx)
	cs, err := c.WatchFleet(ctx, req, grpc.ForceCodecV2(codec{}))
	if err != nil {
		cancel()
		return nil, err
	}
	decoders := min(runtime.GOMAXPROCS(0), maxDecoders)
	s := &Stream[T]{ctx: ctx, cancel: cancel, order: make(chan *message[T], 2*decoders)}
	work := make(chan *message[T], decoders)
	for range decoders {
		go decodeAll(work, decode)
	}
	go s.read(ctx, cs, work)
	return s, nil
}

// read takes each message's bytes off the stream and passes the message
// to the decoders and to Recv, in that order on order, until the stream
// ends.
func (s *Stream[T]) read(ctx context.Context, cs grpc.ClientStream, work chan<- *message[T]) {
	defer close(s.order)
	defer close(work)
	for {
		m := &message[T]{done: make(chan struct{})}
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

// decodeAll decodes messages until work is closed.
func decodeAll[T any](work <-chan *message[T], decode Decoder[T]) {
	for m := range work {
		buf := m.raw.MaterializeToBuffer(mem.DefaultBufferPool())
		m.raw.Free()
		m.raw = nil
		var err error
		if m.resp, err = decode(buf.ReadOnlyData()); err != nil {
			// As gRPC's own stream reports it.
			m.err = status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
		}
		buf.Free()
		close(m.done)
	}
}

// Recv returns the stream's next message, or the error that ended it;
// after an error it returns that error again.
func (s *Stream[T]) Recv() (T, error) {
	var none T
	if s.err != nil {
		return none, s.err
	}
	if s.ctx.Err() != nil {
		// Closed, or its context ended: what was read ahead is not handed
		// out.
		s.err = canceled(s.ctx)
		return none, s.err
	}
	m, ok := <-s.order
	if !ok {
		// The reader stopped for a cancelled context before it could say so.
		s.err = canceled(s.ctx)
		return none, s.err
	}
	<-m.done
	if m.err != nil {
		s.err = m.err
		s.cancel()
		return none, m.err
	}
	return m.resp, nil
}

// canceled is the error gRPC gives a call whose context ended.
func canceled(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}

// Close ends the stream.
func (s *Stream[T]) Close() { s.cancel() }

// codec is gRPC's protobuf codec, but for a received message, which it
// keeps as the bytes it came as.
type codec struct{}

func (codec) Name() string { return grpcproto.Name }

func (codec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(grpcproto.Name).Marshal(v)
}

func (codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(interface{ keep(mem.BufferSlice) })
	if !ok {
		return encoding.GetCodecV2(grpcproto.Name).Unmarshal(data, v)
	}
	// gRPC frees data once Unmarshal returns; the reference taken here
	// keeps it for the decoder, which frees it.
	data.Ref()
	m.keep(data)
	return nil
}

func (m *message[T]) keep(data mem.BufferSlice) { m.raw = data }
