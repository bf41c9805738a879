package lambda_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/testutil"
)

type noticeLog struct {
	mu sync.Mutex
	n  []provider.Notice
}

func (l *noticeLog) add(n provider.Notice) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n = append(l.n, n)
}

func (l *noticeLog) all() []provider.Notice {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.n)
}

func TestWatchReportsGoneInstancesOnce(t *testing.T) {
	h := newHarness(t, nil)
	s, _ := spec("n-1", "n-2", "n-3", "n-4", "n-5")
	insts, err := h.prov.Provision(t.Context(), s)
	if err != nil || len(insts) != 5 {
		t.Fatalf("Provision: %v, %d instances", err, len(insts))
	}
	// n-5 stays booting, so it is not watched yet.
	for _, i := range insts[:4] {
		h.fake.setStatus(i.InstanceID, "active")
	}
	ctx, cancel := context.WithCancel(t.Context())
	var log noticeLog
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.prov.Watch(ctx, log.add)
	}()
	t.Cleanup(func() { cancel(); <-done })
	polls := func() int { return h.fake.count("GET /instances") }
	// A poll begun after they turned active has finished once the next
	// one has begun.
	start := polls()
	testutil.Eventually(t, "a poll that saw the instances active", func() bool { return polls() >= start+2 })

	h.fake.remove(insts[0].InstanceID)                 // gone outside the control plane
	h.fake.setStatus(insts[1].InstanceID, "unhealthy") // Lambda says it is broken
	if err := h.prov.Terminate(t.Context(), insts[2]); err != nil {
		t.Fatal(err) // stopped by the control plane: no notice
	}
	h.fake.set(func(f *fakeLambda) { f.hideOnce[insts[3].InstanceID] = true }) // a list that missed it once
	h.fake.remove(insts[4].InstanceID)                                         // never active, never watched

	testutil.Eventually(t, "two notices", func() bool { return len(log.all()) >= 2 })
	after := polls()
	testutil.Eventually(t, "three more polls", func() bool { return polls() >= after+3 })

	got := log.all()
	if len(got) != 2 {
		t.Fatalf("notices %+v, want two", got)
	}
	byNode := map[string]provider.Notice{}
	for _, n := range got {
		if n.Kind != provider.NoticeGone {
			t.Errorf("notice %+v is not NoticeGone", n)
		}
		byNode[n.Instance.NodeID] = n
	}
	if n, ok := byNode["n-1"]; !ok || n.Instance != insts[0] || !strings.Contains(n.Reason, "no longer listed") {
		t.Errorf("n-1's notice %+v, want it gone from the list", n)
	}
	if n, ok := byNode["n-2"]; !ok || n.Instance != insts[1] || !strings.Contains(n.Reason, "unhealthy") {
		t.Errorf("n-2's notice %+v, want it unhealthy", n)
	}
	if n := h.fake.count("GET /instances/" + insts[3].InstanceID); n != 1 {
		t.Errorf("%d look-ups of the instance the list missed, want 1", n)
	}
}
