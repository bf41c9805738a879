package api

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// fakeNodes is the fleet as NodeService sees it; it counts the heartbeats
// that got past the checks.
type fakeNodes struct {
	Nodes
	heartbeats int
}

func (f *fakeNodes) Heartbeat(context.Context, *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error) {
	f.heartbeats++
	return &nodev1.HeartbeatResponse{}, nil
}

func samples(n int) []*fleetv1.GpuSample {
	out := make([]*fleetv1.GpuSample, n)
	for i := range out {
		out[i] = &fleetv1.GpuSample{
			GpuIndex: uint32(i), UtilizationGpuPercent: 100, TemperatureCelsius: MaxTemperatureCelsius,
			PowerUsageMilliwatts: MaxPowerMilliwatts, MemoryUsedBytes: 80 << 30, ProcessCount: MaxGPUProcesses,
		}
	}
	return out
}

// TestHeartbeatSamples: a heartbeat's samples are one per GPU with every
// value in range, or the heartbeat is refused naming the sample's field;
// nothing out of range reaches the fleet to be clamped there.
func TestHeartbeatSamples(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		change func(s []*fleetv1.GpuSample)
		field  string // empty: accepted
	}{
		{"at-the-bounds", 4, func([]*fleetv1.GpuSample) {}, ""},
		{"too-many", MaxGPUs + 1, func([]*fleetv1.GpuSample) {}, "samples"},
		{"index-past-limit", 4, func(s []*fleetv1.GpuSample) { s[1].GpuIndex = MaxGPUs }, "samples[1].gpu_index"},
		{"duplicate-index", 4, func(s []*fleetv1.GpuSample) { s[3].GpuIndex = 0 }, "samples[3].gpu_index"},
		{"utilization", 4, func(s []*fleetv1.GpuSample) { s[0].UtilizationGpuPercent = 101 }, "samples[0].utilization_gpu_percent"},
		{"temperature", 4, func(s []*fleetv1.GpuSample) { s[2].TemperatureCelsius = 70000 }, "samples[2].temperature_celsius"},
		{"power", 4, func(s []*fleetv1.GpuSample) { s[2].PowerUsageMilliwatts = MaxPowerMilliwatts + 1 }, "samples[2].power_usage_milliwatts"},
		{"processes", 4, func(s []*fleetv1.GpuSample) { s[1].ProcessCount = 70000 }, "samples[1].process_count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fleet := &fakeNodes{}
			svc := &nodeService{fleet: fleet}
			req := &nodev1.HeartbeatRequest{NodeId: "n1", Samples: samples(tt.n)}
			tt.change(req.Samples)
			_, err := svc.Heartbeat(context.Background(), req)
			if tt.field == "" {
				if err != nil || fleet.heartbeats != 1 {
					t.Fatalf("got %v with %d heartbeats taken, want it taken", err, fleet.heartbeats)
				}
				return
			}
			if field, _ := apierr.Field(err); status.Code(err) != codes.InvalidArgument || field != tt.field {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, tt.field)
			}
			if fleet.heartbeats != 0 {
				t.Fatal("a refused heartbeat reached the fleet")
			}
		})
	}
}

// TestHeartbeatChecksAllocateNothing: the heartbeat is the busiest call;
// checking a valid one costs no allocation.
func TestHeartbeatChecksAllocateNothing(t *testing.T) {
	s := samples(8)
	if n := testing.AllocsPerRun(100, func() {
		if err := checkSamples(s); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("checking a valid heartbeat's samples made %v allocations", n)
	}
}
