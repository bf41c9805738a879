package lambda_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/lambda"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

const testKey = "secret-lambda-key-0123456789"

// harness is a provider in front of a fake API.
type harness struct {
	fake    *fakeLambda
	prov    *lambda.Provider
	retries atomic.Int32 // backoff calls
}

func newHarness(t *testing.T, opts func(*lambda.Options)) *harness {
	t.Helper()
	h := &harness{fake: newFake(t, testKey)}
	o := lambda.Options{
		Endpoint:     h.fake.endpoint(),
		APIKey:       testKey,
		Cluster:      "prod",
		Regions:      []string{"us-east-1", "us-west-1"},
		InstanceType: "gpu_8x_h100_sxm5",
		SSHKeyNames:  []string{"ops"},
		HTTPClient:   h.fake.srv.Client(),
		Backoff: func(int, time.Duration) time.Duration {
			h.retries.Add(1)
			return time.Millisecond
		},
		PollInterval: 20 * time.Millisecond,
	}
	if opts != nil {
		opts(&o)
	}
	p, err := lambda.New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.prov = p
	return h
}

// failures records what spec.Failed was told.
type failures struct {
	mu sync.Mutex
	m  map[string]string
}

func (f *failures) record(id, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]string{}
	}
	f.m[id] = reason
}

func (f *failures) all() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.m)
}

func userData(_ context.Context, nodeID string, labels map[string]string) ([]byte, error) {
	return []byte("#cloud-config\n# node " + nodeID + " team " + labels["team"] + "\n"), nil
}

func spec(nodes ...string) (provider.Spec, *failures) {
	f := &failures{}
	return provider.Spec{
		Count:    len(nodes),
		NodeIDs:  nodes,
		Pool:     "train",
		Labels:   map[string]string{"team": "ml"},
		Failed:   f.record,
		UserData: userData,
	}, f
}

func tags(l fakeLaunch) map[string]string {
	m := map[string]string{}
	for _, t := range l.Tags {
		m[t.Key] = t.Value
	}
	return m
}

func TestProvisionLaunchesOneInstancePerNode(t *testing.T) {
	h := newHarness(t, func(o *lambda.Options) { o.FileSystemNames = []string{"shared"} })
	s, failed := spec("train-0001", "train-0002")
	got, err := h.prov.Provision(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	want := []provider.Instance{
		{NodeID: "train-0001", InstanceID: "00000000000000000000000000000001", Pool: "train", Zone: "us-east-1"},
		{NodeID: "train-0002", InstanceID: "00000000000000000000000000000002", Pool: "train", Zone: "us-east-1"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("instances:\n got %+v\nwant %+v", got, want)
	}
	launches := h.fake.launched()
	if len(launches) != 2 {
		t.Fatalf("%d launches, want 2", len(launches))
	}
	for i, l := range launches {
		node := s.NodeIDs[i]
		if l.RegionName != "us-east-1" || l.InstanceTypeName != "gpu_8x_h100_sxm5" || l.Quantity != 1 || l.Name != node {
			t.Errorf("launch %d: region %q type %q quantity %d name %q", i, l.RegionName, l.InstanceTypeName, l.Quantity, l.Name)
		}
		if !slices.Equal(l.SSHKeyNames, []string{"ops"}) || !slices.Equal(l.FileSystemNames, []string{"shared"}) {
			t.Errorf("launch %d: ssh keys %q, file systems %q", i, l.SSHKeyNames, l.FileSystemNames)
		}
		if want := "#cloud-config\n# node " + node + " team ml\n"; l.UserData != want {
			t.Errorf("launch %d: user data %q, want %q", i, l.UserData, want)
		}
		wantTags := map[string]string{provider.TagCluster: "prod", provider.TagNode: node, provider.TagPool: "train"}
		if !maps.Equal(tags(l), wantTags) {
			t.Errorf("launch %d: tags %v, want %v", i, tags(l), wantTags)
		}
	}
	reqs, auths := h.fake.seen()
	if want := []string{"GET /instance-types", "POST /instance-operations/launch", "POST /instance-operations/launch"}; !slices.Equal(reqs, want) {
		t.Errorf("requests %q, want %q", reqs, want)
	}
	for _, a := range auths {
		if a != "Bearer "+testKey {
			t.Errorf("Authorization %q, want the key as a bearer token", a)
		}
	}
	if f := failed.all(); len(f) != 0 {
		t.Errorf("failed %v, want none", f)
	}
}

func TestProvisionRegions(t *testing.T) {
	tests := []struct {
		name         string
		regions      []string
		capacity     []string
		full         []string
		region       string
		zones        []string
		wantLaunches []string // regions launched in, in order
		wantZones    []string
	}{
		{
			name:         "first-region-without-capacity-skipped",
			regions:      []string{"us-east-1", "us-west-1"},
			capacity:     []string{"us-west-1"},
			wantLaunches: []string{"us-west-1", "us-west-1"},
			wantZones:    []string{"us-west-1", "us-west-1"},
		},
		{
			name:         "full-at-launch-moves-on",
			regions:      []string{"us-east-1", "us-west-1"},
			capacity:     []string{"us-east-1", "us-west-1"},
			full:         []string{"us-east-1"},
			wantLaunches: []string{"us-east-1", "us-west-1", "us-west-1"},
			wantZones:    []string{"us-west-1", "us-west-1"},
		},
		{
			name:         "zones-tried-in-their-order",
			regions:      []string{"us-east-1", "us-west-1"},
			capacity:     []string{"us-east-1", "us-west-1"},
			zones:        []string{"us-west-1", "us-east-1"},
			wantLaunches: []string{"us-west-1", "us-west-1"},
			wantZones:    []string{"us-west-1", "us-west-1"},
		},
		{
			name:         "region-narrows",
			regions:      []string{"us-east-1", "us-west-1"},
			capacity:     []string{"us-east-1", "us-west-1"},
			region:       "us-west-1",
			wantLaunches: []string{"us-west-1", "us-west-1"},
			wantZones:    []string{"us-west-1", "us-west-1"},
		},
		{
			name:         "no-regions-configured-any-with-capacity",
			capacity:     []string{"us-west-1", "asia-northeast-1"},
			wantLaunches: []string{"asia-northeast-1", "asia-northeast-1"},
			wantZones:    []string{"asia-northeast-1", "asia-northeast-1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(o *lambda.Options) { o.Regions = tt.regions })
			h.fake.setCapacity("gpu_8x_h100_sxm5", tt.capacity...)
			h.fake.set(func(f *fakeLambda) {
				for _, r := range tt.full {
					f.full[r] = true
				}
			})
			s, _ := spec("n-1", "n-2")
			s.Region, s.Zones = tt.region, tt.zones
			got, err := h.prov.Provision(t.Context(), s)
			if err != nil {
				t.Fatal(err)
			}
			var launched, zones []string
			for _, l := range h.fake.launched() {
				launched = append(launched, l.RegionName)
			}
			for _, i := range got {
				zones = append(zones, i.Zone)
			}
			if !slices.Equal(launched, tt.wantLaunches) {
				t.Errorf("launched in %q, want %q", launched, tt.wantLaunches)
			}
			if !slices.Equal(zones, tt.wantZones) {
				t.Errorf("zones %q, want %q", zones, tt.wantZones)
			}
		})
	}
}

func TestProvisionRefusals(t *testing.T) {
	tests := []struct {
		name         string
		capacity     []string // nil keeps the fixture's
		full         []string
		quotaFrom    int
		edit         func(*provider.Spec)
		opts         func(*lambda.Options)
		wantCode     codes.Code
		wantText     string
		wantLaunches int
	}{
		{name: "no-capacity-anywhere", capacity: []string{}, wantCode: codes.ResourceExhausted, wantText: "no capacity for gpu_8x_h100_sxm5 in us-east-1, us-west-1"},
		{name: "full-everywhere-at-launch", full: []string{"us-east-1", "us-west-1"}, wantCode: codes.ResourceExhausted, wantText: "no capacity", wantLaunches: 2},
		{name: "quota-exceeded", quotaFrom: 1, wantCode: codes.ResourceExhausted, wantText: "global/quota-exceeded", wantLaunches: 1},
		{name: "unknown-ssh-key", opts: func(o *lambda.Options) { o.SSHKeyNames = []string{"gone"} }, wantCode: codes.FailedPrecondition, wantText: "SSH key gone does not exist", wantLaunches: 1},
		{name: "no-user-data", edit: func(s *provider.Spec) { s.UserData = nil }, wantCode: codes.FailedPrecondition, wantText: "no bootstrap"},
		{name: "sim-faults", edit: func(s *provider.Spec) {
			s.Request = &controlplanev1.ProvisionNodesRequest{SimFaults: []string{"xid@gpu0+1s"}}
		}, wantCode: codes.InvalidArgument, wantText: "sim_faults"},
		{name: "chaos", edit: func(s *provider.Spec) {
			s.Request = &controlplanev1.ProvisionNodesRequest{ChaosInterval: durationpb.New(time.Minute)}
		}, wantCode: codes.InvalidArgument, wantText: "chaos_interval"},
		{name: "unknown-instance-type", edit: func(s *provider.Spec) { s.InstanceType = "gpu_99x_nothing" }, wantCode: codes.InvalidArgument, wantText: "instance_type"},
		{name: "gpus-differ", edit: func(s *provider.Spec) { s.GPUsPerNode = 4 }, wantCode: codes.InvalidArgument, wantText: "has 8 GPUs, not 4"},
		{name: "region-not-configured", edit: func(s *provider.Spec) { s.Region = "europe-central-1" }, wantCode: codes.InvalidArgument, wantText: "region"},
		{name: "zone-not-configured", edit: func(s *provider.Spec) { s.Zones = []string{"us-west-1", "me-west-1"} }, wantCode: codes.InvalidArgument, wantText: "zones"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.opts)
			if tt.capacity != nil {
				h.fake.setCapacity("gpu_8x_h100_sxm5", tt.capacity...)
			}
			h.fake.set(func(f *fakeLambda) {
				for _, r := range tt.full {
					f.full[r] = true
				}
				f.quotaFrom = tt.quotaFrom
			})
			s, failed := spec("n-1", "n-2")
			if tt.edit != nil {
				tt.edit(&s)
			}
			got, err := h.prov.Provision(t.Context(), s)
			if status.Code(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("err = %v (%s), want %s containing %q", err, status.Code(err), tt.wantCode, tt.wantText)
			}
			if len(got) != 0 {
				t.Errorf("instances %v, want none", got)
			}
			if n := len(h.fake.launched()); n != tt.wantLaunches {
				t.Errorf("%d launches, want %d", n, tt.wantLaunches)
			}
			if f := failed.all(); len(f) != 0 {
				t.Errorf("failed %v: a refused request reports through its error alone", f)
			}
		})
	}
}

func TestProvisionRetriesThrottling(t *testing.T) {
	tests := []struct {
		name        string
		route       string
		throttled   int
		wantCode    codes.Code
		wantRetries int32
	}{
		{name: "instance-types", route: "GET /instance-types", throttled: 2, wantCode: codes.OK, wantRetries: 2},
		{name: "launch", route: "POST /instance-operations/launch", throttled: 3, wantCode: codes.OK, wantRetries: 3},
		{name: "gives-up", route: "POST /instance-operations/launch", throttled: 100, wantCode: codes.Unavailable, wantRetries: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.fake.set(func(f *fakeLambda) { f.throttle[tt.route] = tt.throttled })
			s, _ := spec("n-1")
			got, err := h.prov.Provision(t.Context(), s)
			if status.Code(err) != tt.wantCode {
				t.Fatalf("err = %v, want code %s", err, tt.wantCode)
			}
			if tt.wantCode == codes.OK && len(got) != 1 {
				t.Fatalf("instances %v, want one", got)
			}
			if n := h.retries.Load(); n != tt.wantRetries {
				t.Errorf("%d retries, want %d", n, tt.wantRetries)
			}
			if n := h.fake.count(tt.route); n != int(tt.wantRetries)+1 {
				t.Errorf("%d requests to %s, want %d", n, tt.route, tt.wantRetries+1)
			}
		})
	}
}

func TestProvisionKeyRefused(t *testing.T) {
	const wrongKey = "wrong-key-abcdef987654"
	h := newHarness(t, func(o *lambda.Options) { o.APIKey = wrongKey })
	h.fake.set(func(f *fakeLambda) { f.echoKey = true })
	s, _ := spec("n-1")
	_, err := h.prov.Provision(t.Context(), s)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "lambda: API key refused") {
		t.Fatalf("err = %v, want FailedPrecondition saying the API key was refused", err)
	}
	if strings.Contains(err.Error(), wrongKey) {
		t.Errorf("the error shows the key: %v", err)
	}
	reqs, _ := h.fake.seen()
	if len(reqs) != 1 || h.retries.Load() != 0 {
		t.Errorf("requests %q, %d retries: a refused key must not be retried", reqs, h.retries.Load())
	}
}

func TestProvisionHalfFailed(t *testing.T) {
	h := newHarness(t, nil)
	h.fake.set(func(f *fakeLambda) { f.quotaFrom = 2 })
	s, failed := spec("n-1", "n-2", "n-3")
	got, err := h.prov.Provision(t.Context(), s)
	if err != nil {
		t.Fatalf("err = %v: a launch that started some nodes succeeds", err)
	}
	if len(got) != 1 || got[0].NodeID != "n-1" {
		t.Fatalf("instances %+v, want n-1 alone", got)
	}
	f := failed.all()
	if len(f) != 2 || !strings.HasPrefix(f["n-2"], "lambda launch: HTTP 400 global/quota-exceeded") ||
		!strings.HasPrefix(f["n-3"], "not launched: the launch of n-2 before it failed: HTTP 400 global/quota-exceeded") {
		t.Errorf("failed %v, want n-2 failed for quota and n-3 not launched", f)
	}
	// The batch stops at the first failure: n-3 is not tried.
	if n := len(h.fake.launched()); n != 2 {
		t.Errorf("%d launches, want 2", n)
	}
}

func TestProvisionUserDataError(t *testing.T) {
	h := newHarness(t, nil)
	s, _ := spec("n-1")
	s.UserData = func(context.Context, string, map[string]string) ([]byte, error) {
		return nil, errors.New("token store closed")
	}
	_, err := h.prov.Provision(t.Context(), s)
	if err == nil || !strings.Contains(err.Error(), "render user data: token store closed") {
		t.Fatalf("err = %v, want the user data's failure", err)
	}
	if n := len(h.fake.launched()); n != 0 {
		t.Errorf("%d launches, want none", n)
	}
}

func TestTerminate(t *testing.T) {
	tests := []struct {
		name          string
		setup         func(*fakeLambda) string // returns the instance id
		wantRequests  []string
		wantNoRequest bool
	}{
		{
			name:         "running",
			setup:        func(f *fakeLambda) string { f.add(ourInstance("1", "n-1", "active")); return "1" },
			wantRequests: []string{"GET /instances/1", "POST /instance-operations/terminate"},
		},
		{
			name: "named-for-the-node-without-its-tag",
			setup: func(f *fakeLambda) string {
				i := ourInstance("1", "n-1", "active")
				i.Tags = i.Tags[:1]
				f.add(i)
				return "1"
			},
			wantRequests: []string{"GET /instances/1", "POST /instance-operations/terminate"},
		},
		{
			name:         "unknown-to-lambda",
			setup:        func(*fakeLambda) string { return "does-not-exist" },
			wantRequests: []string{"GET /instances/does-not-exist"},
		},
		{
			name:         "already-terminated",
			setup:        func(f *fakeLambda) string { f.add(ourInstance("1", "n-1", "terminated")); return "1" },
			wantRequests: []string{"GET /instances/1"},
		},
		{
			name: "another-clusters-terminated",
			setup: func(f *fakeLambda) string {
				i := ourInstance("1", "n-1", "terminated")
				i.Tags[0].Value = "staging"
				f.add(i)
				return "1"
			},
			wantRequests: []string{"GET /instances/1"},
		},
		{
			name:          "never-started",
			setup:         func(*fakeLambda) string { return "" },
			wantNoRequest: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			id := tt.setup(h.fake)
			if err := h.prov.Terminate(t.Context(), provider.Instance{NodeID: "n-1", InstanceID: id}); err != nil {
				t.Fatalf("Terminate: %v", err)
			}
			reqs, _ := h.fake.seen()
			if tt.wantNoRequest {
				tt.wantRequests = nil
			}
			if !slices.Equal(reqs, tt.wantRequests) {
				t.Errorf("requests %q, want %q", reqs, tt.wantRequests)
			}
			if id != "" && h.fake.status(id) != "" && h.fake.status(id) != "terminated" {
				t.Errorf("status %q after Terminate", h.fake.status(id))
			}
		})
	}
}

// TestTerminateRefusesWhatIsNotThisNode: a node whose recorded instance id
// names an instance of the account that is not that node of this cluster
// (the key reaches them all) must not stop it.
func TestTerminateRefusesWhatIsNotThisNode(t *testing.T) {
	tests := []struct {
		name string
		inst *fakeInstance
	}{
		{"another-clusters", func() *fakeInstance {
			i := ourInstance("x", "n-1", "active")
			i.Tags[0].Value = "staging"
			return i
		}()},
		{"untagged", &fakeInstance{ID: "x", Name: "n-1", Status: "active", Region: fakeRegion{Name: "us-east-1"}}},
		{"another-nodes", ourInstance("x", "n-2", "active")},
		{"another-nodes-by-name", func() *fakeInstance {
			i := ourInstance("x", "n-2", "booting")
			i.Tags = i.Tags[:1]
			return i
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.fake.add(tt.inst)
			before := tt.inst.Status
			err := h.prov.Terminate(t.Context(), provider.Instance{NodeID: "n-1", InstanceID: "x"})
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "instance x is not node n-1 of cluster prod") {
				t.Fatalf("err = %v, want FailedPrecondition naming the instance", err)
			}
			if n := h.fake.count("POST /instance-operations/terminate"); n != 0 {
				t.Errorf("%d terminate requests, want none", n)
			}
			if got := h.fake.status("x"); got != before {
				t.Errorf("status %q after a refused Terminate, want %q", got, before)
			}
		})
	}
}

func TestTerminateKeyRefused(t *testing.T) {
	h := newHarness(t, func(o *lambda.Options) { o.APIKey = "not-the-key" })
	h.fake.add(ourInstance("1", "n-1", "active"))
	err := h.prov.Terminate(t.Context(), provider.Instance{NodeID: "n-1", InstanceID: "1"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
	if h.fake.status("1") != "active" {
		t.Errorf("status %q, want active", h.fake.status("1"))
	}
}

// ourInstance is an instance of cluster "prod" in pool "train".
func ourInstance(id, node, status string) *fakeInstance {
	i := &fakeInstance{ID: id, Name: node, Status: status, Region: fakeRegion{Name: "us-east-1"},
		Tags: []fakeTag{{provider.TagCluster, "prod"}, {provider.TagNode, node}, {provider.TagPool, "train"}}}
	i.InstanceType.Name = "gpu_8x_h100_sxm5"
	return i
}

func TestListOnlyThisCluster(t *testing.T) {
	h := newHarness(t, nil)
	h.fake.add(ourInstance("b", "n-2", "booting"))
	h.fake.add(ourInstance("a", "n-1", "active"))
	h.fake.add(ourInstance("u", "n-3", "unhealthy"))
	h.fake.add(ourInstance("t", "n-4", "terminated"))
	h.fake.add(ourInstance("g", "n-5", "terminating"))
	other := ourInstance("o", "n-6", "active")
	other.Tags[0].Value = "staging"
	h.fake.add(other)
	h.fake.add(&fakeInstance{ID: "x", Name: "someone's notebook", Status: "active", Region: fakeRegion{Name: "us-west-1"}})
	direct := ourInstance("d", "n-7", "active")
	direct.Tags = direct.Tags[:2] // provisioned directly: no pool
	direct.Region.Name = "us-west-1"
	h.fake.add(direct)

	got, err := h.prov.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []provider.Instance{
		{NodeID: "n-1", InstanceID: "a", Pool: "train", Zone: "us-east-1"},
		{NodeID: "n-2", InstanceID: "b", Pool: "train", Zone: "us-east-1"},
		{NodeID: "n-3", InstanceID: "u", Pool: "train", Zone: "us-east-1"},
		{NodeID: "n-7", InstanceID: "d", Zone: "us-west-1"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("List:\n got %+v\nwant %+v", got, want)
	}
}

func TestListKeyRefused(t *testing.T) {
	h := newHarness(t, func(o *lambda.Options) { o.APIKey = "not-the-key" })
	if _, err := h.prov.List(t.Context()); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
}

func TestProvisionLongNodeIDKeepsItInTags(t *testing.T) {
	h := newHarness(t, nil)
	long := "pool-with-a-very-long-name-that-operators-chose-for-reasons-of-their-own-0a1b2c3d"
	s, _ := spec(long)
	got, err := h.prov.Provision(t.Context(), s)
	if err != nil || len(got) != 1 || got[0].NodeID != long {
		t.Fatalf("Provision = %+v, %v", got, err)
	}
	l := h.fake.launched()[0]
	if l.Name != long[:64] || tags(l)[provider.TagNode] != long {
		t.Errorf("name %q, node tag %q: want the name cut to 64 and the tag whole", l.Name, tags(l)[provider.TagNode])
	}
}
