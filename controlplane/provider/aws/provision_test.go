package aws_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/aws"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// TestMain keeps the SDK off the network: no instance metadata service,
// no shared configuration or credentials of the machine running the tests.
func TestMain(m *testing.M) {
	for k, v := range map[string]string{
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	} {
		_ = os.Setenv(k, v)
	}
	for _, k := range []string{"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
		"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
		"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_CA_BUNDLE"} {
		_ = os.Unsetenv(k)
	}
	os.Exit(m.Run())
}

const cluster = "test-cluster"

// testConfig is an enabled section pointing at the fake.
func testConfig(f *fakeEC2) aws.Config {
	c := aws.DefaultConfig()
	c.Enabled = true
	c.Region = "us-east-1"
	c.Endpoint = f.srv.URL
	c.AMI = "ami-gpu"
	c.Subnets = []aws.Subnet{{ID: "subnet-a", Zone: "us-east-1a"}, {ID: "subnet-b", Zone: "us-east-1b"}, {ID: "subnet-c", Zone: "us-east-1c"}}
	c.SecurityGroups = []string{"sg-1", "sg-2"}
	c.KeyName = "ops"
	c.IAMInstanceProfile = "navarch-node"
	c.Tags = map[string]string{"team": "ml"}
	return c
}

// backoffs records the waits the retryer asked for, and waits none.
type backoffs struct {
	mu       sync.Mutex
	attempts []int
}

func (b *backoffs) wait(attempt int) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts = append(b.attempts, attempt)
	return 0
}

func (b *backoffs) got() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.attempts)
}

var noticeTime = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func newProvider(t *testing.T, f *fakeEC2, edit func(*aws.Config)) (*aws.Provider, *backoffs) {
	t.Helper()
	c := testConfig(f)
	if edit != nil {
		edit(&c)
	}
	b := &backoffs{}
	p, err := aws.New(aws.Options{
		Config:      c,
		Env:         provider.Env{Cluster: cluster},
		Credentials: credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		HTTPClient:  f.srv.Client(),
		Backoff:     b.wait,
		Now:         func() time.Time { return noticeTime },
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

// failures records spec.Failed.
type failures struct {
	mu     sync.Mutex
	byNode map[string]string
}

func (f *failures) record(node, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byNode[node] = reason
}

func userData(node string) string { return "#cloud-config\n# node " + node + "\n" }

func testSpec(ids ...string) (provider.Spec, *failures) {
	fl := &failures{byNode: map[string]string{}}
	return provider.Spec{
		Count:   len(ids),
		NodeIDs: ids,
		Pool:    "train",
		Labels:  map[string]string{"rack": "r1"},
		Failed:  fl.record,
		UserData: func(_ context.Context, node string, labels map[string]string) ([]byte, error) {
			return []byte(userData(node) + "# rack " + labels["rack"] + "\n"), nil
		},
	}, fl
}

func code(err error) codes.Code { return status.Code(err) }

func TestProvisionLaunchesOneInstancePerNode(t *testing.T) {
	f := newFakeEC2(t)
	p, _ := newProvider(t, f, func(c *aws.Config) { c.RootVolumeGB = 500 })
	spec, fl := testSpec("train-00000001", "train-00000002")
	spec.InstanceType = "p4d.24xlarge"
	got, err := p.Provision(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(fl.byNode) != 0 {
		t.Fatalf("got %+v, failures %v", got, fl.byNode)
	}
	runs := f.calls("RunInstances")
	if len(runs) != 2 {
		t.Fatalf("%d RunInstances calls, want 2", len(runs))
	}
	for i, node := range spec.NodeIDs {
		inst := got[i]
		if inst.NodeID != node || inst.Pool != "train" || inst.Zone != "us-east-1a" || !strings.HasPrefix(inst.InstanceID, "i-") {
			t.Errorf("instance %d = %+v", i, inst)
		}
		form := runs[i]
		ud, err := base64.StdEncoding.DecodeString(form.Get("UserData"))
		if err != nil || string(ud) != userData(node)+"# rack r1\n" {
			t.Errorf("user data of %s = %q (%v)", node, ud, err)
		}
		for key, want := range map[string]string{
			"ImageId": "ami-gpu", "InstanceType": "p4d.24xlarge", "SubnetId": "subnet-a",
			"SecurityGroupId.1": "sg-1", "SecurityGroupId.2": "sg-2", "KeyName": "ops",
			"IamInstanceProfile.Name": "navarch-node", "MetadataOptions.HttpTokens": "required",
			"MetadataOptions.HttpPutResponseHopLimit": "1",
			"BlockDeviceMapping.1.DeviceName":         "/dev/sda1", "BlockDeviceMapping.1.Ebs.VolumeSize": "500",
			"BlockDeviceMapping.1.Ebs.VolumeType": "gp3", "InstanceMarketOptions.MarketType": "",
		} {
			if g := form.Get(key); g != want {
				t.Errorf("%s: %s = %q, want %q", node, key, g, want)
			}
		}
		if tok := form.Get("ClientToken"); !strings.HasPrefix(tok, node+"-") || len(tok) > 64 {
			t.Errorf("%s: client token %q does not name the node", node, tok)
		}
		wantTags := map[string]string{"navarch-cluster": cluster, "navarch-node": node, "navarch-pool": "train", "Name": node, "team": "ml"}
		fi := f.instance(inst.InstanceID)
		if fmt.Sprint(fi.tags) != fmt.Sprint(wantTags) || fmt.Sprint(fi.volumeTags) != fmt.Sprint(wantTags) {
			t.Errorf("%s: instance tags %v, volume tags %v, want %v on both", node, fi.tags, fi.volumeTags, wantTags)
		}
	}
	if runs[0].Get("ClientToken") == runs[1].Get("ClientToken") {
		t.Error("two nodes share a client token")
	}
	if n := len(f.calls("DescribeImages")); n != 1 {
		t.Errorf("%d DescribeImages calls, want 1 to find the root device", n)
	}
}

func TestProvisionSpot(t *testing.T) {
	f := newFakeEC2(t)
	p, _ := newProvider(t, f, func(c *aws.Config) {
		c.Spot = true
		c.IAMInstanceProfile = "arn:aws:iam::123456789012:instance-profile/navarch"
	})
	spec, _ := testSpec("train-00000001")
	spec.GPUsPerNode = 8
	if _, err := p.Provision(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	form := f.calls("RunInstances")[0]
	for key, want := range map[string]string{
		"InstanceMarketOptions.MarketType":                               "spot",
		"InstanceMarketOptions.SpotOptions.SpotInstanceType":             "one-time",
		"InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior": "terminate",
		"IamInstanceProfile.Arn":                                         "arn:aws:iam::123456789012:instance-profile/navarch",
		"InstanceType":                                                   "p5.48xlarge",
		"BlockDeviceMapping.1.DeviceName":                                "",
	} {
		if g := form.Get(key); g != want {
			t.Errorf("%s = %q, want %q", key, g, want)
		}
	}
}

func TestProvisionCapacity(t *testing.T) {
	tests := []struct {
		name  string
		full  map[string]string
		zones []string
		// wantSubnets are the subnets tried, in order, for two nodes.
		wantSubnets []string
		wantZone    string
	}{
		{"next-subnet", map[string]string{"subnet-a": "InsufficientInstanceCapacity"},
			nil, []string{"subnet-a", "subnet-b", "subnet-b"}, "us-east-1b"},
		{"unsupported-type", map[string]string{"subnet-a": "Unsupported", "subnet-b": "InsufficientCapacity"},
			nil, []string{"subnet-a", "subnet-b", "subnet-c", "subnet-c"}, "us-east-1c"},
		{"subnet-out-of-addresses", map[string]string{"subnet-a": "InsufficientFreeAddressesInSubnet"},
			nil, []string{"subnet-a", "subnet-b", "subnet-b"}, "us-east-1b"},
		{"pool-zones-in-order", map[string]string{"subnet-c": "InsufficientInstanceCapacity"},
			[]string{"us-east-1c", "us-east-1b"}, []string{"subnet-c", "subnet-b", "subnet-b"}, "us-east-1b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEC2(t)
			f.full = tt.full
			p, b := newProvider(t, f, nil)
			spec, fl := testSpec("n-1", "n-2")
			spec.Zones = tt.zones
			got, err := p.Provision(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			var subnets []string
			for _, form := range f.calls("RunInstances") {
				subnets = append(subnets, form.Get("SubnetId"))
			}
			if !slices.Equal(subnets, tt.wantSubnets) {
				t.Errorf("subnets tried %v, want %v", subnets, tt.wantSubnets)
			}
			if len(got) != 2 || got[0].Zone != tt.wantZone || got[1].Zone != tt.wantZone || len(fl.byNode) != 0 {
				t.Errorf("got %+v, failures %v", got, fl.byNode)
			}
			if len(b.got()) != 0 {
				t.Errorf("capacity errors were retried: backoffs %v", b.got())
			}
		})
	}
}

func TestProvisionFailures(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(f *fakeEC2)
		edit     func(s *provider.Spec)
		wantCode codes.Code
		wantText string
		// wantCalls is every call the fake answered.
		wantCalls int
	}{
		{"no-capacity-anywhere", func(f *fakeEC2) { f.capacity = 0 }, nil,
			codes.ResourceExhausted, "no subnet has capacity for p5.48xlarge: subnet-a (us-east-1a): InsufficientInstanceCapacity", 4},
		{"credentials-refused", func(f *fakeEC2) { f.deny = "AuthFailure" }, nil,
			codes.FailedPrecondition, "aws: credentials refused", 1},
		// EC2's answer to session credentials that expired, and to a
		// clock far off.
		{"credentials-expired", func(f *fakeEC2) { f.deny = "RequestExpired" }, nil,
			codes.FailedPrecondition, "aws: credentials refused: ec2:DescribeInstances (earlier launches): RequestExpired", 1},
		{"not-authorized", func(f *fakeEC2) { f.denyAction = "RunInstances" }, nil,
			codes.FailedPrecondition, "aws: credentials refused: ec2:RunInstances: UnauthorizedOperation", 2},
		{"bad-image", func(f *fakeEC2) { f.images = map[string]string{} }, nil,
			codes.FailedPrecondition, "InvalidAMIID.NotFound", 2},
		{"no-bootstrap", nil, func(s *provider.Spec) { s.UserData = nil },
			codes.FailedPrecondition, "no bootstrap is configured", 0},
		{"sim-faults", nil, func(s *provider.Spec) {
			s.Request = &controlplanev1.ProvisionNodesRequest{SimFaults: []string{"xid79@gpu0"}}
		}, codes.InvalidArgument, "sim_faults", 0},
		{"chaos", nil, func(s *provider.Spec) {
			s.Request = &controlplanev1.ProvisionNodesRequest{ChaosInterval: durationpb.New(time.Minute)}
		}, codes.InvalidArgument, "chaos_interval", 0},
		{"other-region", nil, func(s *provider.Spec) { s.Region = "eu-west-1" },
			codes.InvalidArgument, "region: the aws provider launches in us-east-1", 0},
		{"zone-without-subnet", nil, func(s *provider.Spec) { s.Zones = []string{"us-east-1f"} },
			codes.InvalidArgument, "zones: no configured subnet is in us-east-1f", 0},
		{"gpus-per-node", nil, func(s *provider.Spec) { s.GPUsPerNode = 4 },
			codes.InvalidArgument, "gpus_per_node: p5.48xlarge has 8 GPUs, not 4", 1},
		{"unknown-type", nil, func(s *provider.Spec) { s.InstanceType = "p9.huge"; s.GPUsPerNode = 8 },
			codes.InvalidArgument, "instance_type: InvalidInstanceType", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEC2(t)
			if tt.setup != nil {
				f.set(tt.setup)
			}
			p, b := newProvider(t, f, nil)
			spec, fl := testSpec("n-1")
			if tt.edit != nil {
				tt.edit(&spec)
			}
			got, err := p.Provision(context.Background(), spec)
			if code(err) != tt.wantCode || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("err = %v (%s), want %s containing %q", err, code(err), tt.wantCode, tt.wantText)
			}
			if strings.Contains(err.Error(), accessKey) || strings.Contains(err.Error(), "AWS4-HMAC-SHA256") {
				t.Errorf("err = %v shows the credentials or the signature", err)
			}
			if len(got) != 0 || len(fl.byNode) != 0 {
				t.Errorf("got %+v and failures %v alongside the error", got, fl.byNode)
			}
			f.mu.Lock()
			calls := len(f.requests)
			f.mu.Unlock()
			if calls != tt.wantCalls {
				t.Errorf("%d calls reached EC2, want %d", calls, tt.wantCalls)
			}
			if len(b.got()) != 0 {
				t.Errorf("retried: backoffs %v", b.got())
			}
		})
	}
}

func TestProvisionRetriesThrottling(t *testing.T) {
	f := newFakeEC2(t)
	f.throttle["RunInstances"] = 2
	f.throttle["DescribeInstances"] = 1
	p, b := newProvider(t, f, nil)
	spec, _ := testSpec("n-1")
	got, err := p.Provision(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("got %+v", got)
	}
	runs := f.calls("RunInstances")
	if len(runs) != 3 {
		t.Fatalf("%d RunInstances calls, want 3 (two throttled)", len(runs))
	}
	for _, r := range runs[1:] {
		if r.Get("ClientToken") != runs[0].Get("ClientToken") {
			t.Errorf("a retry changed the client token: %q, then %q", runs[0].Get("ClientToken"), r.Get("ClientToken"))
		}
	}
	// One wait before DescribeInstances' retry, then two growing ones for
	// RunInstances.
	if want := []int{1, 1, 2}; !slices.Equal(b.got(), want) {
		t.Errorf("backoff attempts %v, want %v", b.got(), want)
	}
}

func TestProvisionGivesUpOnEndlessThrottling(t *testing.T) {
	f := newFakeEC2(t)
	f.throttle["RunInstances"] = 100
	p, b := newProvider(t, f, nil)
	spec, _ := testSpec("n-1")
	_, err := p.Provision(context.Background(), spec)
	if err == nil || code(err) != codes.Unknown || !strings.Contains(err.Error(), "RequestLimitExceeded") {
		t.Fatalf("err = %v, want a plain error naming RequestLimitExceeded", err)
	}
	if n := len(f.calls("RunInstances")); n != 6 {
		t.Errorf("%d attempts, want the bound of 6", n)
	}
	if len(b.got()) != 5 {
		t.Errorf("backoffs %v, want 5", b.got())
	}
}

func TestProvisionHalfFails(t *testing.T) {
	f := newFakeEC2(t)
	f.capacity = 2
	p, _ := newProvider(t, f, nil)
	spec, fl := testSpec("n-1", "n-2", "n-3", "n-4")
	got, err := p.Provision(context.Background(), spec)
	if err != nil {
		t.Fatalf("a launch that started some nodes failed: %v", err)
	}
	var nodes []string
	for _, inst := range got {
		nodes = append(nodes, inst.NodeID)
	}
	if !slices.Equal(nodes, []string{"n-1", "n-2"}) {
		t.Errorf("started %v, want n-1 and n-2", nodes)
	}
	if len(fl.byNode) != 2 {
		t.Fatalf("failures %v, want n-3 and n-4", fl.byNode)
	}
	for _, node := range []string{"n-3", "n-4"} {
		if r := fl.byNode[node]; !strings.Contains(r, "no subnet has capacity") || !strings.Contains(r, "subnet-c (us-east-1c): InsufficientInstanceCapacity") {
			t.Errorf("reason for %s = %q", node, r)
		}
	}
	// n-3 tried each subnet once; n-4 found them all full already.
	if n := len(f.calls("RunInstances")); n != 5 {
		t.Errorf("%d RunInstances calls, want 5", n)
	}
}

func TestProvisionStopsAtAnErrorEveryNodeWouldMeet(t *testing.T) {
	f := newFakeEC2(t)
	f.capacity = 1
	p, _ := newProvider(t, f, nil)
	spec, fl := testSpec("n-1", "n-2", "n-3")
	calls := 0
	render := spec.UserData
	spec.UserData = func(ctx context.Context, node string, labels map[string]string) ([]byte, error) {
		if calls++; calls == 2 {
			return nil, errors.New("token store unavailable")
		}
		return render(ctx, node, labels)
	}
	got, err := p.Provision(context.Background(), spec)
	if err != nil || len(got) != 1 {
		t.Fatalf("got %+v, %v", got, err)
	}
	if !strings.Contains(fl.byNode["n-2"], "token store unavailable") || !strings.Contains(fl.byNode["n-3"], "not launched after an earlier node failed") {
		t.Errorf("failures %v", fl.byNode)
	}
	if n := len(f.calls("RunInstances")); n != 1 {
		t.Errorf("%d RunInstances calls after the failure, want 1 in all", n)
	}
}

func TestProvisionSameNodeTwice(t *testing.T) {
	f := newFakeEC2(t)
	p, _ := newProvider(t, f, nil)
	spec, _ := testSpec("n-1")
	first, err := p.Provision(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	// A control plane that lost the answer asks again for the same node.
	spec2, _ := testSpec("n-1", "n-2")
	again, err := p.Provision(context.Background(), spec2)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 2 || again[0].InstanceID != first[0].InstanceID {
		t.Fatalf("second launch %+v, want %s back for n-1", again, first[0].InstanceID)
	}
	if n := len(f.calls("RunInstances")); n != 2 {
		t.Errorf("%d RunInstances calls, want 2: one per node", n)
	}
}

func TestProvisionAfterNoCapacity(t *testing.T) {
	f := newFakeEC2(t)
	f.full["subnet-a"] = "InsufficientInstanceCapacity"
	p, _ := newProvider(t, f, func(c *aws.Config) { c.Subnets = c.Subnets[:1] })
	render := 0
	spec, _ := testSpec("n-1")
	spec.UserData = func(_ context.Context, node string, _ map[string]string) ([]byte, error) {
		render++
		return []byte(fmt.Sprintf("%s# join token %d\n", userData(node), render)), nil
	}
	if _, err := p.Provision(context.Background(), spec); code(err) != codes.ResourceExhausted {
		t.Fatalf("err = %v, want ResourceExhausted", err)
	}
	// EC2 keeps the failed launch's client token; the node asked for
	// again, with a new join token in its user data, launches anew.
	f.set(func(f *fakeEC2) { delete(f.full, "subnet-a") })
	got, err := p.Provision(context.Background(), spec)
	if err != nil || len(got) != 1 {
		t.Fatalf("got %+v, %v", got, err)
	}
	runs := f.calls("RunInstances")
	if len(runs) != 2 || runs[0].Get("ClientToken") == runs[1].Get("ClientToken") {
		t.Errorf("launches reused the failed launch's client token: %v", runs)
	}
}
