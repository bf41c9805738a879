package watch

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// snapshot is the fleet at one revision, as watchers that start from it
// are sent it. The first watcher to send it builds its chunks, and each
// chunk is encoded once for each encoding that streams ask for; the hub
// hands the same snapshot to every watcher that starts, or resyncs, until
// a change or new totals are sent. So a thousand watchers that connect
// while the fleet only heartbeats cost one snapshot, and a stream that
// does not read holds a reference to the shared chunk the transport is
// waiting to send, not a copy of its own.
type snapshot struct {
	rev     uint64
	flush   uint64 // the hub's flushes with heartbeats when it was taken
	entries []Entry
	events  []*fleetv1.HealthEvent // newest first
	pools   []*fleetv1.Pool        // by name

	build  sync.Once
	chunks []*controlplanev1.WatchFleetResponse

	mu      sync.Mutex
	encoded map[encoding][]*grpc.PreparedMsg // per chunk, set as first sent
}

// messages returns the snapshot's chunks, building them the first time:
// at most SnapshotChunk nodes each, the last complete, with the totals and
// the recent events. An empty fleet is one complete, empty chunk.
func (s *snapshot) messages(f Fleet) []*controlplanev1.WatchFleetResponse {
	s.build.Do(func() {
		total := len(s.entries)
		for i := 0; ; i += SnapshotChunk {
			end := min(i+SnapshotChunk, total)
			snap := &controlplanev1.Snapshot{Nodes: make([]*fleetv1.Node, 0, end-i)}
			for _, e := range s.entries[i:end] {
				snap.Nodes = append(snap.Nodes, e.Node.Render(e.State, e.Reach))
			}
			if end == total {
				snap.Complete = true
				snap.Summary, snap.Breaker = f.Summary(), f.Breaker()
				snap.RecentEvents = s.events
				snap.Pools = s.pools
			}
			s.chunks = append(s.chunks, &controlplanev1.WatchFleetResponse{Revision: s.rev, Change: &controlplanev1.WatchFleetResponse_Snapshot{Snapshot: snap}})
			if end == total {
				return
			}
		}
	})
	return s.chunks
}

// prepared returns chunk i encoded for streams of enc, encoding it with
// stream the first time. Streams of the same encoding wait for one
// encoding rather than each making its own.
func (s *snapshot) prepared(i int, enc encoding, stream grpc.ServerStream) (*grpc.PreparedMsg, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.encoded == nil {
		s.encoded = make(map[encoding][]*grpc.PreparedMsg)
	}
	chunks := s.encoded[enc]
	if chunks == nil {
		chunks = make([]*grpc.PreparedMsg, len(s.chunks))
		s.encoded[enc] = chunks
	}
	if chunks[i] == nil {
		p := &grpc.PreparedMsg{}
		if err := p.Encode(stream, s.chunks[i]); err != nil {
			return nil, fmt.Errorf("encode snapshot chunk %d: %w", i, err)
		}
		chunks[i] = p
	}
	return chunks[i], nil
}

// encoding is what a gRPC stream's encoded messages depend on: the codec,
// which a server picks by the stream's content subtype, and the
// compressor.
type encoding struct{ subtype, compressor string }

// encodedStream is a gRPC server stream whose encoding is known.
type encodedStream struct {
	grpc.ServerStream
	enc encoding
}

// encodingOf returns stream as a gRPC server stream with its encoding,
// or false when it is not one or its encoding is unknown.
//
// A grpc.PreparedMsg is encoded with one stream's codec and compressor.
// Sending it, gRPC only reads its bytes (they are a mem.SliceBuffer, whose
// Ref and Free do nothing), so any stream of the same codec and compressor
// can send it as well. gRPC does not say a stream's codec or compressor;
// its transport stream, in the stream's context, says the content subtype
// and the compressor it sends with, and one server's content subtype
// picks one codec. A stream whose transport does not say encodes its own.
func encodingOf(stream Stream) (encodedStream, bool) {
	ss, ok := stream.(grpc.ServerStream)
	if !ok {
		return encodedStream{}, false
	}
	enc, ok := transportEncoding(ss.Context())
	if !ok {
		return encodedStream{}, false
	}
	return encodedStream{ServerStream: ss, enc: enc}, true
}

// transportEncoding reads a stream's encoding from its transport stream.
func transportEncoding(ctx context.Context) (encoding, bool) {
	ts, ok := grpc.ServerTransportStreamFromContext(ctx).(interface {
		ContentSubtype() string
		SendCompress() string
	})
	if !ok {
		return encoding{}, false
	}
	return encoding{subtype: ts.ContentSubtype(), compressor: ts.SendCompress()}, true
}

// sendSnapshot sends s's chunks to stream: encoded once per encoding and
// shared when stream is a gRPC stream whose encoding is known, otherwise
// as the shared messages, which stream encodes itself.
func sendSnapshot(stream Stream, s *snapshot, f Fleet) error {
	chunks := s.messages(f)
	es, shared := encodingOf(stream)
	for i, m := range chunks {
		if !shared {
			if err := stream.Send(m); err != nil {
				return err
			}
			continue
		}
		p, err := s.prepared(i, es.enc, es.ServerStream)
		if err != nil {
			return err
		}
		if err := es.SendMsg(p); err != nil {
			return err
		}
	}
	return nil
}
