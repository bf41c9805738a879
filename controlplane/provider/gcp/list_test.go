package gcp

import (
	"context"
	"slices"
	"strconv"
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
	ours := clusterLabels("train-00000001", "train")
	inZoneB := provider.Instance{NodeID: "train-00000001", InstanceID: "train-00000001", Zone: zoneB}
	tests := []struct {
		name string
		inst provider.Instance
		// vm is the instance's name in zone b with its labels; "" means
		// there is none.
		vm         string
		labels     map[string]string
		failCall   string
		fail       []apiError
		wantCode   codes.Code
		wantErr    string // a piece of the error
		wantGets   int
		wantDelete int
	}{
		{name: "in-its-zone", inst: inZoneB, vm: "train-00000001", labels: ours, wantGets: 1, wantDelete: 1},
		{name: "already-gone", inst: inZoneB, wantGets: 1},
		{name: "zone-found", inst: provider.Instance{NodeID: "train-00000001"}, vm: "train-00000001", labels: ours, wantGets: 2, wantDelete: 1},
		{name: "zone-not-found", inst: provider.Instance{NodeID: "train-00000001"}, wantGets: 2},
		{name: "get-rate-limited", inst: inZoneB, vm: "train-00000001", labels: ours,
			failCall: "get", fail: []apiError{{429, "rateLimitExceeded", "Rate Limit Exceeded"}}, wantGets: 2, wantDelete: 1},
		{name: "delete-rate-limited", inst: inZoneB, vm: "train-00000001", labels: ours,
			failCall: "delete", fail: []apiError{{429, "rateLimitExceeded", "Rate Limit Exceeded"}}, wantGets: 1, wantDelete: 2},
		{name: "credentials-refused", inst: inZoneB, vm: "train-00000001", labels: ours,
			failCall: "delete", fail: []apiError{{403, "forbidden", "Required 'compute.instances.delete' permission"}},
			wantCode: codes.FailedPrecondition, wantErr: "credentials refused", wantGets: 1, wantDelete: 1},
		{name: "other-cluster", inst: inZoneB, vm: "train-00000001",
			labels:   map[string]string{"navarch-cluster": "staging", "navarch-node": "train-00000001"},
			wantCode: codes.FailedPrecondition, wantErr: `instance train-00000001 in us-central1-b is not this cluster's instance of node train-00000001 (its labels are navarch-cluster="staging"`, wantGets: 1},
		{name: "unlabelled", inst: provider.Instance{NodeID: "train-00000001"}, vm: "train-00000001", labels: map[string]string{},
			wantCode: codes.FailedPrecondition, wantErr: "refusing to delete it", wantGets: 2},
		{name: "other-node", inst: inZoneB, vm: "train-00000001", labels: clusterLabels("train-00000009", "train"),
			wantCode: codes.FailedPrecondition, wantErr: `navarch-node="train-00000009"`, wantGets: 1},
		// The node's record names another VM: the name proves nothing.
		{name: "recorded-name-elsewhere", inst: provider.Instance{NodeID: "train-00000001", InstanceID: "web-1"}, vm: "web-1", labels: nil,
			wantCode: codes.FailedPrecondition, wantErr: "instance web-1 in us-central1-b is not this cluster's instance of node train-00000001", wantGets: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.vm != "" {
				f.add(zoneB, tt.vm, "RUNNING", tt.labels)
			}
			if tt.failCall != "" {
				f.failWith(tt.failCall, tt.fail...)
			}
			p := newTestProvider(t, f, testConfig(f))
			err := p.Terminate(context.Background(), tt.inst)
			if tt.wantCode != codes.OK {
				if status.Code(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Terminate = %v, want %s saying %q", err, tt.wantCode, tt.wantErr)
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
			var want []string
			if tt.vm != "" && tt.wantCode != codes.OK {
				want = []string{zoneB + "/" + tt.vm}
			}
			if got := f.names(); !slices.Equal(got, want) {
				t.Errorf("instances left: %v, want %v", got, want)
			}
		})
	}
}

func TestListStopsRunawayPaging(t *testing.T) {
	tests := []struct {
		name      string
		nextToken func(token string) string
		wantErr   string
		wantPages int
	}{
		{"token-repeated", func(string) string { return "same" }, "(page 2): the API gave a page token it gave before", 2},
		{"token-cycles", func(tok string) string {
			if tok == "b" {
				return "a"
			}
			return "b"
		}, "(page 3): the API gave a page token it gave before", 3},
		{"pages-without-end", func(tok string) string {
			n, _ := strconv.Atoi(tok)
			return strconv.Itoa(n + 1)
		}, "list instances: more than 1000 pages", 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.add(zoneA, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
			f.nextToken = tt.nextToken
			p := newTestProvider(t, f, testConfig(f))
			got, err := p.List(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("List = %+v, %v; want an error saying %q", got, err, tt.wantErr)
			}
			if n := f.count("list"); n != tt.wantPages {
				t.Errorf("%d list calls, want %d", n, tt.wantPages)
			}
		})
	}
}
