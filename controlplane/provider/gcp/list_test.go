package gcp

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
)

func clusterLabels(node, pool string) map[string]string {
	return map[string]string{"navarch-cluster": "prod", "navarch-node": node, "navarch-pool": pool}
}

func TestList(t *testing.T) {
	f := newFake(t)
	f.pageSize = 2
	f.add(zoneA, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
	f.add(zoneB, "train-00000002", "STAGING", clusterLabels("train-00000002", "train"))
	f.add(zoneB, "serve-00000003", "PROVISIONING", clusterLabels("serve-00000003", ""))
	f.add(zoneA, "train-00000004", "TERMINATED", clusterLabels("train-00000004", "train"))
	f.add(zoneA, "train-00000005", "STOPPING", clusterLabels("train-00000005", "train"))
	f.add(zoneA, "other-00000006", "RUNNING", map[string]string{"navarch-cluster": "staging", "navarch-node": "other-00000006"})
	f.add(zoneA, "web-1", "RUNNING", nil)
	p := newTestProvider(t, f, testConfig(f))
	got, err := p.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	want := []provider.Instance{
		{NodeID: "serve-00000003", InstanceID: "serve-00000003", Zone: zoneB},
		{NodeID: "train-00000001", InstanceID: "train-00000001", Pool: "train", Zone: zoneA},
		{NodeID: "train-00000002", InstanceID: "train-00000002", Pool: "train", Zone: zoneB},
	}
	if !slices.Equal(got, want) {
		t.Errorf("List = %+v\nwant %+v", got, want)
	}
	// Five instances carry the cluster's label: three pages of two.
	if n := f.count("list"); n != 3 {
		t.Errorf("%d list calls, want 3 pages", n)
	}
}

func TestListRetriesRateLimits(t *testing.T) {
	f := newFake(t)
	f.add(zoneA, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
	f.failWith("list", apiError{429, "rateLimitExceeded", "Rate Limit Exceeded"})
	p := newTestProvider(t, f, testConfig(f))
	got, err := p.List(context.Background())
	if err != nil || len(got) != 1 {
		t.Fatalf("List = %+v, %v; want the instance", got, err)
	}
}

func TestTerminate(t *testing.T) {
	tests := []struct {
		name       string
		inst       provider.Instance
		exists     bool // train-00000001 runs in zone b
		fail       []apiError
		wantCode   codes.Code
		wantGets   int
		wantDelete int
	}{
		{name: "in-its-zone", inst: provider.Instance{NodeID: "train-00000001", InstanceID: "train-00000001", Zone: zoneB}, exists: true, wantDelete: 1},
		{name: "already-gone", inst: provider.Instance{NodeID: "train-00000001", InstanceID: "train-00000001", Zone: zoneB}, wantDelete: 1},
		{name: "zone-found", inst: provider.Instance{NodeID: "train-00000001"}, exists: true, wantGets: 2, wantDelete: 1},
		{name: "zone-not-found", inst: provider.Instance{NodeID: "train-00000001"}, wantGets: 2},
		{name: "rate-limited", inst: provider.Instance{NodeID: "train-00000001", InstanceID: "train-00000001", Zone: zoneB}, exists: true,
			fail: []apiError{{429, "rateLimitExceeded", "Rate Limit Exceeded"}}, wantDelete: 2},
		{name: "credentials-refused", inst: provider.Instance{NodeID: "train-00000001", InstanceID: "train-00000001", Zone: zoneB}, exists: true,
			fail: []apiError{{403, "forbidden", "Required 'compute.instances.delete' permission"}}, wantCode: codes.FailedPrecondition, wantDelete: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.exists {
				f.add(zoneB, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
			}
			f.failWith("delete", tt.fail...)
			p := newTestProvider(t, f, testConfig(f))
			err := p.Terminate(context.Background(), tt.inst)
			if tt.wantCode != codes.OK {
				if status.Code(err) != tt.wantCode || !strings.Contains(err.Error(), "credentials refused") {
					t.Fatalf("Terminate = %v, want %s", err, tt.wantCode)
				}
			} else if err != nil {
				t.Fatalf("Terminate: %v", err)
			}
			if n := f.count("get"); n != tt.wantGets {
				t.Errorf("%d gets, want %d", n, tt.wantGets)
			}
			if n := f.count("delete"); n != tt.wantDelete {
				t.Errorf("%d deletes, want %d", n, tt.wantDelete)
			}
			if tt.wantCode == codes.OK && len(f.names()) != 0 {
				t.Errorf("instances left: %v", f.names())
			}
		})
	}
}
