package badgerstore

import "encoding/binary"

// Key layout. Every key starts with a one-letter table and a slash.
//
//	n/<node>             fleetv1.Node (durable fields only)
//	c/<node>/<seq>       fleetv1.Command, seq big-endian so keys sort by age
//	o/<node>/<seq>       empty; index of the commands not yet finished
//	e/<seq>              fleetv1.HealthEvent, fleet-wide, with a TTL
//	x/<node>/<seq>       empty; index of a node's events, same TTL
//	s/<node>             last-seen time (unix nanoseconds), written lazily
//	m/<name>             counters (uint64, big-endian)
//	t/<name>             operator token, JSON (see tokenRecord); no node's
//	                     key, so deleting a node never touches it
//	k/<node>             the agent key bound to the node id, JSON (see
//	                     nodeKeyRecord); deleted with the node
//	a/<seq>              audit entry, JSON (see auditRecord), with the
//	                     audit retention as its TTL
//	y/<node>/<seq>       empty; index of the audit entries about a node,
//	                     same TTL; not one of the node's tables, so
//	                     deleting the node keeps its audit history
//	p/<name>             pool (protobuf, status left out)
//	b/breaker            the auto-cordon breaker's state, JSON (see
//	                     breakerRecord)
const (
	prefixNode      = "n/"
	prefixCommand   = "c/"
	prefixOpen      = "o/"
	prefixEvent     = "e/"
	prefixNodeEvent = "x/"
	prefixLastSeen  = "s/"
	prefixCounter   = "m/"
	prefixToken     = "t/"
	prefixNodeKey   = "k/"
	prefixAudit     = "a/"
	prefixNodeAudit = "y/"
	prefixPool      = "p/"
	keyBreaker      = "b/breaker"
)

func commandKey(node string, seq uint64) []byte { return nodeSeqKey(prefixCommand, node, seq) }

func openKey(node string, seq uint64) []byte { return nodeSeqKey(prefixOpen, node, seq) }

func nodeEventKey(node string, seq uint64) []byte { return nodeSeqKey(prefixNodeEvent, node, seq) }

// nodePrefix is the prefix of every key of one node in a per-node table.
// The trailing slash keeps node "n" from matching node "n2".
func nodePrefix(table, node string) string { return table + node + "/" }

// nodeSeqKey is prefix, node, '/', then seq big-endian, so a node's keys
// sort by sequence.
func nodeSeqKey(prefix, node string, seq uint64) []byte {
	k := make([]byte, 0, len(prefix)+len(node)+1+8)
	k = append(k, prefix...)
	k = append(k, node...)
	k = append(k, '/')
	return binary.BigEndian.AppendUint64(k, seq)
}

func eventKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefixEvent), seq)
}

func auditKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(prefixAudit), seq)
}

func nodeAuditKey(node string, seq uint64) []byte { return nodeSeqKey(prefixNodeAudit, node, seq) }

// keySeq reads the sequence number at the end of a c/, o/, e/, x/, a/ or
// y/ key.
func keySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k[len(k)-8:]) }

// openKeyNode reads the node back from an o/ key.
func openKeyNode(k []byte) string {
	rest := k[len(prefixOpen):]
	return string(rest[:len(rest)-9])
}

// seekEnd is a key just past every key under prefix, where a reverse
// iteration starts.
func seekEnd(prefix string) []byte {
	return append([]byte(prefix), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
}
