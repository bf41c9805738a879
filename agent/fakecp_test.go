package agent

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/internal/healthdelta"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// fakeCP is a NodeService on loopback that records what the agent sends
// and hands it commands. The agent's own code runs against it unchanged;
// the real control plane is exercised end to end in e2e/.
type fakeCP struct {
	nodev1.UnimplementedNodeServiceServer
	t    *testing.T
	addr string

	mu            sync.Mutex
	srv           *grpc.Server
	registrations []*nodev1.RegisterNodeRequest
	heartbeats    []*nodev1.HeartbeatRequest
	reports       []*nodev1.ReportHealthRequest
	results       []*nodev1.ReportCommandResultRequest
	registerErr   error
	heartbeatErr  error
	// unreachable makes heartbeats and reports fail as if the control
	// plane were down, without breaking the connection.
	unreachable bool
	// refused counts the heartbeats and reports refused while unreachable.
	refusedBeats, refusedReports int
	interval                     time.Duration
	report                       time.Duration
	delivery                     nodev1.CommandDelivery
	polls                        []time.Duration // the wait of every GetNodeCommands call
	commands                     chan *fleetv1.Command
	// lifecycle is what heartbeats answer; zero means ACTIVE.
	lifecycle fleetv1.LifecycleState
	// hold, when set, keeps the next heartbeat's answer back until it is
	// closed; held counts the heartbeats held so.
	hold chan struct{}
	held int
	// metrics is the snapshot held, as the control plane keeps it;
	// loseAnswers makes that many reports be taken but answered with an
	// error, as when the answer is lost on its way back.
	metrics     *healthdelta.Held
	loseAnswers int
	// wantFull asks for a full snapshot in every answer, even to one.
	wantFull bool

	// streams counts the WatchNodeCommands streams opened; noStream makes
	// them Unimplemented, as an older control plane answers.
	streams  int
	noStream bool
}

func newFakeCP(t *testing.T) *fakeCP {
	f := &fakeCP{t: t, addr: "127.0.0.1:0", interval: 50 * time.Millisecond, report: time.Hour, commands: make(chan *fleetv1.Command, 16)}
	f.start()
	t.Cleanup(f.stop)
	return f
}

// start serves on f.addr; after the first start the address stays the
// same, so a restart looks like the control plane coming back.
func (f *fakeCP) start() {
	f.t.Helper()
	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", f.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	srv := grpc.NewServer()
	nodev1.RegisterNodeServiceServer(srv, f)
	f.mu.Lock()
	f.srv = srv
	f.addr = lis.Addr().String()
	f.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
}

func (f *fakeCP) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
}

func (f *fakeCP) RegisterNode(_ context.Context, req *nodev1.RegisterNodeRequest) (*nodev1.RegisterNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.registerErr != nil {
		return nil, f.registerErr
	}
	f.registrations = append(f.registrations, proto.CloneOf(req))
	return &nodev1.RegisterNodeResponse{
		NodeId:               req.GetNodeId(),
		HeartbeatInterval:    durationpb.New(f.interval),
		HealthReportInterval: durationpb.New(f.report),
		CommandPollTimeout:   durationpb.New(time.Second),
		Lifecycle:            fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE,
		CommandDelivery:      f.delivery,
	}, nil
}

func (f *fakeCP) Heartbeat(_ context.Context, req *nodev1.HeartbeatRequest) (*nodev1.HeartbeatResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.heartbeatErr; err != nil {
		f.heartbeatErr = nil
		return nil, err
	}
	if f.unreachable {
		f.refusedBeats++
		return nil, status.Error(codes.Unavailable, "control plane down")
	}
	f.heartbeats = append(f.heartbeats, proto.CloneOf(req))
	resp := &nodev1.HeartbeatResponse{Lifecycle: f.lifecycle, PendingCommands: uint32(len(f.commands))}
	if resp.Lifecycle == fleetv1.LifecycleState_LIFECYCLE_STATE_UNSPECIFIED {
		resp.Lifecycle = fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE
	}
	if hold := f.hold; hold != nil {
		// The answer is made now and delivered late.
		f.hold = nil
		f.held++
		f.mu.Unlock()
		<-hold
		f.mu.Lock()
	}
	return resp, nil
}

func (f *fakeCP) setLifecycle(l fleetv1.LifecycleState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lifecycle = l
}

func (f *fakeCP) ReportHealth(_ context.Context, req *nodev1.ReportHealthRequest) (*nodev1.ReportHealthResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unreachable {
		f.refusedReports++
		return nil, status.Error(codes.Unavailable, "control plane down")
	}
	f.reports = append(f.reports, proto.CloneOf(req))
	resp := &nodev1.ReportHealthResponse{Accepted: uint32(len(req.GetEvents()))}
	switch {
	case len(req.GetMetrics()) > 0:
		f.metrics = healthdelta.Full(req.GetSequence(), req.GetMetrics())
	case len(req.GetMetricChanges()) == 0:
	case req.GetBaseSequence() != f.metrics.Sequence():
		resp.FullSnapshotWanted = true
	default:
		next, _, err := f.metrics.Apply(req.GetSequence(), req.GetMetricChanges())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		f.metrics = next
	}
	resp.HeldSequence = f.metrics.Sequence()
	resp.FullSnapshotWanted = resp.FullSnapshotWanted || f.wantFull
	if f.loseAnswers > 0 {
		f.loseAnswers--
		return nil, status.Error(codes.Unavailable, "answer lost")
	}
	return resp, nil
}

func (f *fakeCP) GetNodeCommands(ctx context.Context, req *nodev1.GetNodeCommandsRequest) (*nodev1.GetNodeCommandsResponse, error) {
	f.mu.Lock()
	f.polls = append(f.polls, req.GetWait().AsDuration())
	f.mu.Unlock()
	select {
	case c := <-f.commands:
		return &nodev1.GetNodeCommandsResponse{Commands: []*fleetv1.Command{c}}, nil
	case <-time.After(req.GetWait().AsDuration()):
		return &nodev1.GetNodeCommandsResponse{}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// WatchNodeCommands sends each command as it comes, for as long as the
// stream stays open.
func (f *fakeCP) WatchNodeCommands(_ *nodev1.WatchNodeCommandsRequest, stream grpc.ServerStreamingServer[nodev1.WatchNodeCommandsResponse]) error {
	f.mu.Lock()
	f.streams++
	old := f.noStream
	f.mu.Unlock()
	if old {
		return status.Error(codes.Unimplemented, "unknown method WatchNodeCommands for service navarch.node.v1.NodeService")
	}
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for {
		select {
		case c := <-f.commands:
			if err := stream.Send(&nodev1.WatchNodeCommandsResponse{Commands: []*fleetv1.Command{c}}); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}

func (f *fakeCP) ReportCommandResult(_ context.Context, req *nodev1.ReportCommandResultRequest) (*nodev1.ReportCommandResultResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results = append(f.results, proto.CloneOf(req))
	return &nodev1.ReportCommandResultResponse{}, nil
}

// events returns every event delivered so far, in order.
func (f *fakeCP) refused() (beats, reports int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refusedBeats, f.refusedReports
}

func (f *fakeCP) setUnreachable(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unreachable = down
}

func (f *fakeCP) reportCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reports)
}

func (f *fakeCP) events() []*fleetv1.HealthEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*fleetv1.HealthEvent
	for _, r := range f.reports {
		out = append(out, r.GetEvents()...)
	}
	return out
}

func (f *fakeCP) result(id string, final bool) *nodev1.ReportCommandResultRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.results {
		if r.GetCommandId() == id && (!final || r.GetStatus() != fleetv1.CommandStatus_COMMAND_STATUS_ACKNOWLEDGED) {
			return r
		}
	}
	return nil
}

func (f *fakeCP) counts() (regs, beats int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.registrations), len(f.heartbeats)
}

func notFound() error {
	return status.Error(codes.NotFound, "node_id: node is not registered; register first")
}
