//go:build !race

package fleet

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"testing"

	"github.com/navarch/navarch/internal/healthdelta"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// TestUsualReportKeepsAShallowStack: the report a fleet sends all day, a
// delta of fresh readings that judges nothing, takes at most 4 KiB of a
// goroutine's stack. Each call runs on a goroutine of its own, which
// starts small and is copied to a stack twice the size each time it
// outgrows it; in the control plane gRPC's frames come on top, and a
// report that outgrew 8 KiB in all was copied twice, which at 100 000
// nodes was about 5 % of the control plane's CPU (judgeReport's frame
// alone is about 2 KiB; see its comment: with it, each goroutine here
// held 8 KiB). The goroutines' stacks are read while they are parked after
// their call, with the collector off so that none is shrunk; the check
// leaves room between 4 and 8 KiB for other goroutines started meanwhile.
//
// The race detector's instrumentation changes the frames, so this test is
// built without it; the test task runs it in a pass of its own.
func TestUsualReportKeepsAShallowStack(t *testing.T) {
	const n = 500
	f := benchFleet(t, n)
	ctx := context.Background()
	reqs := make([]*nodev1.ReportHealthRequest, n)
	for i := range reqs {
		id := fmt.Sprintf("node-%06d", i)
		full := report(id)
		full.Sequence = 2
		if _, err := f.ReportHealth(ctx, full); err != nil {
			t.Fatal(err)
		}
		reqs[i] = &nodev1.ReportHealthRequest{NodeId: id, GpuCount: 8, Sequence: 3, BaseSequence: 2,
			MetricChanges: healthdelta.Diff(healthdelta.Full(2, report(id).GetMetrics()), report(id).GetMetrics())}
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	release := make(chan struct{})
	errs := make(chan error, n)
	var done sync.WaitGroup
	var parked sync.WaitGroup
	for _, req := range reqs {
		done.Add(1)
		parked.Add(1)
		go func() {
			defer done.Done()
			resp, err := f.ReportHealth(ctx, req)
			if err == nil && (resp.GetFullSnapshotWanted() || resp.GetAccepted() != 0) {
				err = fmt.Errorf("node %s: %v: not the usual report", req.GetNodeId(), resp)
			}
			errs <- err
			parked.Done()
			<-release
		}()
	}
	parked.Wait()
	runtime.ReadMemStats(&after)
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	perCall := (int64(after.StackInuse) - int64(before.StackInuse)) / n
	t.Logf("%d B of stack per goroutine after the usual report", perCall)
	if perCall > 6<<10 {
		t.Errorf("the usual report left %d B of stack per goroutine, want 4 KiB", perCall)
	}
}
