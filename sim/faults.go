package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/simload"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// InjectXID pushes an XID on a node's GPU at once, as an agent does, and
// returns when the control plane has it.
func (f *Fleet) InjectXID(ctx context.Context, nodeIndex, gpu int, xid uint32) error {
	n := f.nodes[nodeIndex]
	ev := &fleetv1.HealthEvent{
		Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: int32(gpu), Xid: xid, Time: timestamppb.Now(),
		Message: fmt.Sprintf("XID %d reported by the driver", xid),
	}
	_, err := n.client.ReportHealth(ctx, &nodev1.ReportHealthRequest{NodeId: n.id, Events: []*fleetv1.HealthEvent{ev}})
	return err
}

// chaos injects random faults across the fleet: each node gets one every
// ChaosInterval on average.
func (f *Fleet) chaos(ctx context.Context) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	mean := float64(f.o.ChaosInterval) / float64(len(f.nodes))
	for {
		wait := time.Duration(rng.ExpFloat64() * mean)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n := f.nodes[rng.IntN(len(f.nodes))]
		if n.stopped.Load() {
			continue
		}
		gpu := rng.IntN(len(n.gpus))
		roll := rng.Float64()
		// As the simulated NVML's chaos: about one fault in twelve takes a
		// GPU out of service.
		switch {
		case roll < 0.865:
			_ = f.InjectXID(ctx, n.index, gpu, simload.ChaosXIDs[rng.IntN(len(simload.ChaosXIDs))])
		case roll < 0.965:
			n.mu.Lock()
			n.gpus[gpu].hot = true
			n.pending = append(n.pending, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_THERMAL, GpuIndex: int32(gpu), Time: timestamppb.Now(), Value: 92, Message: "temperature 92°C at or past the slowdown threshold of 87°C"})
			n.mu.Unlock()
			heal := time.Duration(60+rng.IntN(120)) * time.Second
			go func() {
				select {
				case <-ctx.Done():
				case <-time.After(heal):
					n.mu.Lock()
					n.gpus[gpu].hot = false
					n.mu.Unlock()
				}
			}()
		case roll < 0.985:
			n.mu.Lock()
			n.gpus[gpu].dbe = true
			n.pending = append(n.pending, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_ECC_UNCORRECTED, GpuIndex: int32(gpu), Time: timestamppb.Now(), Value: 1, Message: "volatile uncorrected ECC errors: 1"})
			n.mu.Unlock()
		default:
			n.mu.Lock()
			n.gpus[gpu].lost = true
			n.pending = append(n.pending, &fleetv1.HealthEvent{Kind: fleetv1.EventKind_EVENT_KIND_GPU_LOST, GpuIndex: int32(gpu), Time: timestamppb.Now(), Message: "NVML: GPU is lost"})
			n.mu.Unlock()
		}
	}
}
