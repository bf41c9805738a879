package healthdelta

import (
	"slices"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Diff is the delta that takes base to cur: an entry per GPU of cur with
// its scalar fields, and of its parts those that differ from base's. The
// entries share cur's messages, which must not change while they are in
// use.
func Diff(base *Held, cur []*fleetv1.GpuMetrics) []*nodev1.GpuMetricsDelta {
	out := make([]*nodev1.GpuMetricsDelta, len(cur))
	for i, m := range cur {
		d := &nodev1.GpuMetricsDelta{Metrics: scalarsOf(m)}
		out[i] = d
		s := d.Metrics
		g := base.gpu(m.GetGpuIndex())
		if g == nil {
			s.Ecc, s.RowRemap, s.RetiredPages, s.Nvlinks, s.Processes, s.Unsupported = m.Ecc, m.RowRemap, m.RetiredPages, m.Nvlinks, m.Processes, m.Unsupported
			d.Replaced = allParts()
			continue
		}
		p := g.parts
		if !equalECC(m.GetEcc(), p.GetEcc()) {
			s.Ecc = m.Ecc
			d.Replaced = append(d.Replaced, nodev1.GpuMetricsPart_GPU_METRICS_PART_ECC)
		}
		if !equalRowRemap(m.GetRowRemap(), p.GetRowRemap()) {
			s.RowRemap = m.RowRemap
			d.Replaced = append(d.Replaced, nodev1.GpuMetricsPart_GPU_METRICS_PART_ROW_REMAP)
		}
		if !equalRetiredPages(m.GetRetiredPages(), p.GetRetiredPages()) {
			s.RetiredPages = m.RetiredPages
			d.Replaced = append(d.Replaced, nodev1.GpuMetricsPart_GPU_METRICS_PART_RETIRED_PAGES)
		}
		if sameLinks(m.GetNvlinks(), p.GetNvlinks()) {
			for j, l := range m.GetNvlinks() {
				if !equalLink(l, p.GetNvlinks()[j]) {
					s.Nvlinks = append(s.Nvlinks, l)
				}
			}
		} else {
			s.Nvlinks = m.Nvlinks
			d.Replaced = append(d.Replaced, nodev1.GpuMetricsPart_GPU_METRICS_PART_NVLINKS)
		}
		if !slices.EqualFunc(m.GetProcesses(), g.processes, equalProcess) {
			s.Processes = m.Processes
			d.Replaced = append(d.Replaced, nodev1.GpuMetricsPart_GPU_METRICS_PART_PROCESSES)
		}
		if !slices.Equal(m.GetUnsupported(), p.GetUnsupported()) {
			s.Unsupported = m.Unsupported
			d.Replaced = append(d.Replaced, nodev1.GpuMetricsPart_GPU_METRICS_PART_UNSUPPORTED)
		}
	}
	return out
}

// sameLinks reports whether a and b list the same links in the same
// order, so that a delta can send the changed ones by number.
func sameLinks(a, b []*fleetv1.NvLinkState) bool {
	return slices.EqualFunc(a, b, func(x, y *fleetv1.NvLinkState) bool { return x.GetLink() == y.GetLink() })
}

// allParts names every part, for a GPU the base lacks.
func allParts() []nodev1.GpuMetricsPart {
	return []nodev1.GpuMetricsPart{
		nodev1.GpuMetricsPart_GPU_METRICS_PART_ECC, nodev1.GpuMetricsPart_GPU_METRICS_PART_ROW_REMAP,
		nodev1.GpuMetricsPart_GPU_METRICS_PART_RETIRED_PAGES, nodev1.GpuMetricsPart_GPU_METRICS_PART_NVLINKS,
		nodev1.GpuMetricsPart_GPU_METRICS_PART_PROCESSES, nodev1.GpuMetricsPart_GPU_METRICS_PART_UNSUPPORTED,
	}
}
