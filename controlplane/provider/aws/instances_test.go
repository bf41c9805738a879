package aws_test

import (
	"context"
	"slices"
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
		setup    func(f *fakeEC2)
		wantCode codes.Code
	}{
		{"running", "running", nil, codes.OK},
		{"already-terminated", "terminated", nil, codes.OK},
		{"unknown-to-ec2", "", nil, codes.OK},
		{"throttled-once", "running", func(f *fakeEC2) { f.throttle["TerminateInstances"] = 1 }, codes.OK},
		{"credentials-refused", "running", func(f *fakeEC2) { f.deny = "AuthFailure" }, codes.FailedPrecondition},
		{"not-authorized", "running", func(f *fakeEC2) { f.denyAction = "TerminateInstances" }, codes.FailedPrecondition},
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
				f.set(func(f *fakeEC2) { f.instance(inst.InstanceID).state = tt.state })
			}
			if tt.setup != nil {
				f.set(tt.setup)
			}
			err := p.Terminate(context.Background(), inst)
			if code(err) != tt.wantCode {
				t.Fatalf("err = %v, want %s", err, tt.wantCode)
			}
			if tt.wantCode != codes.OK {
				return
			}
			if tt.state != "" {
				if s := f.instance(inst.InstanceID).state; s != "shutting-down" && s != "terminated" {
					t.Errorf("instance is %s after Terminate", s)
				}
			}
			if n := len(f.calls("TerminateInstances")); n == 0 {
				t.Error("TerminateInstances was not called")
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
