package simnvml

import (
	"time"

	"github.com/navarch/navarch/internal/faultspec"
)

// Schedule injects a fault after its delay. A condition without a delay
// (a lost GPU, a link down, a hot GPU…) is there from the start, before
// anything reads the GPUs; an XID is an event and always comes later, to
// whoever listens by then. A fault for a GPU the node does not have is
// ignored.
func (b *Backend) Schedule(f faultspec.Spec) {
	if f.GPU >= len(b.devices) {
		return
	}
	if f.Delay <= 0 && f.Kind != faultspec.XID {
		b.Inject(f)
		return
	}
	b.after(f.Delay, func() { b.Inject(f) })
}

func (b *Backend) after(d time.Duration, fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.timers = append(b.timers, b.clock.AfterFunc(d, fn))
}

// Inject applies a fault now.
func (b *Backend) Inject(f faultspec.Spec) {
	if f.GPU >= len(b.devices) {
		return
	}
	d := b.devices[f.GPU]
	switch f.Kind {
	case faultspec.XID:
		b.emitXID(d, uint64(f.Value))
	case faultspec.Temp:
		d.mu.Lock()
		d.forcedTemp = float64(f.Value)
		d.mu.Unlock()
	case faultspec.ECCDBE:
		d.mu.Lock()
		d.eccVolatileUnc++
		d.eccAggregateUnc++
		d.mu.Unlock()
	case faultspec.RowRemapPending:
		d.mu.Lock()
		d.remapPending = true
		d.remapUncorrected++
		d.mu.Unlock()
	case faultspec.RowRemapFailure:
		d.mu.Lock()
		d.remapFailure = true
		d.mu.Unlock()
	case faultspec.NVLinkDown:
		d.mu.Lock()
		for l := range d.links {
			if d.links[l] {
				d.links[l] = false
				break
			}
		}
		d.mu.Unlock()
	case faultspec.GPULost:
		d.mu.Lock()
		d.lost = true
		// Its job dies with it.
		d.stopJob()
		d.mu.Unlock()
	}
}

// Heal clears a thermal fault and brings a lost GPU back, as a cooled rack
// or a reseated GPU would.
func (b *Backend) Heal(gpu int) {
	if gpu >= len(b.devices) {
		return
	}
	d := b.devices[gpu]
	d.mu.Lock()
	d.forcedTemp = 0
	d.lost = false
	d.mu.Unlock()
}
