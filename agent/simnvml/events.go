package simnvml

import (
	"slices"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

// emitXID delivers an XID to every event set registered on d.
func (b *Backend) emitXID(d *Device, xid uint64) {
	d.mu.Lock()
	sets := slices.Clone(d.eventSets)
	d.mu.Unlock()
	for _, s := range sets {
		select {
		case s.ch <- nvml.EventData{Device: d, EventType: nvml.EventTypeXidCriticalError, EventData: xid}:
		default:
			// A full event queue drops the XID, as a driver's would.
		}
	}
}

// RegisterEvents subscribes an event set to this GPU's XIDs.
func (d *Device) RegisterEvents(types uint64, set nvml.EventSet) nvml.Return {
	s, ok := set.(*eventSet)
	if !ok {
		return nvml.ERROR_INVALID_ARGUMENT
	}
	if types&nvml.EventTypeXidCriticalError == 0 {
		return nvml.SUCCESS
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lost {
		return nvml.ERROR_GPU_IS_LOST
	}
	d.eventSets = append(d.eventSets, s)
	return nvml.SUCCESS
}

// eventSet delivers simulated XIDs to Wait.
type eventSet struct {
	mock.EventSet
	ch      chan nvml.EventData
	backend *Backend
}

// Wait returns the next XID, or ERROR_TIMEOUT after timeoutMs.
func (s *eventSet) Wait(timeoutMs uint32) (nvml.EventData, nvml.Return) {
	t := time.NewTimer(time.Duration(timeoutMs) * time.Millisecond)
	defer t.Stop()
	select {
	case e := <-s.ch:
		return e, nvml.SUCCESS
	case <-t.C:
		return nvml.EventData{}, nvml.ERROR_TIMEOUT
	}
}

// Free releases the event set.
func (s *eventSet) Free() nvml.Return { return nvml.SUCCESS }
