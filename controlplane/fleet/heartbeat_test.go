package fleet

import (
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestHeartbeatSamplesOfUnknownGPUs: a heartbeat with a sample for a GPU
// the node never registered is refused, naming the sample, and changes
// nothing; one for a GPU that did not answer at registration is taken.
func TestHeartbeatSamplesOfUnknownGPUs(t *testing.T) {
	f := newFleet(t, Options{Clock: clockwork.NewFakeClock()})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{
		NodeId: "n1", Gpus: []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-0"}, {Index: 1, Uuid: "GPU-1"}},
		UnansweredGpus: []*nodev1.UnansweredGpu{{Index: 3, Reason: "lost"}},
	}); err != nil {
		t.Fatal(err)
	}
	good := &nodev1.HeartbeatRequest{NodeId: "n1", Samples: []*fleetv1.GpuSample{{GpuIndex: 0, UtilizationGpuPercent: 40}, {GpuIndex: 3}}}
	if _, err := f.Heartbeat(ctx, good); err != nil {
		t.Fatalf("heartbeat for registered GPUs: %v", err)
	}
	tests := []struct {
		name    string
		samples []*fleetv1.GpuSample
		field   string
	}{
		{"never-registered", []*fleetv1.GpuSample{{GpuIndex: 0}, {GpuIndex: 2, UtilizationGpuPercent: 99}}, "samples[1].gpu_index"},
		{"beyond-inventory", []*fleetv1.GpuSample{{GpuIndex: 63}}, "samples[0].gpu_index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1", Samples: tt.samples})
			if field, _ := apierr.Field(err); status.Code(err) != codes.InvalidArgument || field != tt.field {
				t.Fatalf("got %v, want InvalidArgument naming %s", err, tt.field)
			}
			d, err := f.NodeDetail(ctx, "n1", 0)
			if err != nil {
				t.Fatal(err)
			}
			if s := d.GetNode().GetSamples(); len(s) != 2 || s[0].GetUtilizationGpuPercent() != 40 {
				t.Fatalf("a refused heartbeat changed the samples: %v", s)
			}
		})
	}
}

// TestGPUSet: the set holds exactly the node's indexes, those under 64 in
// its bits and any above by a scan.
func TestGPUSet(t *testing.T) {
	n := &fleetv1.Node{Gpus: []*fleetv1.Gpu{{Index: 0}, {Index: 2}, {Index: 63}, {Index: 64}, {Index: 100}}}
	s := gpusOf(n)
	for idx, want := range map[uint32]bool{0: true, 1: false, 2: true, 3: false, 62: false, 63: true, 64: true, 65: false, 100: true, 101: false, 1<<32 - 1: false} {
		if got := s.has(idx); got != want {
			t.Errorf("has(%d) = %v, want %v", idx, got, want)
		}
	}
	if gpusOf(&fleetv1.Node{}).has(0) {
		t.Error("a node without GPUs has GPU 0")
	}
}

// TestHeartbeatFollowsTheGPUsOfARegistrationAgain: the GPUs a heartbeat
// may name are those of the node's latest registration, not of the one
// the control plane first checked a heartbeat against. (A GPU missing at
// a registration stays, lost, so only a GPU added shows the difference.)
func TestHeartbeatFollowsTheGPUsOfARegistrationAgain(t *testing.T) {
	f := newFleet(t, Options{Clock: clockwork.NewFakeClock()})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	register := func(boot string, gpus ...uint32) {
		t.Helper()
		req := &nodev1.RegisterNodeRequest{NodeId: "n1", BootId: boot}
		for _, i := range gpus {
			req.Gpus = append(req.Gpus, &fleetv1.Gpu{Index: i, Uuid: fmt.Sprintf("GPU-%d", i)})
		}
		if _, err := f.Register(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	beat := func(gpu uint32) error {
		_, err := f.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1", Samples: []*fleetv1.GpuSample{{GpuIndex: gpu}}})
		return err
	}
	register("b1", 0, 1)
	if err := beat(1); err != nil {
		t.Fatalf("a sample for GPU 1 of two: %v", err)
	}
	if err := beat(2); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a sample for GPU 2 of two: %v, want InvalidArgument", err)
	}
	register("b2", 0, 1, 2)
	if err := beat(2); err != nil {
		t.Fatalf("a sample for GPU 2 after a registration with three: %v", err)
	}
}

// TestNodeHeartbeatMessage: what a watching console's flush is sent for
// a node is its id, reachability, the time of its last heartbeat to the
// nanosecond and each GPU's sample, field by field, encoded as a
// NodeHeartbeat; a node that left has none.
func TestNodeHeartbeatMessage(t *testing.T) {
	at := time.Date(2026, 11, 30, 10, 0, 0, 123456789, time.UTC)
	f := newFleet(t, Options{Clock: clockwork.NewFakeClockAt(at)})
	t.Cleanup(f.Close)
	ctx := ctxT(t)
	if _, err := f.Register(ctx, &nodev1.RegisterNodeRequest{NodeId: "n1", Gpus: []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-0"}, {Index: 1, Uuid: "GPU-1"}}}); err != nil {
		t.Fatal(err)
	}
	samples := []*fleetv1.GpuSample{
		{GpuIndex: 0, UtilizationGpuPercent: 40, TemperatureCelsius: 61, PowerUsageMilliwatts: 300000, MemoryUsedBytes: 1 << 30, ProcessCount: 2},
		{GpuIndex: 1, UtilizationGpuPercent: 90, TemperatureCelsius: 75, PowerUsageMilliwatts: 650000, MemoryUsedBytes: 70 << 30, ProcessCount: 1},
	}
	if _, err := f.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "n1", Samples: samples}); err != nil {
		t.Fatal(err)
	}
	b, ok := f.get("n1").AppendHeartbeat([]byte("kept"))
	if !ok {
		t.Fatal("no heartbeat data for a registered node")
	}
	if string(b[:4]) != "kept" {
		t.Fatalf("AppendHeartbeat wrote over what b held: %q", b[:4])
	}
	hb := &controlplanev1.NodeHeartbeat{}
	if err := proto.Unmarshal(b[4:], hb); err != nil {
		t.Fatalf("heartbeat data does not decode as a NodeHeartbeat: %v", err)
	}
	if hb.GetNodeId() != "n1" || hb.GetReachability() != fleetv1.Reachability_REACHABILITY_ONLINE || !hb.GetLastHeartbeatAt().AsTime().Equal(at) {
		t.Fatalf("heartbeat message %v, want n1, ONLINE, at %s", hb, at)
	}
	if len(hb.GetSamples()) != len(samples) {
		t.Fatalf("%d samples, want %d", len(hb.GetSamples()), len(samples))
	}
	for i, want := range samples {
		if got := hb.GetSamples()[i]; !proto.Equal(got, want) {
			t.Errorf("sample %d: %v, want %v", i, got, want)
		}
	}
	ns := f.get("n1")
	ns.removed.Store(true) // as the commit of its removal marks it
	if b, ok := ns.AppendHeartbeat(nil); ok || len(b) != 0 {
		t.Fatalf("a node that left gave heartbeat data: %q", b)
	}
}
