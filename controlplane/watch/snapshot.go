package watch

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// snapshot is the fleet at one revision, as watchers that start from it
// are sent it. Each chunk is encoded once for each encoding that streams
// ask for; the hub hands the same snapshot to every watcher that starts,
// or resyncs, until a change or new totals are sent. So a thousand
// watchers that connect while the fleet only heartbeats cost one
// snapshot, and a stream that does not read holds a reference to the
// shared chunk the transport is waiting to send, not a copy of its own.
//
// A chunk for a gRPC stream is encoded straight from the entries (see
// encodedChunk), so the snapshot holds the encoded chunks and no views;
// the chunks as messages are built, once, only for a stream that encodes
// its own.
type snapshot struct {
	rev     uint64
	flush   uint64 // the hub's flushes with heartbeats when it was taken
	entries []Entry
	events  []*fleetv1.HealthEvent // newest first
	pools   []*fleetv1.Pool        // by name

	build  sync.Once
	chunks []*controlplanev1.WatchFleetResponse

	mu      sync.Mutex
	encoded map[encoding][]*encodedSlot // per chunk
}

// encodedSlot is one chunk encoded for one encoding, by the first stream
// to need it.
type encodedSlot struct {
	once sync.Once
	p    *grpc.PreparedMsg
	err  error
}

// scratchBuffers are the buffers chunks are encoded in before gRPC's
// encoding copies them.
var scratchBuffers = sync.Pool{New: func() any { return new([]byte) }}

// Field numbers of the messages a chunk is encoded in, read from their
// descriptors.
var (
	responseRevision = fieldNumber(&controlplanev1.WatchFleetResponse{}, "revision")
	responseSnapshot = fieldNumber(&controlplanev1.WatchFleetResponse{}, "snapshot")
	snapshotNodes    = fieldNumber(&controlplanev1.Snapshot{}, "nodes")
)

func fieldNumber(m proto.Message, name protoreflect.Name) protowire.Number {
	return m.ProtoReflect().Descriptor().Fields().ByName(name).Number()
}

// count is the number of chunks: at most SnapshotChunk nodes each, and
// one, complete and empty, for an empty fleet.
func (s *snapshot) count() int {
	return max(1, (len(s.entries)+SnapshotChunk-1)/SnapshotChunk)
}

// bounds are the entries of chunk i, and whether it is the last.
func (s *snapshot) bounds(i int) (start, end int, last bool) {
	start = i * SnapshotChunk
	end = min(start+SnapshotChunk, len(s.entries))
	return start, end, i == s.count()-1
}

// tail is what the last chunk carries besides its nodes: the totals, the
// breaker, the recent events and the pools.
func (s *snapshot) tail(f Fleet) *controlplanev1.Snapshot {
	return &controlplanev1.Snapshot{Complete: true, Summary: f.Summary(), Breaker: f.Breaker(), RecentEvents: s.events, Pools: s.pools}
}

// messages returns the snapshot's chunks as messages, building them the
// first time: at most SnapshotChunk nodes each, the last complete, with
// the totals and the recent events. An empty fleet is one complete, empty
// chunk.
func (s *snapshot) messages(f Fleet) []*controlplanev1.WatchFleetResponse {
	s.build.Do(func() {
		s.chunks = make([]*controlplanev1.WatchFleetResponse, s.count())
		for i := range s.chunks {
			start, end, last := s.bounds(i)
			snap := &controlplanev1.Snapshot{}
			if last {
				snap = s.tail(f)
			}
			snap.Nodes = make([]*fleetv1.Node, 0, end-start)
			for _, e := range s.entries[start:end] {
				snap.Nodes = append(snap.Nodes, e.Node.Render(e.State, e.Reach))
			}
			s.chunks[i] = &controlplanev1.WatchFleetResponse{Revision: s.rev, Change: &controlplanev1.WatchFleetResponse_Snapshot{Snapshot: snap}}
		}
	})
	return s.chunks
}

// headroom is the room a chunk's encoding keeps before its nodes for the
// message's header: the revision's tag and value, the snapshot's tag and
// length.
const headroom = 2 * (1 + binary.MaxVarintLen64)

// encodedChunk is chunk i, the same chunk messages builds, in its protobuf
// encoding, held as the unknown fields of an empty WatchFleetResponse,
// which a protobuf codec writes out as they are. Each node's view is
// appended by the fleet straight into the chunk (Node.AppendView): no
// view is built, and a node's heartbeat samples are not made into
// messages to be encoded. The header goes into the room left before the
// nodes once their length is known, so the chunk is not copied. The
// message holds scratch, grown as needed: it is good until scratch is
// used again, and gRPC's encoding copies it.
func (s *snapshot) encodedChunk(i int, f Fleet, scratch *[]byte) (*controlplanev1.WatchFleetResponse, error) {
	start, end, last := s.bounds(i)
	buf := slices.Grow((*scratch)[:0], headroom+(end-start)*1024)[:headroom]
	var view []byte
	for _, e := range s.entries[start:end] {
		var err error
		if view, err = e.Node.AppendView(view[:0], e.State, e.Reach); err != nil {
			return nil, fmt.Errorf("encode node %s: %w", e.State.GetNodeId(), err)
		}
		buf = protowire.AppendTag(buf, snapshotNodes, protowire.BytesType)
		buf = protowire.AppendBytes(buf, view)
	}
	if last {
		var err error
		buf, err = proto.MarshalOptions{}.MarshalAppend(buf, s.tail(f))
		if err != nil {
			return nil, fmt.Errorf("encode the snapshot's totals: %w", err)
		}
	}
	*scratch = buf
	var head []byte
	if s.rev != 0 {
		head = protowire.AppendTag(head, responseRevision, protowire.VarintType)
		head = protowire.AppendVarint(head, s.rev)
	}
	head = protowire.AppendTag(head, responseSnapshot, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(len(buf)-headroom))
	raw := buf[headroom-len(head):]
	copy(raw, head)
	m := &controlplanev1.WatchFleetResponse{}
	m.ProtoReflect().SetUnknown(raw)
	return m, nil
}

// prepared returns chunk i encoded for streams of enc, encoding it with
// stream the first time. Streams of the same encoding wait for one
// encoding rather than each making its own; different chunks are encoded
// at once.
func (s *snapshot) prepared(i int, enc encoding, stream grpc.ServerStream, f Fleet) (*grpc.PreparedMsg, error) {
	s.mu.Lock()
	if s.encoded == nil {
		s.encoded = make(map[encoding][]*encodedSlot)
	}
	slots := s.encoded[enc]
	if slots == nil {
		slots = make([]*encodedSlot, s.count())
		for j := range slots {
			slots[j] = &encodedSlot{}
		}
		s.encoded[enc] = slots
	}
	slot := slots[i]
	s.mu.Unlock()
	slot.once.Do(func() {
		scratch := scratchBuffers.Get().(*[]byte)
		defer scratchBuffers.Put(scratch)
		m, err := s.encodedChunk(i, f, scratch)
		if err != nil {
			slot.err = fmt.Errorf("encode snapshot chunk %d: %w", i, err)
			return
		}
		p := &grpc.PreparedMsg{}
		if err := p.Encode(stream, m); err != nil {
			slot.err = fmt.Errorf("encode snapshot chunk %d: %w", i, err)
			return
		}
		slot.p = p
	})
	return slot.p, slot.err
}

// encoding is what a shared chunk's encoding depends on besides the
// codec, which is protobuf's for every stream that shares them (see
// encodingOf): the compressor.
type encoding struct{ compressor string }

// encodedStream is a gRPC server stream whose encoding is known.
type encodedStream struct {
	grpc.ServerStream
	enc encoding
}

// encodingOf returns stream as a gRPC server stream with its encoding,
// or false when it is not one, its encoding is unknown, or its codec is
// not protobuf's.
//
// A grpc.PreparedMsg is encoded with one stream's codec and compressor.
// Sending it, gRPC only reads its bytes (they are a mem.SliceBuffer, whose
// Ref and Free do nothing), so any stream of the same codec and compressor
// can send it as well. gRPC does not say a stream's codec or compressor;
// its transport stream, in the stream's context, says the content subtype
// and the compressor it sends with, and one server's content subtype
// picks one codec: protobuf's for none or "proto" (which a client that
// forces gRPC's protobuf codec, as the console does, names). A stream
// whose transport does not say encodes its own, and so does one of
// another content subtype: the shared chunks are protobuf already (see
// encodedChunk), which another codec would not write out as they are.
func encodingOf(stream Stream) (encodedStream, bool) {
	ss, ok := stream.(grpc.ServerStream)
	if !ok {
		return encodedStream{}, false
	}
	ts, ok := grpc.ServerTransportStreamFromContext(ss.Context()).(interface {
		ContentSubtype() string
		SendCompress() string
	})
	if !ok {
		return encodedStream{}, false
	}
	if sub := ts.ContentSubtype(); sub != "" && sub != "proto" {
		return encodedStream{}, false
	}
	return encodedStream{ServerStream: ss, enc: encoding{compressor: ts.SendCompress()}}, true
}

// encodeAhead bounds how many chunks a stream has encoded ahead of the one
// it sends: one a core, up to this.
const encodeAhead = 8

// sendSnapshot sends s's chunks to stream: encoded once per encoding and
// shared when stream is a gRPC stream whose encoding is known, otherwise
// as the shared messages, which stream encodes itself.
func sendSnapshot(stream Stream, s *snapshot, f Fleet) error {
	es, shared := encodingOf(stream)
	if !shared {
		for _, m := range s.messages(f) {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
		return nil
	}
	// While a chunk is sent, the next ones are encoded on goroutines of
	// their own, one a core up to encodeAhead, so that the encoding, most
	// of a snapshot's cost, takes the cores that are free. The goroutines
	// end before the stream's handler.
	var ahead sync.WaitGroup
	defer ahead.Wait()
	window := min(runtime.GOMAXPROCS(0), encodeAhead)
	started := 1 // chunks below this have an encoder, or are chunk 0, which the loop encodes
	for i := range s.count() {
		for ; started < min(s.count(), i+1+window); started++ {
			j := started
			ahead.Go(func() { _, _ = s.prepared(j, es.enc, es.ServerStream, f) })
		}
		p, err := s.prepared(i, es.enc, es.ServerStream, f)
		if err != nil {
			return err
		}
		if err := es.SendMsg(p); err != nil {
			return err
		}
	}
	return nil
}
