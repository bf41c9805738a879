// Package healthdelta owns the metrics of health reports: a full snapshot,
// or a delta against a report the control plane acknowledged. Agents and
// the simulator build reports with a Sender; the control plane applies
// them onto the Held state it keeps per node. Both ends keep that state in
// the same compact form, so a delta means the same thing on either side.
package healthdelta

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Held is a node's latest metrics, numbered by its agent's sequence. It is
// kept compactly: every GPU's scalar fields encoded in one block, each of
// its bulky parts (ECC, row remap, retired pages, each NVLink link and the
// set of them, unsupported groups) shared with every GPU whose same part is
// equal (see parts), and its processes by themselves. A Held never changes once made; Full and Apply
// make new ones, so a reader needs no lock once it has one.
type Held struct {
	seq uint64
	// scalars holds, for each GPU in gpus' order, a varint length and the
	// encoding of a GpuMetrics with only its scalar fields set.
	scalars []byte
	gpus    []heldGPU
}

type heldGPU struct {
	index     uint32
	parts     parts
	processes []*fleetv1.GpuProcess
}

// FieldError is a delta that does not fit the held state it names as its
// base: Field is the request field at fault, as the API names fields.
type FieldError struct {
	Field, Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Sequence is the sequence of the report h holds; 0 for none.
func (h *Held) Sequence() uint64 {
	if h == nil {
		return 0
	}
	return h.seq
}

// Full holds a full snapshot numbered seq. The metrics are not changed;
// the held state shares their parts and processes, which must not change
// afterwards.
func Full(seq uint64, metrics []*fleetv1.GpuMetrics) *Held {
	h := &Held{seq: seq, gpus: make([]heldGPU, len(metrics))}
	for i, m := range metrics {
		h.gpus[i] = heldGPU{index: m.GetGpuIndex(), parts: partsOf(m), processes: m.GetProcesses()}
		h.scalars = appendScalars(h.scalars, m)
	}
	return h
}

// Apply applies a delta numbered seq onto h. It returns the new held state
// and each GPU's whole reading, in the delta's order: the delta's own
// messages, completed with the parts it did not send, exactly as a full
// snapshot of the same reading would be. Apply takes the delta's messages
// over. A delta that names a GPU or a link h lacks without sending it
// whole is a *FieldError.
func (h *Held) Apply(seq uint64, changes []*nodev1.GpuMetricsDelta) (*Held, []*fleetv1.GpuMetrics, error) {
	out := &Held{seq: seq, gpus: make([]heldGPU, len(changes)), scalars: make([]byte, 0, h.scalarBytes())}
	readings := make([]*fleetv1.GpuMetrics, len(changes))
	for i, c := range changes {
		m := c.GetMetrics()
		if m == nil {
			m = &fleetv1.GpuMetrics{}
			c.Metrics = m
		}
		sent, procs := detach(m)
		out.scalars = appendScalars(out.scalars, m)
		g, err := merge(h.gpu(m.GetGpuIndex()), sent, procs, c.GetReplaced())
		if err != nil {
			err.Field = fmt.Sprintf("metric_changes[%d].%s", i, err.Field)
			return nil, nil, err
		}
		g.index = m.GetGpuIndex()
		attach(m, g)
		out.gpus[i] = g
		readings[i] = m
	}
	return out, readings, nil
}

// scalarBytes is the size of h's scalar block: about the size of the next
// one.
func (h *Held) scalarBytes() int {
	if h == nil {
		return 0
	}
	return len(h.scalars)
}

// Metrics returns the held snapshot, one message per GPU, each the
// caller's own to change.
func (h *Held) Metrics() []*fleetv1.GpuMetrics {
	if h == nil {
		return nil
	}
	out := make([]*fleetv1.GpuMetrics, 0, len(h.gpus))
	b := h.scalars
	for _, g := range h.gpus {
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			break
		}
		b = b[n:]
		m := &fleetv1.GpuMetrics{}
		if proto.Unmarshal(v, m) != nil {
			continue
		}
		proto.Merge(m, g.parts.message(g.processes))
		out = append(out, m)
	}
	return out
}

func (h *Held) gpu(index uint32) *heldGPU {
	if h == nil {
		return nil
	}
	for i := range h.gpus {
		if h.gpus[i].index == index {
			return &h.gpus[i]
		}
	}
	return nil
}

// part bits, one per GpuMetricsPart.
const (
	partECC uint8 = 1 << iota
	partRowRemap
	partRetiredPages
	partNvlinks
	partProcesses
	partUnsupported
	everyPart = partECC | partRowRemap | partRetiredPages | partNvlinks | partProcesses | partUnsupported
)

var partBits = map[nodev1.GpuMetricsPart]uint8{
	nodev1.GpuMetricsPart_GPU_METRICS_PART_ECC:           partECC,
	nodev1.GpuMetricsPart_GPU_METRICS_PART_ROW_REMAP:     partRowRemap,
	nodev1.GpuMetricsPart_GPU_METRICS_PART_RETIRED_PAGES: partRetiredPages,
	nodev1.GpuMetricsPart_GPU_METRICS_PART_NVLINKS:       partNvlinks,
	nodev1.GpuMetricsPart_GPU_METRICS_PART_PROCESSES:     partProcesses,
	nodev1.GpuMetricsPart_GPU_METRICS_PART_UNSUPPORTED:   partUnsupported,
}

// merge makes a GPU's held state from its base (nil when the base lacks
// the GPU) and what a delta sent.
func merge(base *heldGPU, sent *fleetv1.GpuMetrics, procs []*fleetv1.GpuProcess, replaced []nodev1.GpuMetricsPart) (heldGPU, *FieldError) {
	var named uint8
	for _, p := range replaced {
		named |= partBits[p]
	}
	if base == nil {
		if named != everyPart {
			return heldGPU{}, &FieldError{Field: "replaced", Reason: "the GPU is not in the base report, so every part must be sent"}
		}
		base = &heldGPU{}
	}
	g := heldGPU{parts: base.parts, processes: base.processes}
	if named&partProcesses != 0 {
		g.processes = procs
	}
	links := sent.GetNvlinks()
	if named&^partProcesses == 0 && len(links) == 0 {
		return g, nil
	}
	p := &g.parts
	if named&partECC != 0 {
		p.ecc = shareEmpty(sent.GetEcc(), emptyECC)
	}
	if named&partRowRemap != 0 {
		p.rowRemap = shareEmpty(sent.GetRowRemap(), emptyRowRemap)
	}
	if named&partRetiredPages != 0 {
		p.retired = shareEmpty(sent.GetRetiredPages(), emptyRetired)
	}
	if named&partUnsupported != 0 {
		p.unsupported = internNames(sent.GetUnsupported())
	}
	if named&partNvlinks != 0 {
		p.links = internLinks(links)
	} else if len(links) > 0 {
		next := slices.Clone(base.parts.GetNvlinks())
		for j, l := range links {
			k := slices.IndexFunc(next, func(b *fleetv1.NvLinkState) bool { return b.GetLink() == l.GetLink() })
			if k < 0 {
				return heldGPU{}, &FieldError{Field: fmt.Sprintf("metrics.nvlinks[%d].link", j), Reason: fmt.Sprintf("link %d is not in the base report; send every link with GPU_METRICS_PART_NVLINKS", l.GetLink())}
			}
			next[k] = l
		}
		p.links = internLinks(next)
	}
	return g, nil
}

// detach takes the parts and processes out of m, leaving its scalar
// fields. It allocates only when m carries a part.
func detach(m *fleetv1.GpuMetrics) (*fleetv1.GpuMetrics, []*fleetv1.GpuProcess) {
	procs := m.Processes
	m.Processes = nil
	if m.Ecc == nil && m.RowRemap == nil && m.RetiredPages == nil && m.Nvlinks == nil && m.Unsupported == nil {
		return nil, procs
	}
	p := &fleetv1.GpuMetrics{Ecc: m.Ecc, RowRemap: m.RowRemap, RetiredPages: m.RetiredPages, Nvlinks: m.Nvlinks, Unsupported: m.Unsupported}
	m.Ecc, m.RowRemap, m.RetiredPages, m.Nvlinks, m.Unsupported = nil, nil, nil, nil, nil
	return p, procs
}

// attach completes m with g's parts and processes.
func attach(m *fleetv1.GpuMetrics, g heldGPU) {
	p := g.parts
	m.Ecc, m.RowRemap, m.RetiredPages, m.Nvlinks, m.Unsupported = p.ecc, p.rowRemap, p.retired, p.GetNvlinks(), p.GetUnsupported()
	m.Processes = g.processes
}

// scalarsOf is a new GpuMetrics with m's scalar fields: everything but the
// parts and processes. TestScalarsOfCopiesEveryScalar keeps the list whole.
func scalarsOf(m *fleetv1.GpuMetrics) *fleetv1.GpuMetrics {
	return &fleetv1.GpuMetrics{
		GpuIndex:                 m.GpuIndex,
		Time:                     m.Time,
		TemperatureCelsius:       m.TemperatureCelsius,
		PowerUsageMilliwatts:     m.PowerUsageMilliwatts,
		UtilizationGpuPercent:    m.UtilizationGpuPercent,
		UtilizationMemoryPercent: m.UtilizationMemoryPercent,
		MemoryUsedBytes:          m.MemoryUsedBytes,
		SmClockMhz:               m.SmClockMhz,
		MemoryClockMhz:           m.MemoryClockMhz,
		ClockEventReasons:        m.ClockEventReasons,
		PcieReplayCount:          m.PcieReplayCount,
		MemoryTemperatureCelsius: m.MemoryTemperatureCelsius,
		PcieLinkGeneration:       m.PcieLinkGeneration,
		PcieLinkWidth:            m.PcieLinkWidth,
		PcieReplaysPerMinute:     m.PcieReplaysPerMinute,
		HwSlowdownSeconds:        m.HwSlowdownSeconds,
		PowerBrakeSeconds:        m.PowerBrakeSeconds,
		RecoveryAction:           m.RecoveryAction,
	}
}
