// Package fleettest holds the GPU fixtures that tests of the control plane
// share: an inventory of H100s and a clean metrics snapshot for one.
package fleettest

import (
	"fmt"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// GPUs is an inventory of n H100s with 18 NVLinks each, indexes 0 to n-1
// and UUIDs GPU-0000, GPU-0001, ….
func GPUs(n int) []*fleetv1.Gpu {
	out := make([]*fleetv1.Gpu, n)
	for i := range out {
		out[i] = &fleetv1.Gpu{
			Index: uint32(i), Uuid: fmt.Sprintf("GPU-%04d", i), Name: "NVIDIA H100 80GB HBM3",
			MemoryTotalBytes: 80 << 30, SlowdownTemperatureCelsius: 87, NvlinkCount: 18,
		}
	}
	return out
}

// CleanMetrics is a snapshot of GPU i with nothing wrong: cool, no ECC
// errors or remaps, every link up. The GPU does not support retired pages.
func CleanMetrics(i uint32) *fleetv1.GpuMetrics {
	m := &fleetv1.GpuMetrics{GpuIndex: i, TemperatureCelsius: 55, Ecc: &fleetv1.EccCounts{}, RowRemap: &fleetv1.RowRemapState{}, Unsupported: []string{"retired_pages"}}
	for l := range 18 {
		m.Nvlinks = append(m.Nvlinks, &fleetv1.NvLinkState{Link: uint32(l), Active: true})
	}
	return m
}
