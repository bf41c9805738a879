package healthdelta

import (
	"runtime"
	"slices"
	"sync"
	"weak"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// parts is a GPU's bulky parts, shared where GPUs agree: most GPUs of a
// fleet have all their links up and no errors counted, so a hundred
// thousand nodes hold a handful of links and link sets between them (see
// intern), and one empty ECC, row-remap and retired-pages message. A GPU
// that differs in one part keeps only that part of its own: an ECC count
// of its own is a small message, cheaper kept than looked up. A parts
// value and what it points to never change.
type parts struct {
	ecc         *fleetv1.EccCounts
	rowRemap    *fleetv1.RowRemapState
	retired     *fleetv1.RetiredPages
	links       *linkSet
	unsupported *nameSet
}

// linkSet is a GPU's NVLink links, each one shared.
type linkSet struct{ links []*fleetv1.NvLinkState }

// nameSet is a GPU's unsupported metric groups.
type nameSet struct{ names []string }

func (p parts) GetEcc() *fleetv1.EccCounts             { return p.ecc }
func (p parts) GetRowRemap() *fleetv1.RowRemapState    { return p.rowRemap }
func (p parts) GetRetiredPages() *fleetv1.RetiredPages { return p.retired }

func (p parts) GetNvlinks() []*fleetv1.NvLinkState {
	if p.links == nil {
		return nil
	}
	return p.links.links
}

func (p parts) GetUnsupported() []string {
	if p.unsupported == nil {
		return nil
	}
	return p.unsupported.names
}

// message is a GpuMetrics with p's parts and procs, sharing them.
func (p parts) message(procs []*fleetv1.GpuProcess) *fleetv1.GpuMetrics {
	return &fleetv1.GpuMetrics{Ecc: p.ecc, RowRemap: p.rowRemap, RetiredPages: p.retired,
		Nvlinks: p.GetNvlinks(), Unsupported: p.GetUnsupported(), Processes: procs}
}

// partsOf is m's parts, shared.
func partsOf(m *fleetv1.GpuMetrics) parts {
	return parts{
		ecc:         shareEmpty(m.GetEcc(), emptyECC),
		rowRemap:    shareEmpty(m.GetRowRemap(), emptyRowRemap),
		retired:     shareEmpty(m.GetRetiredPages(), emptyRetired),
		links:       internLinks(m.GetNvlinks()),
		unsupported: internNames(m.GetUnsupported()),
	}
}

// The empty messages every GPU with nothing counted shares.
var (
	emptyECC      = &fleetv1.EccCounts{}
	emptyRowRemap = &fleetv1.RowRemapState{}
	emptyRetired  = &fleetv1.RetiredPages{}
)

// shareEmpty returns empty for a message with no field set, else m (nil
// for nil: a group the GPU does not support).
func shareEmpty[P proto.Message](m, empty P) P {
	if proto.Size(m) == 0 && m.ProtoReflect().IsValid() {
		return empty
	}
	return m
}

// interned holds one value per distinct part in use, keyed by a kind
// byte and the part's encoding, as the unique package does for comparable
// values. It is process-wide for the same reason unique's table is:
// sharing across every user is the point. An entry goes when nothing
// refers to its value any more.
var interned = struct {
	mu    sync.Mutex
	byKey map[string]ref
}{byKey: make(map[string]ref)}

// ref is an interned value's weak pointer, whatever its type.
type ref interface{ dead() bool }

type weakRef[T any] struct{ weak.Pointer[T] }

func (r weakRef[T]) dead() bool { return r.Value() == nil }

// The kinds of part, the first byte of their keys.
const (
	kindLink byte = iota
	kindLinks
	kindNames
)

// intern returns the value interned under key, or v, which it interns.
func intern[T any](key string, v *T) *T {
	interned.mu.Lock()
	defer interned.mu.Unlock()
	if r, ok := interned.byKey[key].(weakRef[T]); ok {
		if q := r.Value(); q != nil {
			return q
		}
	}
	interned.byKey[key] = weakRef[T]{weak.Make(v)}
	runtime.AddCleanup(v, forget, key)
	return v
}

// forget drops key's entry once its value is gone, unless another value
// took the key since.
func forget(key string) {
	interned.mu.Lock()
	defer interned.mu.Unlock()
	if r, ok := interned.byKey[key]; ok && r.dead() {
		delete(interned.byKey, key)
	}
}

// internLinks returns the shared set of links equal to links, each link
// shared too; nil for none. The set's key is its links' keys in order. A
// set already in use, as most GPUs' are, is found with one allocation,
// the key's: only a new set is built and its links interned.
func internLinks(links []*fleetv1.NvLinkState) *linkSet {
	if len(links) == 0 {
		return nil
	}
	key := make([]byte, 0, 1+len(links)*16)
	key = append(key, kindLinks)
	var err error
	for _, l := range links {
		if key, err = appendLinkKey(key, l); err != nil {
			return &linkSet{links: slices.Clone(links)}
		}
	}
	if s := lookup[linkSet](key); s != nil {
		return s
	}
	shared := make([]*fleetv1.NvLinkState, len(links))
	for i, l := range links {
		k, _ := appendLinkKey(nil, l)
		// k is the link's key with its length before it.
		_, n := protowire.ConsumeVarint(k)
		shared[i] = intern(string(k[n:]), l)
	}
	return intern(string(key), &linkSet{links: shared})
}

// appendLinkKey appends l's key, a kind byte and its encoding, with its
// length before it: encoded in place, so that a key costs no allocation
// but its own buffer's.
func appendLinkKey(b []byte, l *fleetv1.NvLinkState) ([]byte, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	b = protowire.AppendVarint(b, uint64(1+opts.Size(l)))
	b = append(b, kindLink)
	return opts.MarshalAppend(b, l)
}

// lookup returns the live value interned under key, or nil. Looking up
// with the bytes converted in the index expression allocates nothing.
func lookup[T any](key []byte) *T {
	interned.mu.Lock()
	defer interned.mu.Unlock()
	if r, ok := interned.byKey[string(key)].(weakRef[T]); ok {
		return r.Value()
	}
	return nil
}

// internNames returns the shared set of names equal to names; nil for none.
// The key is each name with its length, so that no two lists share one
// (joined with a separator, ["a\x00b"] and ["a", "b"] would).
func internNames(names []string) *nameSet {
	if len(names) == 0 {
		return nil
	}
	key := []byte{kindNames}
	for _, n := range names {
		key = protowire.AppendString(key, n)
	}
	return intern(string(key), &nameSet{names: names})
}
