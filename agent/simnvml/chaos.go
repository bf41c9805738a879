package simnvml

import (
	"time"

	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/simload"
)

// scheduleChaos injects a random fault after an exponentially distributed
// wait, then schedules the next.
func (b *Backend) scheduleChaos(mean time.Duration) {
	b.mu.Lock()
	wait := time.Duration(b.rng.ExpFloat64() * float64(mean))
	b.mu.Unlock()
	b.after(wait, func() {
		b.chaos()
		b.scheduleChaos(mean)
	})
}

func (b *Backend) chaos() {
	b.mu.Lock()
	gpu := b.rng.IntN(len(b.devices))
	roll := b.rng.Float64()
	xid := simload.ChaosXIDs[b.rng.IntN(len(simload.ChaosXIDs))]
	heal := time.Duration(60+b.rng.IntN(120)) * time.Second
	b.mu.Unlock()
	// About one fault in twelve takes a GPU out of service.
	switch {
	case roll < 0.865:
		b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: xid, GPU: gpu})
	case roll < 0.965:
		b.Inject(faultspec.Spec{Kind: faultspec.Temp, Value: slowdownTemp + 5, GPU: gpu, Hold: heal})
	case roll < 0.975:
		b.Inject(faultspec.Spec{Kind: faultspec.ECCDBE, GPU: gpu})
	case roll < 0.985:
		b.Inject(faultspec.Spec{Kind: faultspec.RowRemapPending, GPU: gpu})
	case roll < 0.995:
		b.Inject(faultspec.Spec{Kind: faultspec.NVLinkDown, GPU: gpu})
	default:
		b.Inject(faultspec.Spec{Kind: faultspec.GPULost, GPU: gpu})
	}
}
