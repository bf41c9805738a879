package gcp

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	compute "google.golang.org/api/compute/v1"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/testutil"
)

// notices collects what Watch tells.
type notices struct {
	mu   sync.Mutex
	list []provider.Notice
}

func (n *notices) add(x provider.Notice) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.list = append(n.list, x)
}

func (n *notices) all() []provider.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]provider.Notice(nil), n.list...)
}

func TestWatchPolls(t *testing.T) {
	f := newFake(t)
	clock := clockwork.NewFakeClock()
	p := newTestProvider(t, f, testConfig(f), func(o *Options) { o.Clock = clock })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Watch(ctx, func(provider.Notice) {})
	}()
	testutil.Eventually(t, "the first listing", func() bool { return f.count("list") == 1 })
	for want := 2; want <= 3; want++ {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(30 * time.Second)
		testutil.Eventually(t, "a listing each poll interval", func() bool { return f.count("list") == want })
	}
	cancel()
	<-done
}

func TestWatchNotices(t *testing.T) {
	spot := func(f *fakeGCE, zone, name string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.instances[zone+"/"+name].Scheduling = &compute.Scheduling{ProvisioningModel: "SPOT", InstanceTerminationAction: "DELETE"}
	}
	type told struct {
		kind   provider.NoticeKind
		reason string // a piece of it
	}
	gone := func(reason string) []told { return []told{{provider.NoticeGone, reason}} }
	type step struct {
		change func(f *fakeGCE, p *Provider)
		want   []told // the notices this poll tells
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "gone",
			steps: []step{
				{},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "") }, want: gone("no longer exists")},
				{},
			},
		},
		{
			name: "terminated",
			steps: []step{
				{},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "TERMINATED") }, want: gone("TERMINATED")},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "") }},
			},
		},
		{
			name: "stopping-is-not-yet-gone",
			steps: []step{
				{},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "STOPPING") }},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "TERMINATED") }, want: gone("TERMINATED")},
			},
		},
		{
			name: "spot-reclaimed",
			steps: []step{
				{change: func(f *fakeGCE, _ *Provider) { spot(f, zoneA, "train-00000001") }},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "STOPPING") }, want: []told{{provider.NoticeInterrupted, "reclaiming the Spot VM"}}},
				{},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "") }, want: gone("reclaimed the Spot VM")},
				{},
			},
		},
		{
			name: "terminated-by-the-provider",
			steps: []step{
				{},
				{change: func(f *fakeGCE, p *Provider) {
					if err := p.Terminate(context.Background(), provider.Instance{NodeID: "train-00000001", InstanceID: "train-00000001", Zone: zoneA}); err != nil {
						t.Fatalf("Terminate: %v", err)
					}
					// Deleting takes a while: it is listed running,
					// then stopping, then not at all.
					f.add(zoneA, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
				}},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "STOPPING") }},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "") }},
				{},
			},
		},
		{
			name: "never-seen-running",
			steps: []step{
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "TERMINATED") }},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneA, "train-00000001", "") }},
			},
		},
		{
			name: "other-cluster",
			steps: []step{
				{change: func(f *fakeGCE, _ *Provider) {
					f.add(zoneB, "other-00000002", "RUNNING", map[string]string{"navarch-cluster": "staging"})
				}},
				{change: func(f *fakeGCE, _ *Provider) { f.setStatus(zoneB, "other-00000002", "") }},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.add(zoneA, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
			clock := clockwork.NewFakeClock()
			p := newTestProvider(t, f, testConfig(f), func(o *Options) { o.Clock = clock })
			var got notices
			for i, s := range tt.steps {
				if s.change != nil {
					s.change(f, p)
				}
				before := len(got.all())
				p.poll(context.Background(), got.add)
				news := got.all()[before:]
				if len(news) != len(s.want) {
					t.Fatalf("poll %d told %+v, want %+v", i, news, s.want)
				}
				for j, n := range news {
					if n.Kind != s.want[j].kind || !strings.Contains(n.Reason, s.want[j].reason) {
						t.Errorf("poll %d told %d %q, want %d with %q", i, n.Kind, n.Reason, s.want[j].kind, s.want[j].reason)
					}
					want := provider.Instance{NodeID: "train-00000001", InstanceID: "train-00000001", Pool: "train", Zone: zoneA}
					if n.Instance != want {
						t.Errorf("notice about %+v, want %+v", n.Instance, want)
					}
					if n.Kind == provider.NoticeInterrupted && !n.Deadline.Equal(clock.Now().Add(30*time.Second)) {
						t.Errorf("deadline %s, want 30s from now", n.Deadline)
					}
				}
			}
		})
	}
}

func TestWatchTracksWhatProvisionStarted(t *testing.T) {
	f := newFake(t)
	p := newTestProvider(t, f, testConfig(f))
	spec, _ := testSpec("train-00000001")
	if _, err := p.Provision(context.Background(), spec); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	// Gone before Watch ever listed it.
	f.setStatus(zoneA, "train-00000001", "")
	var got notices
	p.poll(context.Background(), got.add)
	if n := got.all(); len(n) != 1 || n[0].Kind != provider.NoticeGone || n[0].Instance.NodeID != "train-00000001" {
		t.Fatalf("notices = %+v, want train-00000001 gone", n)
	}
}

func TestWatchSkipsAFailedListing(t *testing.T) {
	f := newFake(t)
	f.add(zoneA, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
	p := newTestProvider(t, f, testConfig(f))
	var got notices
	p.poll(context.Background(), got.add)
	f.failWith("list", apiError{500, "backendError", "Backend Error"}, apiError{500, "backendError", "Backend Error"},
		apiError{500, "backendError", "Backend Error"}, apiError{500, "backendError", "Backend Error"})
	p.poll(context.Background(), got.add)
	if n := got.all(); len(n) != 0 {
		t.Fatalf("notices = %+v after a failed listing, want none", n)
	}
}

// A listing that began before an instance started, or before Terminate
// deleted it, is no news about it.
func TestWatchListingOlderThanTheChange(t *testing.T) {
	inst := provider.Instance{NodeID: "train-00000001", InstanceID: "train-00000001", Pool: "train", Zone: zoneA}
	listing := func(p *Provider) uint64 {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.gen++
		return p.gen
	}
	t.Run("started-during-listing", func(t *testing.T) {
		f := newFake(t)
		p := newTestProvider(t, f, testConfig(f))
		gen := listing(p)
		p.track([]provider.Instance{inst})
		if n := p.compare(gen, nil); len(n) != 0 {
			t.Fatalf("notices = %+v from a listing older than the instance", n)
		}
		var got notices
		p.poll(context.Background(), got.add)
		if n := got.all(); len(n) != 1 || n[0].Kind != provider.NoticeGone {
			t.Fatalf("notices = %+v, want it gone once a newer listing lacks it", n)
		}
	})
	t.Run("deleted-during-listing", func(t *testing.T) {
		f := newFake(t)
		f.add(zoneA, inst.InstanceID, "RUNNING", clusterLabels(inst.NodeID, "train"))
		p := newTestProvider(t, f, testConfig(f))
		var got notices
		p.poll(context.Background(), got.add)
		gen := listing(p)
		before := []*compute.Instance{{Name: inst.InstanceID, Zone: f.zoneURL(zoneA), Status: "RUNNING", Labels: clusterLabels(inst.NodeID, "train")}}
		if err := p.Terminate(context.Background(), inst); err != nil {
			t.Fatalf("Terminate: %v", err)
		}
		if n := p.compare(gen, before); len(n) != 0 {
			t.Fatalf("notices = %+v", n)
		}
		p.poll(context.Background(), got.add)
		p.poll(context.Background(), got.add)
		if n := got.all(); len(n) != 0 {
			t.Fatalf("notices = %+v about an instance Terminate deleted", n)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.deleted) != 0 || len(p.watched) != 0 {
			t.Errorf("deleted = %v, watched = %v; want both forgotten once it is gone", p.deleted, p.watched)
		}
	})
}
