package etcdstore

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Tables under the store's prefix; the package doc lists what each holds.
const (
	tableNode      = "n/"
	tableCommand   = "c/"
	tableOpen      = "o/"
	tableEvent     = "e/"
	tableNodeEvent = "x/"
	tableLastSeen  = "s/"
	tableCounter   = "m/"
	tableToken     = "t/"
	tableNodeKey   = "k/"
	tableAudit     = "a/"
	tableNodeAudit = "y/"
	tablePool      = "p/"
	keyBreaker     = "b/breaker"
)

// seqDigits is how many decimal digits a sequence number takes in a key:
// enough for any uint64, so that keys sort as their numbers do.
const seqDigits = 20

// keys builds the store's keys under its prefix.
type keys struct{ prefix string }

// table is the prefix of every key in a table.
func (k keys) table(table string) string { return k.prefix + table }

// named is the key of a record named name in a table keyed by name.
func (k keys) named(table, name string) string { return k.prefix + table + name }

// node is the prefix of one node's keys in a per-node table. The trailing
// slash keeps node "n" from matching node "n2"; node ids hold no slash.
func (k keys) node(table, node string) string { return k.prefix + table + node + "/" }

// newest is the key of a node's record with a sequence number in a table
// read newest first (see newestFirst).
func (k keys) newest(table, node string, seq uint64) string {
	return k.node(table, node) + newestFirst(seq)
}

// newestFleet is the key of a fleet-wide record with a sequence number,
// read newest first.
func (k keys) newestFleet(table string, seq uint64) string {
	return k.prefix + table + newestFirst(seq)
}

// oldest is the key of a node's record with a sequence number in a table
// read oldest first.
func (k keys) oldest(table, node string, seq uint64) string {
	return k.node(table, node) + fmt.Sprintf("%0*d", seqDigits, seq)
}

// newestFirst renders a sequence number for a key that sorts newest
// first: its complement, in seqDigits decimal digits. etcd reads a range
// without loading all of it only in ascending key order (a descending
// sort reads the whole range and sorts it), so the history is laid out
// for the order it is read in.
func newestFirst(seq uint64) string { return fmt.Sprintf("%0*d", seqDigits, math.MaxUint64-seq) }

// newestSeq reads the sequence number back from a key made by newest or
// newestFleet.
func newestSeq(key []byte) (uint64, error) {
	n, err := oldestSeq(key)
	return math.MaxUint64 - n, err
}

// oldestSeq reads the sequence number back from a key made by oldest.
func oldestSeq(key []byte) (uint64, error) {
	if len(key) < seqDigits {
		return 0, fmt.Errorf("key %q has no sequence number", key)
	}
	n, err := strconv.ParseUint(string(key[len(key)-seqDigits:]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("key %q has no sequence number", key)
	}
	return n, nil
}

// rest is what follows the prefix p in key.
func rest(key []byte, p string) string { return strings.TrimPrefix(string(key), p) }
