package gcp

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/provider"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

const (
	zoneA = "us-central1-a"
	zoneB = "us-central1-b"
	image = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2204-lts"
)

// testConfig is an enabled section for the fake's project.
func testConfig(f *fakeGCE) Config {
	c := DefaultConfig()
	c.Enabled = true
	c.Project = f.project
	c.Zones = []string{zoneA, zoneB}
	c.Image = image
	return c
}

// newTestProvider reaches the fake through its TLS client, with retries
// a few milliseconds apart.
func newTestProvider(t *testing.T, f *fakeGCE, c Config, edit ...func(*Options)) *Provider {
	t.Helper()
	o := Options{
		Config:  c,
		Cluster: "prod",
		ClientOptions: []option.ClientOption{
			option.WithEndpoint(apiBase(f.srv.URL)),
			option.WithHTTPClient(f.srv.Client()),
		},
		Backoff:       Backoff{Attempts: 4, Base: time.Millisecond, Max: 4 * time.Millisecond},
		OperationPoll: time.Millisecond,
	}
	for _, e := range edit {
		e(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// failures records what Provision reports through spec.Failed.
type failures struct {
	mu sync.Mutex
	m  map[string]string
}

func (fl *failures) add(nodeID, reason string) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	fl.m[nodeID] = reason
}

func (fl *failures) all() map[string]string {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.m
}

func userData(_ context.Context, nodeID string, _ map[string]string) ([]byte, error) {
	return []byte("#cloud-config\n# node " + nodeID + "\n"), nil
}

func testSpec(ids ...string) (provider.Spec, *failures) {
	fl := &failures{m: make(map[string]string)}
	return provider.Spec{
		Count:    len(ids),
		NodeIDs:  ids,
		Pool:     "train",
		Labels:   map[string]string{"team": "ml"},
		UserData: userData,
		Failed:   fl.add,
	}, fl
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestProvisionInstance(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		spec  func(*provider.Spec)
		check func(t *testing.T, in *compute.Instance)
	}{
		{
			name: "attached-gpus",
			edit: func(c *Config) {
				c.MachineType = "n1-standard-8"
				c.Accelerators = []Accelerator{{Type: "nvidia-tesla-t4", Count: 2}}
			},
			check: func(t *testing.T, in *compute.Instance) {
				if want := "projects/proj/zones/us-central1-a/machineTypes/n1-standard-8"; in.MachineType != want {
					t.Errorf("machineType = %q, want %q", in.MachineType, want)
				}
				if len(in.GuestAccelerators) != 1 || in.GuestAccelerators[0].AcceleratorType != "projects/proj/zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4" || in.GuestAccelerators[0].AcceleratorCount != 2 {
					t.Errorf("guestAccelerators = %+v, want 2 nvidia-tesla-t4 in us-central1-a", in.GuestAccelerators)
				}
			},
		},
		{
			name: "gpus-per-node",
			edit: func(c *Config) {
				c.MachineType = "n1-standard-16"
				c.Accelerators = []Accelerator{{Type: "nvidia-tesla-t4", Count: 2}}
			},
			spec: func(s *provider.Spec) { s.GPUsPerNode = 4 },
			check: func(t *testing.T, in *compute.Instance) {
				if len(in.GuestAccelerators) != 1 || in.GuestAccelerators[0].AcceleratorCount != 4 {
					t.Errorf("guestAccelerators = %+v, want a count of 4", in.GuestAccelerators)
				}
			},
		},
		{
			name: "built-in-gpus",
			check: func(t *testing.T, in *compute.Instance) {
				if want := "projects/proj/zones/us-central1-a/machineTypes/a3-highgpu-8g"; in.MachineType != want {
					t.Errorf("machineType = %q, want %q", in.MachineType, want)
				}
				if len(in.GuestAccelerators) != 0 {
					t.Errorf("guestAccelerators = %+v, want none", in.GuestAccelerators)
				}
				s := in.Scheduling
				if s.AutomaticRestart == nil || !*s.AutomaticRestart || s.ProvisioningModel != "" {
					t.Errorf("scheduling = %+v, want a standard VM that restarts", s)
				}
			},
		},
		{
			name: "instance-type",
			spec: func(s *provider.Spec) { s.InstanceType = "a2-highgpu-1g" },
			check: func(t *testing.T, in *compute.Instance) {
				if !strings.HasSuffix(in.MachineType, "/machineTypes/a2-highgpu-1g") {
					t.Errorf("machineType = %q, want the spec's a2-highgpu-1g", in.MachineType)
				}
			},
		},
		{
			name: "spot",
			edit: func(c *Config) { c.Spot = true },
			check: func(t *testing.T, in *compute.Instance) {
				s := in.Scheduling
				if s.ProvisioningModel != "SPOT" || s.InstanceTerminationAction != "DELETE" || s.AutomaticRestart == nil || *s.AutomaticRestart {
					t.Errorf("scheduling = %+v, want SPOT, DELETE and no restart", s)
				}
			},
		},
		{
			name: "service-account-and-network",
			edit: func(c *Config) {
				c.ServiceAccount = "nodes@proj.iam.gserviceaccount.com"
				c.Subnetwork = "gpu"
				c.ExternalIP = false
				c.NICType = "GVNIC"
			},
			check: func(t *testing.T, in *compute.Instance) {
				if len(in.ServiceAccounts) != 1 || in.ServiceAccounts[0].Email != "nodes@proj.iam.gserviceaccount.com" || !slices.Equal(in.ServiceAccounts[0].Scopes, []string{compute.CloudPlatformScope}) {
					t.Errorf("serviceAccounts = %+v, want the account with cloud-platform", in.ServiceAccounts)
				}
				nic := in.NetworkInterfaces[0]
				if nic.Subnetwork != "projects/proj/regions/us-central1/subnetworks/gpu" || nic.Network != "" || len(nic.AccessConfigs) != 0 || nic.NicType != "GVNIC" {
					t.Errorf("networkInterface = %+v, want subnetwork gpu, gVNIC, no external address", nic)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			c := testConfig(f)
			c.Labels = map[string]string{"env": "test"}
			if tt.edit != nil {
				tt.edit(&c)
			}
			p := newTestProvider(t, f, c)
			spec, fl := testSpec("train-0a1b2c3d")
			if tt.spec != nil {
				tt.spec(&spec)
			}
			got, err := p.Provision(context.Background(), spec)
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			want := provider.Instance{NodeID: "train-0a1b2c3d", InstanceID: "train-0a1b2c3d", Pool: "train", Zone: zoneA}
			if len(got) != 1 || got[0] != want {
				t.Fatalf("Provision = %+v, want [%+v]", got, want)
			}
			if len(fl.all()) != 0 {
				t.Errorf("failed = %v, want none", fl.all())
			}
			if f.count("wait") == 0 {
				t.Error("the insert's operation was never waited for")
			}
			calls := f.insertCalls()
			if len(calls) != 1 {
				t.Fatalf("%d inserts, want 1", len(calls))
			}
			in := calls[0].body
			if !uuidRE.MatchString(calls[0].requestID) {
				t.Errorf("requestId = %q, want a UUID", calls[0].requestID)
			}
			if in.Name != "train-0a1b2c3d" {
				t.Errorf("name = %q, want the node id", in.Name)
			}
			wantLabels := map[string]string{"navarch-cluster": "prod", "navarch-node": "train-0a1b2c3d", "navarch-pool": "train", "env": "test"}
			if !maps.Equal(in.Labels, wantLabels) {
				t.Errorf("labels = %v, want %v", in.Labels, wantLabels)
			}
			if len(in.Metadata.Items) != 1 || in.Metadata.Items[0].Key != "user-data" || *in.Metadata.Items[0].Value != "#cloud-config\n# node train-0a1b2c3d\n" {
				t.Errorf("metadata = %+v, want the node's user data under user-data", in.Metadata.Items)
			}
			if in.Scheduling.OnHostMaintenance != "TERMINATE" {
				t.Errorf("onHostMaintenance = %q, want TERMINATE", in.Scheduling.OnHostMaintenance)
			}
			d := in.Disks[0]
			if !d.Boot || !d.AutoDelete || d.InitializeParams.SourceImage != image || d.InitializeParams.DiskSizeGb != 200 || d.InitializeParams.DiskType != "projects/proj/zones/us-central1-a/diskTypes/pd-balanced" {
				t.Errorf("boot disk = %+v %+v", d, d.InitializeParams)
			}
			tt.check(t, in)
		})
	}
}

func TestProvisionMovesOnFromFullZones(t *testing.T) {
	tests := []struct {
		name      string
		zones     []string // the configured zones; default a, b
		prepare   func(f *fakeGCE)
		spec      func(*provider.Spec)
		wantZones []string // the zones inserted into, in order
	}{
		{
			name:      "resource-pool-exhausted",
			prepare:   func(f *fakeGCE) { f.capacity[zoneA] = 0 },
			wantZones: []string{zoneA, zoneB},
		},
		{
			name: "exhausted-with-details",
			prepare: func(f *fakeGCE) {
				f.capacity[zoneA] = 0
				f.exhaustCode = "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"
			},
			wantZones: []string{zoneA, zoneB},
		},
		{
			name: "quota-exceeded-operation",
			prepare: func(f *fakeGCE) {
				f.capacity[zoneA] = 0
				f.exhaustCode = "QUOTA_EXCEEDED"
			},
			wantZones: []string{zoneA, zoneB},
		},
		{
			name: "quota-exceeded-at-insert",
			prepare: func(f *fakeGCE) {
				f.fail["insert"] = []apiError{{http.StatusForbidden, "quotaExceeded", "Quota 'NVIDIA_H100_GPUS' exceeded.  Limit: 0.0 in region us-central1."}}
			},
			wantZones: []string{zoneA, zoneB},
		},
		{
			name:      "pool-reorders-zones",
			spec:      func(s *provider.Spec) { s.Zones = []string{zoneB, zoneA} },
			wantZones: []string{zoneB},
		},
		{
			name:      "pool-narrows-zones",
			prepare:   func(f *fakeGCE) { f.capacity[zoneA] = 0 },
			spec:      func(s *provider.Spec) { s.Zones = []string{zoneB} },
			wantZones: []string{zoneB},
		},
		{
			name:      "region",
			zones:     []string{zoneA, "europe-west4-a"},
			spec:      func(s *provider.Spec) { s.Region = "europe-west4" },
			wantZones: []string{"europe-west4-a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			if tt.prepare != nil {
				tt.prepare(f)
			}
			c := testConfig(f)
			if tt.zones != nil {
				c.Zones = tt.zones
			}
			p := newTestProvider(t, f, c)
			spec, _ := testSpec("train-00000001")
			if tt.spec != nil {
				tt.spec(&spec)
			}
			got, err := p.Provision(context.Background(), spec)
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			last := tt.wantZones[len(tt.wantZones)-1]
			if len(got) != 1 || got[0].Zone != last {
				t.Fatalf("Provision = %+v, want one instance in %s", got, last)
			}
			if zones := f.triedZones(); !slices.Equal(zones, tt.wantZones) {
				t.Errorf("inserted into %v, want %v", zones, tt.wantZones)
			}
			if names := f.names(); !slices.Equal(names, []string{last + "/train-00000001"}) {
				t.Errorf("instances = %v, want one in %s", names, last)
			}
		})
	}
}

func TestProvisionEveryZoneFull(t *testing.T) {
	f := newFake(t)
	f.capacity[zoneA], f.capacity[zoneB] = 0, 0
	p := newTestProvider(t, f, testConfig(f), func(o *Options) { o.Parallel = 1 })
	spec, fl := testSpec("train-00000001", "train-00000002")
	got, err := p.Provision(context.Background(), spec)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Provision = %v, %v; want ResourceExhausted", got, err)
	}
	if !strings.Contains(err.Error(), "ZONE_RESOURCE_POOL_EXHAUSTED") {
		t.Errorf("error %q does not say what the zones said", err)
	}
	// The second node skips the zones the first found full.
	if n := len(f.triedZones()); n != 2 {
		t.Errorf("%d inserts, want 2", n)
	}
	if len(fl.all()) != 0 {
		t.Errorf("failed = %v; with nothing started the error says it all", fl.all())
	}
}

func TestProvisionRetriesRateLimits(t *testing.T) {
	tests := []struct {
		name string
		call string
		errs []apiError
	}{
		{"too-many-requests", "insert", []apiError{{429, "rateLimitExceeded", "Rate Limit Exceeded"}, {429, "rateLimitExceeded", "Rate Limit Exceeded"}}},
		{"user-rate-limit", "insert", []apiError{{403, "userRateLimitExceeded", "User Rate Limit Exceeded"}}},
		{"rate-limit-exceeded-403", "insert", []apiError{{403, "rateLimitExceeded", "Rate Limit Exceeded"}}},
		{"backend-error", "insert", []apiError{{503, "backendError", "Backend Error"}}},
		{"while-waiting", "wait", []apiError{{429, "rateLimitExceeded", "Rate Limit Exceeded"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.failWith(tt.call, tt.errs...)
			p := newTestProvider(t, f, testConfig(f))
			spec, _ := testSpec("train-00000001")
			got, err := p.Provision(context.Background(), spec)
			if err != nil || len(got) != 1 {
				t.Fatalf("Provision = %+v, %v; want one instance", got, err)
			}
			if n := f.count(tt.call); n != len(tt.errs)+1 {
				t.Errorf("%d %s calls, want %d", n, tt.call, len(tt.errs)+1)
			}
			ids := map[string]bool{}
			for _, c := range f.insertCalls() {
				ids[c.requestID] = true
			}
			if len(ids) != 1 {
				t.Errorf("retried inserts used request ids %v, want one", ids)
			}
			if names := f.names(); len(names) != 1 {
				t.Errorf("instances = %v, want one", names)
			}
		})
	}
}

func TestProvisionGivesUpOnEndlessRateLimits(t *testing.T) {
	f := newFake(t)
	for range 10 {
		f.failWith("insert", apiError{429, "rateLimitExceeded", "Rate Limit Exceeded"})
	}
	p := newTestProvider(t, f, testConfig(f))
	spec, _ := testSpec("train-00000001")
	if _, err := p.Provision(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "Rate Limit Exceeded") {
		t.Fatalf("Provision error = %v, want the rate limit", err)
	}
	if n := f.count("insert"); n != 4 {
		t.Errorf("%d inserts, want the 4 attempts", n)
	}
}

func TestProvisionCredentialsRefused(t *testing.T) {
	tests := []struct {
		name string
		err  apiError
	}{
		{"unauthenticated", apiError{401, "authError", "Request had invalid authentication credentials."}},
		{"forbidden", apiError{403, "forbidden", "Required 'compute.instances.create' permission for 'projects/proj/zones/us-central1-a/instances/train-00000001'"}},
		{"api-not-enabled", apiError{403, "accessNotConfigured", "Compute Engine API has not been used in project proj before or it is disabled."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.failWith("insert", tt.err)
			p := newTestProvider(t, f, testConfig(f))
			spec, _ := testSpec("train-00000001")
			_, err := p.Provision(context.Background(), spec)
			if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "gcp: credentials refused: ") {
				t.Fatalf("Provision error = %v, want FailedPrecondition saying the credentials were refused", err)
			}
			if n := f.count("insert"); n != 1 {
				t.Errorf("%d inserts, want 1: refused credentials are not retried, nor other zones tried", n)
			}
		})
	}
}

func TestProvisionHalfFails(t *testing.T) {
	f := newFake(t)
	f.capacity[zoneA] = 2
	c := testConfig(f)
	c.Zones = []string{zoneA}
	p := newTestProvider(t, f, c)
	ids := []string{"train-00000001", "train-00000002", "train-00000003"}
	spec, fl := testSpec(ids...)
	got, err := p.Provision(context.Background(), spec)
	if err != nil {
		t.Fatalf("Provision: %v; a launch that half fails returns what started", err)
	}
	if len(got) != 2 {
		t.Fatalf("Provision = %+v, want 2 instances", got)
	}
	failed := fl.all()
	if len(failed) != 1 {
		t.Fatalf("failed = %v, want 1", failed)
	}
	for id, reason := range failed {
		if slices.ContainsFunc(got, func(i provider.Instance) bool { return i.NodeID == id }) {
			t.Errorf("%s both started and failed", id)
		}
		if !strings.Contains(reason, "ZONE_RESOURCE_POOL_EXHAUSTED") {
			t.Errorf("reason %q does not say the zone was full", reason)
		}
	}
}

func TestProvisionRefuses(t *testing.T) {
	tests := []struct {
		name string
		spec func(*provider.Spec)
		want codes.Code
	}{
		{"no-bootstrap", func(s *provider.Spec) { s.UserData = nil }, codes.FailedPrecondition},
		{"no-nodes", func(s *provider.Spec) { s.NodeIDs, s.Count = nil, 0 }, codes.InvalidArgument},
		{"bad-node-id", func(s *provider.Spec) { s.NodeIDs = []string{"Train_1"} }, codes.InvalidArgument},
		{"node-id-ends-in-dash", func(s *provider.Spec) { s.NodeIDs = []string{"train-"} }, codes.InvalidArgument},
		{"bad-instance-type", func(s *provider.Spec) { s.InstanceType = "A3 High" }, codes.InvalidArgument},
		{"unknown-zone", func(s *provider.Spec) { s.Zones = []string{"asia-east1-a"} }, codes.InvalidArgument},
		{"region-without-zones", func(s *provider.Spec) { s.Region = "asia-east1" }, codes.InvalidArgument},
		{"sim-faults", func(s *provider.Spec) {
			s.Request = &controlplanev1.ProvisionNodesRequest{SimFaults: []string{"xid@gpu0+1s"}}
		}, codes.InvalidArgument},
		{"chaos", func(s *provider.Spec) {
			s.Request = &controlplanev1.ProvisionNodesRequest{ChaosInterval: durationpb.New(time.Minute)}
		}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			p := newTestProvider(t, f, testConfig(f))
			spec, _ := testSpec("train-00000001")
			tt.spec(&spec)
			if _, err := p.Provision(context.Background(), spec); status.Code(err) != tt.want {
				t.Fatalf("Provision error = %v, want %s", err, tt.want)
			}
			if n := f.count("insert"); n != 0 {
				t.Errorf("%d inserts, want none", n)
			}
		})
	}
}

func TestProvisionUserDataFails(t *testing.T) {
	f := newFake(t)
	p := newTestProvider(t, f, testConfig(f))
	spec, _ := testSpec("train-00000001")
	spec.UserData = func(context.Context, string, map[string]string) ([]byte, error) {
		return nil, errors.New("no join token")
	}
	if _, err := p.Provision(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "render user data for train-00000001: no join token") {
		t.Fatalf("Provision error = %v, want the user data's", err)
	}
	if n := f.count("insert"); n != 0 {
		t.Errorf("%d inserts, want none", n)
	}
}

func TestProvisionGivesUpOnUnfinishedOperation(t *testing.T) {
	f := newFake(t)
	f.unfinished = true
	p := newTestProvider(t, f, testConfig(f), func(o *Options) { o.OperationTimeout = 30 * time.Millisecond })
	spec, _ := testSpec("train-00000001")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := p.Provision(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "insert instance train-00000001 in us-central1-a: operation operation-2 is not done after 30ms (it is RUNNING)") {
		t.Fatalf("Provision error = %v, want the operation named as unfinished", err)
	}
	if ctx.Err() != nil {
		t.Error("only the caller's context ended the wait")
	}
	if n := f.count("wait"); n < 2 {
		t.Errorf("%d waits, want the operation asked about until the timeout", n)
	}
}
