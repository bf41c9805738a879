package aws_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/aws"
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

// got lists the notices as "KIND node", sorted.
func (n *notices) got() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, x := range n.list {
		kind := map[provider.NoticeKind]string{provider.NoticeInterrupted: "interrupted", provider.NoticeGone: "gone"}[x.Kind]
		out = append(out, kind+" "+x.Instance.NodeID)
	}
	slices.Sort(out)
	return out
}

func (n *notices) find(kind provider.NoticeKind, node string) provider.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, x := range n.list {
		if x.Kind == kind && x.Instance.NodeID == node {
			return x
		}
	}
	return provider.Notice{}
}

func TestWatch(t *testing.T) {
	f := newFakeEC2(t)
	p, _ := newProvider(t, f, func(c *aws.Config) {
		c.Spot = true
		c.PollInterval.Duration = time.Second
	})
	spec, _ := testSpec("marked", "marked-no-time", "price", "killed", "vanished", "not-listed-yet", "stopped-by-us", "fine")
	insts, err := p.Provision(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	byNode := map[string]string{}
	for _, inst := range insts {
		byNode[inst.NodeID] = inst.InstanceID
	}
	updated := noticeTime.Add(-30 * time.Second)
	f.set(func(f *fakeEC2) {
		for _, in := range f.instances {
			in.state = "running"
		}
		m := f.instance(byNode["marked"])
		m.spotCode, m.spotMessage, m.spotUpdated = "marked-for-termination", "Spot Instance is marked for termination", updated
		f.instance(byNode["marked-no-time"]).spotCode = "marked-for-stop"
		f.instance(byNode["price"]).spotCode = "instance-terminated-by-price"
		k := f.instance(byNode["killed"])
		k.state, k.stateReason = "terminated", "Client.UserInitiatedShutdown: User initiated shutdown"
		// EC2's answers are eventually consistent: a new instance may
		// not be listed yet, and is not gone.
		f.instances = slices.DeleteFunc(f.instances, func(in *fakeInstance) bool { return in.id == byNode["not-listed-yet"] })
	})
	if err := p.Terminate(context.Background(), provider.Instance{NodeID: "stopped-by-us", InstanceID: byNode["stopped-by-us"]}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n := &notices{}
	go func() {
		defer close(done)
		p.Watch(ctx, n.add)
	}()
	defer func() {
		cancel()
		<-done
	}()

	first := []string{"gone killed", "interrupted marked", "interrupted marked-no-time", "interrupted price"}
	testutil.Eventually(t, "the first notices", func() bool { return len(n.got()) >= len(first) })
	if got := n.got(); !slices.Equal(got, first) {
		t.Fatalf("notices %v, want %v", got, first)
	}
	if d := n.find(provider.NoticeInterrupted, "marked").Deadline; !d.Equal(updated.Add(2 * time.Minute)) {
		t.Errorf("deadline %s, want two minutes after the notice (%s)", d, updated.Add(2*time.Minute))
	}
	if d := n.find(provider.NoticeInterrupted, "marked-no-time").Deadline; !d.Equal(noticeTime.Add(2 * time.Minute)) {
		t.Errorf("deadline %s, want two minutes from now (%s)", d, noticeTime.Add(2*time.Minute))
	}
	if r := n.find(provider.NoticeGone, "killed").Reason; !strings.Contains(r, "terminated: Client.UserInitiatedShutdown") {
		t.Errorf("gone reason %q", r)
	}

	// The interrupted instance ends and a listed one is listed no more:
	// each is told of once, as gone; nothing else is told again.
	polls := len(f.calls("DescribeInstances"))
	f.set(func(f *fakeEC2) {
		f.instance(byNode["marked"]).state = "shutting-down"
		f.instances = slices.DeleteFunc(f.instances, func(in *fakeInstance) bool { return in.id == byNode["vanished"] })
	})
	testutil.Eventually(t, "two more polls", func() bool { return len(f.calls("DescribeInstances")) >= polls+2 })
	want := append(slices.Clone(first), "gone marked", "gone vanished")
	slices.Sort(want)
	if got := n.got(); !slices.Equal(got, want) {
		t.Errorf("notices %v, want %v", got, want)
	}
	if r := n.find(provider.NoticeGone, "vanished").Reason; r != "instance is no longer listed by EC2" {
		t.Errorf("vanished reason %q", r)
	}
}
