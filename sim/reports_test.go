package sim

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// recording is a node's client that notes what its reports carried.
type recording struct {
	nodev1.NodeServiceClient
	mu    sync.Mutex
	kinds []string
}

func (r *recording) ReportHealth(ctx context.Context, req *nodev1.ReportHealthRequest, opts ...grpc.CallOption) (*nodev1.ReportHealthResponse, error) {
	k := "events"
	switch {
	case len(req.GetMetrics()) > 0:
		k = "full"
	case len(req.GetMetricChanges()) > 0:
		k = "delta"
	}
	r.mu.Lock()
	r.kinds = append(r.kinds, k)
	r.mu.Unlock()
	return r.NodeServiceClient.ReportHealth(ctx, req, opts...)
}

// TestReportsAreDeltasTheControlPlaneDecodes: the simulator sends a full
// snapshot and then deltas, as an agent does, and the control plane holds
// every GPU's whole reading from them.
func TestReportsAreDeltasTheControlPlaneDecodes(t *testing.T) {
	addr, ops := controlPlane(t)
	f, err := New(Options{Server: addr, Nodes: 20, GPUs: 4, Conns: 2, NoCommands: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec := &recording{NodeServiceClient: f.nodes[0].client}
	f.nodes[0].client = rec
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	time.Sleep(3 * time.Second)
	cancel()
	<-done
	rec.mu.Lock()
	kinds := slices.Clone(rec.kinds)
	rec.mu.Unlock()
	if len(kinds) < 3 || kinds[0] != "full" || slices.Contains(kinds[1:], "full") || !slices.Contains(kinds, "delta") {
		t.Fatalf("node 0 sent %v, want a full snapshot then deltas", kinds)
	}
	for _, id := range f.NodeIDs() {
		resp, err := ops.GetNode(context.Background(), &controlplanev1.GetNodeRequest{NodeId: id})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range resp.GetNode().GetGpus() {
			m := g.GetMetrics()
			if len(m.GetNvlinks()) != 18 || m.GetEcc() == nil || m.GetRowRemap() == nil || !slices.Equal(m.GetUnsupported(), []string{"retired_pages"}) || m.GetSmClockMhz() != 1980 {
				t.Fatalf("%s GPU %d holds %v", id, g.GetIndex(), m)
			}
			if age := time.Since(m.GetTime().AsTime()); age > 2*time.Second {
				t.Fatalf("%s GPU %d's metrics are %s old: the deltas were not applied", id, g.GetIndex(), age)
			}
		}
	}
}
