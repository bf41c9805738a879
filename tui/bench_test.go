package tui

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// benchModel is a console holding a fleet of n 8-GPU nodes, at 200×60.
func benchModel(b *testing.B, n int) *Model {
	b.Helper()
	m := New(Options{NoStream: true, Now: clock, Theme: NewTheme(true, true), Server: "127.0.0.1:50051"})
	send(m, tea.WindowSizeMsg{Width: 200, Height: 60}, connectedMsg{})
	nodes := make([]*fleetv1.Node, 0, n)
	for i := range n {
		nodes = append(nodes, benchNode(i))
	}
	var msgs []*controlplanev1.WatchFleetResponse
	for i := 0; i < len(nodes); i += 500 {
		msgs = append(msgs, &controlplanev1.WatchFleetResponse{Revision: 1, Change: &controlplanev1.WatchFleetResponse_Snapshot{
			Snapshot: &controlplanev1.Snapshot{Nodes: nodes[i:min(i+500, len(nodes))], Complete: i+500 >= len(nodes), Summary: &fleetv1.FleetSummary{Nodes: uint32(n)}},
		}})
	}
	m.Apply(msgs...)
	send(m, tickMsg(now)) // a fleet this large is sorted on the next tick
	if len(m.d.fleet.shown) != n {
		b.Fatalf("loaded %d of %d", len(m.d.fleet.shown), n)
	}
	return m
}

// benchNode is the i-th node of a benchmark fleet: eight GPUs, two labels,
// and one node in 97 with an XID.
func benchNode(i int) *fleetv1.Node {
	node := fixtureNode(fmt.Sprintf("gpu-%06d", i), 8, fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE,
		fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY, fleetv1.Reachability_REACHABILITY_ONLINE, time.Duration(i%60)*time.Second)
	node.Labels = map[string]string{"zone": fmt.Sprintf("zone-%d", i%16), "rack": fmt.Sprintf("r%d", i%500)}
	if i%97 == 0 {
		node.Health = fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
		node.Gpus[i%8].Health = fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
		node.Gpus[i%8].Faults = []*fleetv1.Fault{{Kind: fleetv1.EventKind_EVENT_KIND_XID, Xid: 79}}
		node.HealthCause = fmt.Sprintf("gpu%d: GPU has fallen off the bus", i%8)
		node.Remedy = fleetv1.Remedy_REMEDY_REBOOT_NODE
	}
	return node
}

// BenchmarkDecodeSnapshotChunk is one snapshot chunk of 500 nodes, each
// with its GPUs' inventory as the control plane sends it, decoded as the
// console does (rows), and decoded whole as protobuf messages, as it did
// before. The figure a node is ns/node.
func BenchmarkDecodeSnapshotChunk(b *testing.B) {
	chunk := &controlplanev1.Snapshot{}
	for i := range 500 {
		n := benchNode(i)
		for _, g := range n.GetGpus() {
			g.Serial = fmt.Sprintf("1654922%06d", i*8+int(g.GetIndex()))
			g.PciBusId = fmt.Sprintf("00000000:%02X:00.0", 0x18+g.GetIndex()*0x10)
			g.Uuid = fmt.Sprintf("GPU-%08x-%04x-%04x-%04x-%012x", i, g.GetIndex(), i%65536, 7, i*8+int(g.GetIndex()))
			g.SlowdownTemperatureCelsius, g.PowerLimitMilliwatts, g.NvlinkCount = 87, 700000, 18
		}
		n.Provider, n.InstanceId, n.BootId = "aws", fmt.Sprintf("i-%017x", i), fmt.Sprintf("%032x", i)
		n.RegisteredAt = timestamppb.New(now.Add(-time.Hour))
		chunk.Nodes = append(chunk.Nodes, n)
	}
	wire, err := proto.Marshal(&controlplanev1.WatchFleetResponse{Revision: 1, Change: &controlplanev1.WatchFleetResponse_Snapshot{Snapshot: chunk}})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d bytes a node", len(wire)/500)
	for _, tc := range []struct {
		name   string
		decode func([]byte) error
	}{
		{"rows", func(w []byte) error { _, err := DecodeMessage(w); return err }},
		{"messages", func(w []byte) error { return proto.Unmarshal(w, &controlplanev1.WatchFleetResponse{}) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				if err := tc.decode(wire); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/node")
		})
	}
}

var sizes = []int{1000, 10000, 100000}

// BenchmarkFleetFrame is one cursor move and the frame it redraws.
func BenchmarkFleetFrame(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			moveAndRedraw(b, benchModel(b, n))
		})
	}
}

// BenchmarkOverlayFrame is a key while the help is open over a fleet of
// 100 000 nodes: the fleet is drawn under the help and the help over it.
func BenchmarkOverlayFrame(b *testing.B) {
	m := benchModel(b, 100000)
	m.Update(press("?"))
	if m.overlay == nil {
		b.Fatal("help did not open")
	}
	moveAndRedraw(b, m)
}

// moveAndRedraw times a cursor move down or up and the frame it draws.
func moveAndRedraw(b *testing.B, m *Model) { alternate(b, m, press("j"), press("k")) }

// alternate times key one, then key two, and so on, each with the frame
// it draws, so that the model ends each pair as it began.
func alternate(b *testing.B, m *Model, one, two tea.Msg) {
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			m.Update(one)
		} else {
			m.Update(two)
		}
	}
}

// BenchmarkFilterKeystroke is one key typed into the filter: the fleet is
// filtered again and the frame redrawn.
func BenchmarkFilterKeystroke(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			m := benchModel(b, n)
			m.Update(press("/"))
			m.Update(press("z"))
			alternate(b, m, press("7"), press("backspace"))
		})
	}
}

// BenchmarkHeartbeatBatch applies a thousand heartbeats, as the control
// plane batches them, and redraws.
func BenchmarkHeartbeatBatch(b *testing.B) {
	m := benchModel(b, 100000)
	batch := &controlplanev1.HeartbeatBatch{}
	for i := range 1000 {
		batch.Heartbeats = append(batch.Heartbeats, &controlplanev1.NodeHeartbeat{
			NodeId: fmt.Sprintf("gpu-%06d", i*97), Reachability: fleetv1.Reachability_REACHABILITY_ONLINE,
			Samples: []*fleetv1.GpuSample{{UtilizationGpuPercent: 50}},
		})
	}
	msg := wire(&controlplanev1.WatchFleetResponse{Change: &controlplanev1.WatchFleetResponse_Heartbeats{Heartbeats: batch}})
	b.ResetTimer()
	for range b.N {
		m.Update(msg)
	}
}

// BenchmarkFleetMemory is what the console holds for each node of a
// 100 000-node fleet once its snapshot is in: the heap after a collection.
func BenchmarkFleetMemory(b *testing.B) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := benchModel(b, 100000)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/100000, "B/node")
		runtime.KeepAlive(m)
	}
}
