package aws_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/navarch/navarch/controlplane/provider"
)

func TestListPagesThroughThisClusterOnly(t *testing.T) {
	f := newFakeEC2(t)
	f.pageSize = 2
	p, _ := newProvider(t, f, nil)
	spec, _ := testSpec("n-1", "n-2", "n-3", "n-4", "n-5", "n-6")
	if _, err := p.Provision(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	f.set(func(f *fakeEC2) {
		f.instances[1].state = "running"
		f.instances[2].state = "stopped"
		f.instances[3].state = "stopping"
		f.instances[4].state = "terminated"
		f.instances = append(f.instances,
			&fakeInstance{id: "i-other1", zone: "us-east-1a", state: "running", tags: map[string]string{provider.TagCluster: "other", provider.TagNode: "n-7"}},
			&fakeInstance{id: "i-other2", zone: "us-east-1a", state: "running", tags: map[string]string{provider.TagNode: "n-8"}},
			&fakeInstance{id: "i-byhand", zone: "us-east-1a", state: "running", tags: map[string]string{provider.TagCluster: cluster}},
		)
	})
	got, err := p.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, inst := range got {
		nodes = append(nodes, inst.NodeID)
		if inst.Pool != "train" || inst.Zone != "us-east-1a" || inst.InstanceID == "" {
			t.Errorf("instance %+v", inst)
		}
	}
	if want := []string{"n-1", "n-2", "n-3", "n-4", "n-6"}; !slices.Equal(nodes, want) {
		t.Errorf("listed %v, want %v", nodes, want)
	}
	var tokens []string
	for _, form := range f.calls("DescribeInstances")[1:] { // the first was Provision's
		tokens = append(tokens, form.Get("NextToken"))
	}
	if want := []string{"", "2", "4"}; !slices.Equal(tokens, want) {
		t.Errorf("pages asked for with tokens %q, want %q", tokens, want)
	}
}

func TestTerminate(t *testing.T) {
	tests := []struct {
		name     string
		state    string // of the instance before; "" for one EC2 does not know
		tags     map[string]string
		setup    func(f *fakeEC2)
		wantCode codes.Code
		wantCall bool // TerminateInstances is called
	}{
		{"running", "running", nil, nil, codes.OK, true},
		{"stopped", "stopped", nil, nil, codes.OK, true},
		{"already-shutting-down", "shutting-down", nil, nil, codes.OK, false},
		{"already-terminated", "terminated", nil, nil, codes.OK, false},
		{"unknown-to-ec2", "", nil, nil, codes.OK, false},
		// Launched a moment ago, and not yet known to EC2's other
		// actions: not gone, but to be terminated on a later try.
		{"launched-not-yet-known", "running", nil, func(f *fakeEC2) {
			for _, in := range f.instances {
				f.hidden[in.id] = true
			}
		}, codes.Unavailable, false},
		{"lookup-throttled-once", "running", nil, func(f *fakeEC2) { f.throttle["DescribeInstances"] = 1 }, codes.OK, true},
		{"throttled-once", "running", nil, func(f *fakeEC2) { f.throttle["TerminateInstances"] = 1 }, codes.OK, true},
		{"credentials-refused", "running", nil, func(f *fakeEC2) { f.deny = "AuthFailure" }, codes.FailedPrecondition, false},
		{"not-authorized", "running", nil, func(f *fakeEC2) { f.denyAction = "TerminateInstances" }, codes.FailedPrecondition, true},
		{"another-clusters", "running", map[string]string{provider.TagCluster: "other", provider.TagNode: "n-1"}, nil, codes.FailedPrecondition, false},
		{"untagged", "running", map[string]string{}, nil, codes.FailedPrecondition, false},
		{"another-nodes", "running", map[string]string{provider.TagCluster: cluster, provider.TagNode: "n-2"}, nil, codes.FailedPrecondition, false},
		{"another-clusters-terminated", "terminated", map[string]string{provider.TagCluster: "other"}, nil, codes.OK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEC2(t)
			p, _ := newProvider(t, f, nil)
			inst := provider.Instance{NodeID: "n-1", InstanceID: "i-gone"}
			if tt.state != "" {
				spec, _ := testSpec("n-1")
				got, err := p.Provision(context.Background(), spec)
				if err != nil {
					t.Fatal(err)
				}
				inst = got[0]
				f.set(func(f *fakeEC2) {
					in := f.instance(inst.InstanceID)
					in.state = tt.state
					if tt.tags != nil {
						in.tags = tt.tags
					}
				})
			}
			if tt.setup != nil {
				f.set(tt.setup)
			}
			err := p.Terminate(context.Background(), inst)
			if code(err) != tt.wantCode {
				t.Fatalf("err = %v, want %s", err, tt.wantCode)
			}
			if called := len(f.calls("TerminateInstances")) > 0; called != tt.wantCall {
				t.Errorf("TerminateInstances called: %t, want %t", called, tt.wantCall)
			}
			if tt.state == "" {
				return
			}
			s := f.instance(inst.InstanceID).state
			switch {
			case tt.wantCode == codes.OK && s != "shutting-down" && s != "terminated":
				t.Errorf("instance is %s after Terminate", s)
			case tt.wantCode != codes.OK && s != tt.state:
				t.Errorf("instance is %s after a refused Terminate, want %s", s, tt.state)
			}
			if tt.tags != nil && tt.wantCode != codes.OK && !strings.Contains(err.Error(), inst.InstanceID) {
				t.Errorf("err = %v, want it to name the instance %s", err, inst.InstanceID)
			}
		})
	}
}

func TestListStopsOnAnEndlessListing(t *testing.T) {
	tests := []struct {
		name      string
		nextToken func(token string, end, total int) string
		wantCalls int
		wantErr   string
	}{
		// Pages "", 2 and 4, then 0, which answers 2 again: never the
		// token just answered, but one answered before.
		{"token-seen-before", func(_ string, end, total int) string {
			if end == total {
				return "0"
			}
			return strconv.Itoa(end)
		}, 4, "page 4 answers the page token of an earlier page"},
		{"token-always-new", func(token string, _, _ int) string {
			n, _ := strconv.Atoi(token)
			return strconv.Itoa(n + 1)
		}, 1000, "the listing runs past 1000 pages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEC2(t)
			f.pageSize = 2
			p, _ := newProvider(t, f, nil)
			spec, _ := testSpec("n-1", "n-2", "n-3", "n-4", "n-5", "n-6")
			if _, err := p.Provision(context.Background(), spec); err != nil {
				t.Fatal(err)
			}
			f.set(func(f *fakeEC2) { f.nextToken = tt.nextToken })
			_, err := p.List(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("List() = %v, want an error saying %q", err, tt.wantErr)
			}
			if n := len(f.calls("DescribeInstances")) - 1; n != tt.wantCalls { // the first was Provision's
				t.Errorf("%d pages asked for, want %d", n, tt.wantCalls)
			}
		})
	}
}

func TestListCredentialsRefused(t *testing.T) {
	f := newFakeEC2(t)
	f.deny = "UnauthorizedOperation"
	p, b := newProvider(t, f, nil)
	_, err := p.List(context.Background())
	if code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
	if n := len(f.calls("DescribeInstances")); n != 1 || len(b.got()) != 0 {
		t.Errorf("%d calls and backoffs %v, want one call and no retry", n, b.got())
	}
	if want := "aws: credentials refused: ec2:DescribeInstances: UnauthorizedOperation"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to say %q", err, want)
	}
}
