package healthdelta

import (
	"math/rand/v2"
	"sync"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// FullEvery is how often a Sender sends a full snapshot even though the
// control plane holds its reports: a safety net, should the two ever hold
// different states without a lost or refused report to show it. Ten
// minutes of 30-second reports is one full in twenty.
const FullEvery = 10 * time.Minute

// Sender numbers one agent's health reports and fills in their metrics: a
// full snapshot when it has no acknowledged base (at the start, after a
// registration, when the control plane asks) and every FullEvery, else a
// delta against the last report the control plane acknowledged. It is safe
// for concurrent use.
type Sender struct {
	mu   sync.Mutex
	last uint64 // the sequence of the last report filled
	// base is what the control plane acknowledged last; nil sends a full.
	base *Held
	// fullAt is when the acknowledged full snapshot was read; filledAt is
	// when the last report filled was.
	fullAt, filledAt time.Time
}

// NewSender returns a Sender whose first report gets a sequence picked at
// random, so that a report of an earlier run of the agent is never taken
// for one of this run's.
func NewSender() *Sender {
	return &Sender{last: uint64(rand.Uint32())}
}

// Fill sets req's sequence and metrics for cur, the GPUs' readings at now.
// With no readings it leaves req without metrics. cur must not change
// until Answered has taken the answer.
func (s *Sender) Fill(req *nodev1.ReportHealthRequest, cur []*fleetv1.GpuMetrics, now time.Time) {
	if len(cur) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last++
	s.filledAt = now
	req.Sequence = s.last
	if s.base == nil || now.Sub(s.fullAt) >= FullEvery {
		req.Metrics = cur
		return
	}
	req.BaseSequence = s.base.seq
	req.MetricChanges = Diff(s.base, cur)
}

// Answered takes the control plane's answer to req, the report Fill filled
// last: an acknowledged report becomes the base of the next delta, and a
// refused delta makes the next report a full snapshot. It takes req's
// delta messages over.
func (s *Sender) Answered(req *nodev1.ReportHealthRequest, resp *nodev1.ReportHealthResponse) {
	seq := req.GetSequence()
	if seq == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case resp.GetFullSnapshotWanted():
		s.base = nil
	case resp.GetHeldSequence() != seq:
		// Not taken (a terminated node's metrics are not): the base stays.
	case len(req.GetMetrics()) > 0:
		s.base = Full(seq, req.GetMetrics())
		if seq == s.last {
			s.fullAt = s.filledAt
		}
	case req.GetBaseSequence() == s.base.Sequence():
		next, _, err := s.base.Apply(seq, req.GetMetricChanges())
		if err != nil {
			next = nil
		}
		s.base = next
	default:
		s.base = nil
	}
}

// Forget drops the acknowledged base, so the next report is a full
// snapshot: after the agent registers again, or when the control plane
// refused a report outright.
func (s *Sender) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.base = nil
}
