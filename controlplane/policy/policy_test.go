package policy

import (
	"testing"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func newGPU() *fleetv1.Gpu {
	return &fleetv1.Gpu{Index: 0, Uuid: "GPU-0", Health: healthy, SlowdownTemperatureCelsius: 87, MemoryMaxTemperatureCelsius: 95, NvlinkCount: 18}
}

func xid(code uint32) *fleetv1.HealthEvent {
	return &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: code}
}

func metrics() *fleetv1.GpuMetrics {
	m := &fleetv1.GpuMetrics{
		TemperatureCelsius:       60,
		MemoryTemperatureCelsius: 70,
		RecoveryAction:           fleetv1.RecoveryAction_RECOVERY_ACTION_NONE,
		Ecc:                      &fleetv1.EccCounts{},
		RowRemap:                 &fleetv1.RowRemapState{},
		RetiredPages:             &fleetv1.RetiredPages{},
	}
	for l := range 18 {
		m.Nvlinks = append(m.Nvlinks, &fleetv1.NvLinkState{Link: uint32(l), Active: true})
	}
	return m
}

func TestRepeatsStayBounded(t *testing.T) {
	p := Default()
	g := newGPU()
	rep := &Repeats{}
	for i := range 1000 {
		p.Judge(g, xid(uint32(1000+i)), rep, t0.Add(time.Duration(i)*time.Second))
	}
	if len(rep.times) > maxRepeatKeys {
		t.Fatalf("%d signals remembered; the bound is %d", len(rep.times), maxRepeatKeys)
	}
	if _, ok := rep.times[keyOf(fleetv1.EventKind_EVENT_KIND_XID, 1999)]; !ok {
		t.Fatal("the latest signal was forgotten")
	}
}
