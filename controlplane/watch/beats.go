package watch

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Field numbers of the messages a heartbeat batch is encoded in.
var (
	responseHeartbeats = fieldNumber(&controlplanev1.WatchFleetResponse{}, "heartbeats")
	batchHeartbeats    = fieldNumber(&controlplanev1.HeartbeatBatch{}, "heartbeats")
)

// beatBatch is up to heartbeatBatchSize nodes' heartbeat data, encoded as
// the entries of a HeartbeatBatch straight from each node's state
// (Node.AppendHeartbeat), with room before them for the message's header.
// A flush makes one batch for each thousand nodes that heartbeated, and
// every watcher is sent the same batches; no entry is made into a message
// and marshalled.
type beatBatch struct {
	buf []byte
}

// encodeBeats encodes the heartbeat data of nodes, skipping those that
// left the fleet, in batches of at most heartbeatBatchSize.
func encodeBeats(nodes map[Node]struct{}) []beatBatch {
	var (
		batches []beatBatch
		buf     []byte
		entry   []byte
		count   int
		left    = len(nodes)
	)
	for n := range nodes {
		var ok bool
		entry, ok = n.AppendHeartbeat(entry[:0])
		left--
		if !ok {
			continue
		}
		if buf == nil {
			// Room for as many entries like this one as the batch can
			// still take.
			buf = make([]byte, headroom, headroom+min(left+1, heartbeatBatchSize)*(len(entry)+8))
		}
		buf = protowire.AppendTag(buf, batchHeartbeats, protowire.BytesType)
		buf = protowire.AppendBytes(buf, entry)
		if count++; count == heartbeatBatchSize {
			batches = append(batches, beatBatch{buf: buf})
			buf, count = nil, 0
		}
	}
	if count > 0 {
		batches = append(batches, beatBatch{buf: buf})
	}
	return batches
}

// message makes the batch the message sent at rev: its encoding, held as
// the unknown fields of an empty WatchFleetResponse, which a protobuf
// codec writes out as they are (a stream that encodes otherwise is sent
// it decoded: see forStream). The header goes into the room left before
// the entries. It is called once per batch: the header is written into
// the batch's own buffer, which the message then shares, so a second
// call would change the first message.
func (b beatBatch) message(rev uint64) item {
	var head []byte
	if rev != 0 {
		head = protowire.AppendTag(head, responseRevision, protowire.VarintType)
		head = protowire.AppendVarint(head, rev)
	}
	head = protowire.AppendTag(head, responseHeartbeats, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(len(b.buf)-headroom))
	raw := b.buf[headroom-len(head):]
	copy(raw, head)
	m := &controlplanev1.WatchFleetResponse{}
	m.ProtoReflect().SetUnknown(raw)
	return item{m: m, beats: true}
}

// forStream returns the message to send a stream: it.m, or, for a
// heartbeat batch sent to a stream that does not write protobuf
// encodings out as they are (encoded false), the batch decoded.
func (it item) forStream(encoded bool) (*controlplanev1.WatchFleetResponse, error) {
	if !it.beats || encoded {
		return it.m, nil
	}
	m := &controlplanev1.WatchFleetResponse{}
	if err := proto.Unmarshal(it.m.ProtoReflect().GetUnknown(), m); err != nil {
		return nil, fmt.Errorf("decode a heartbeat batch: %w", err)
	}
	return m, nil
}
