package aws_test

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/aws"
	"github.com/navarch/navarch/internal/testutil"
)

// readForm reads a request's parameters from a fixture: one name=value a
// line, # comments.
func readForm(t *testing.T, path string) url.Values {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	out := url.Values{}
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		out.Add(k, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// diffForms lists the parameters two requests do not share, each as
// name: got, want.
func diffForms(got, want url.Values) []string {
	var out []string
	for k := range got {
		if !want.Has(k) {
			out = append(out, k+": "+strings.Join(got[k], ",")+", want none")
		}
	}
	for k := range want {
		if g := strings.Join(got[k], ","); g != strings.Join(want[k], ",") {
			out = append(out, k+": "+g+", want "+strings.Join(want[k], ","))
		}
	}
	return out
}

// TestRunInstancesParameters compares the launch's parameters with those
// the SDK's generated EC2 client sends for the same launch
// (testdata/run_instances.form): a tag, IMDSv2 or spot option under
// another name would be dropped by a real EC2 without a word.
func TestRunInstancesParameters(t *testing.T) {
	f := newFakeEC2(t)
	p, _ := newProvider(t, f, func(c *aws.Config) {
		c.Spot = true
		c.RootVolumeGB = 500
	})
	spec, _ := testSpec("train-00000001")
	if _, err := p.Provision(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	runs := f.calls("RunInstances")
	if len(runs) != 1 {
		t.Fatalf("%d RunInstances calls, want 1", len(runs))
	}
	got := runs[0]
	if tok := got.Get("ClientToken"); !strings.HasPrefix(tok, "train-00000001-") {
		t.Errorf("ClientToken = %q, want one naming the node", tok)
	}
	got.Set("ClientToken", "CLIENT-TOKEN")
	for _, d := range diffForms(got, readForm(t, "testdata/run_instances.form")) {
		t.Error(d)
	}
}

// TestDescribeInstancesParameters does the same for List's listing
// (testdata/describe_instances.form).
func TestDescribeInstancesParameters(t *testing.T) {
	f := newFakeEC2(t)
	p, _ := newProvider(t, f, nil)
	if _, err := p.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	calls := f.calls("DescribeInstances")
	if len(calls) != 1 {
		t.Fatalf("%d DescribeInstances calls, want 1", len(calls))
	}
	for _, d := range diffForms(calls[0], readForm(t, "testdata/describe_instances.form")) {
		t.Error(d)
	}
}

// TestFakeRefusesMisnamedParameters shows that the fake refuses what a
// real EC2 would drop or refuse, so the tests above and the others
// catch a misnamed parameter.
func TestFakeRefusesMisnamedParameters(t *testing.T) {
	run := "ImageId=ami-gpu&MinCount=1&MaxCount=1&"
	tests := []struct {
		name, action, body, wantCode string
	}{
		{"documented", "RunInstances", run + "TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=v&MetadataOptions.HttpTokens=required", ""},
		{"plural-list-name", "RunInstances", run + "TagSpecifications.1.ResourceType=instance", "UnknownParameter"},
		{"sdk-field-name", "RunInstances", run + "SecurityGroupIds.1=sg-1", "UnknownParameter"},
		{"misspelt-option", "RunInstances", run + "MetadataOptions.HttpToken=required", "UnknownParameter"},
		{"british-spelling", "RunInstances", run + "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehaviour=terminate", "UnknownParameter"},
		{"numbered-from-zero", "RunInstances", run + "SecurityGroupId.0=sg-1", "UnknownParameter"},
		{"gap-in-list", "RunInstances", run + "TagSpecification.2.ResourceType=instance", "InvalidParameterValue"},
		{"gap-in-inner-list", "DescribeInstances", "Filter.1.Name=a&Filter.1.Value.2=b", "InvalidParameterValue"},
		{"bad-enum", "RunInstances", run + "MetadataOptions.HttpTokens=yes", "InvalidParameterValue"},
		{"filter-values-plural", "DescribeInstances", "Filter.1.Name=a&Filter.1.Values.1=b", "UnknownParameter"},
		{"ids-and-max-results", "DescribeInstances", "InstanceId.1=i-1&MaxResults=1000", "InvalidParameterCombination"},
		{"max-results-too-big", "DescribeSpotInstanceRequests", "MaxResults=5000", "InvalidParameterValue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form, err := url.ParseQuery(tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if code, msg := checkParams(tt.action, form); code != tt.wantCode {
				t.Errorf("checkParams() = %q (%s), want %q", code, msg, tt.wantCode)
			}
		})
	}
}

// TestSessionCredentials has credentials that expire as soon as they are
// given, as an instance role's or an SSO session's do in time: each call
// retrieves them again and sends their session token, signed, in
// X-Amz-Security-Token.
func TestSessionCredentials(t *testing.T) {
	f := newFakeEC2(t)
	var retrieved atomic.Int32
	creds := awssdk.CredentialsProviderFunc(func(context.Context) (awssdk.Credentials, error) {
		n := retrieved.Add(1)
		return awssdk.Credentials{
			AccessKeyID: accessKey, SecretAccessKey: secretKey, SessionToken: fmt.Sprintf("session-%d", n),
			CanExpire: true, Expires: time.Now().Add(-time.Second),
		}, nil
	})
	p, err := aws.New(aws.Options{
		Config:      testConfig(f),
		Env:         provider.Env{Cluster: cluster},
		Credentials: creds,
		HTTPClient:  f.srv.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		f.set(func(f *fakeEC2) { f.sessionToken = fmt.Sprintf("session-%d", i) })
		if _, err := p.List(context.Background()); err != nil {
			t.Fatalf("List() %d: %v", i, err)
		}
	}
	if n := retrieved.Load(); n != 2 {
		t.Errorf("credentials retrieved %d times, want once a call", n)
	}
}

// TestAnswerNotFromEC2 has the endpoint answer HTTP 200 with a document
// that is not EC2's answer to the call, as a proxy's sign-in page or
// another service at a mistyped endpoint would. Read as DescribeInstances'
// answer it lists no instance: List would say the cluster has none, and
// Watch that every instance it knows is gone.
func TestAnswerNotFromEC2(t *testing.T) {
	tests := []struct{ name, body string }{
		{"proxy-page", `<html><head><title>Sign in</title></head><body><form action="/login"></form></body></html>`},
		{"other-service", `<?xml version="1.0" encoding="UTF-8"?><ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Buckets/></ListAllMyBucketsResult>`},
		{"other-action", `<?xml version="1.0" encoding="UTF-8"?><DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><imagesSet/></DescribeImagesResponse>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEC2(t)
			p, _ := newProvider(t, f, nil)
			spec, _ := testSpec("n-1")
			// The second Provision finds the first's instance listed, so
			// that Watch would take its absence for its end.
			for range 2 {
				if _, err := p.Provision(context.Background(), spec); err != nil {
					t.Fatal(err)
				}
			}
			f.set(func(f *fakeEC2) { f.foreign = tt.body })
			if got, err := p.List(context.Background()); err == nil {
				t.Errorf("List() = %+v, nil; want an error", got)
			}
			listed := len(f.calls("DescribeInstances"))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			n := &notices{}
			go func() {
				defer close(done)
				p.Watch(ctx, n.add)
			}()
			testutil.Eventually(t, "a poll", func() bool { return len(f.calls("DescribeInstances")) > listed })
			cancel()
			<-done
			if got := n.got(); len(got) != 0 {
				t.Errorf("Watch told of %v", got)
			}
		})
	}
}
