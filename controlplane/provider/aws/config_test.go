package aws_test

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/aws"
	"github.com/navarch/navarch/internal/yamlfile"
)

func TestValidate(t *testing.T) {
	enabled := func(c *aws.Config) {
		c.Enabled = true
		c.Region = "us-east-1"
		c.AMI = "ami-1"
		c.Subnets = []aws.Subnet{{ID: "subnet-a", Zone: "us-east-1a"}, {ID: "subnet-b", Zone: "us-east-1b"}}
	}
	tests := []struct {
		name string
		edit func(c *aws.Config)
		want string // the error's start; "" for none
	}{
		{"defaults", func(*aws.Config) {}, ""},
		{"enabled", enabled, ""},
		{"no-region", func(c *aws.Config) { enabled(c); c.Region = "" }, "region: required"},
		{"no-ami", func(c *aws.Config) { enabled(c); c.AMI = "" }, "ami: required"},
		{"no-instance-type", func(c *aws.Config) { enabled(c); c.InstanceType = "" }, "instance_type: required"},
		{"no-subnets", func(c *aws.Config) { enabled(c); c.Subnets = nil }, "subnets: at least one"},
		{"subnet-id", func(c *aws.Config) { enabled(c); c.Subnets[1].ID = "sn-b" }, `subnets[1].id: "sn-b" is not a subnet id`},
		{"subnet-twice", func(c *aws.Config) { enabled(c); c.Subnets[1].ID = "subnet-a" }, "subnets[1].id: subnet-a is listed twice"},
		{"subnet-zone", func(c *aws.Config) { enabled(c); c.Subnets[0].Zone = "" }, "subnets[0].zone: required"},
		{"zone-of-other-region", func(c *aws.Config) { enabled(c); c.Subnets[1].Zone = "eu-west-1a" }, "subnets[1].zone: eu-west-1a is not in region us-east-1"},
		{"zone-behind-endpoint", func(c *aws.Config) {
			enabled(c)
			c.Endpoint = "https://ec2.example.net"
			c.Subnets[1].Zone = "zone-2"
		}, ""},
		{"endpoint-plain-http", func(c *aws.Config) { enabled(c); c.Endpoint = "http://ec2.example.net" }, `endpoint: "http://ec2.example.net" is neither https nor plain http on loopback`},
		{"endpoint-plain-http-on-loopback", func(c *aws.Config) { enabled(c); c.Endpoint = "http://127.0.0.1:4566" }, ""},
		{"endpoint-plain-http-on-localhost", func(c *aws.Config) { enabled(c); c.Endpoint = "http://localhost:4566" }, ""},
		{"endpoint-with-credentials", func(c *aws.Config) { enabled(c); c.Endpoint = "https://user:s3cret@ec2.example.net" }, "endpoint: \"https://user:xxxxx@ec2.example.net\" holds credentials"},
		{"endpoint-with-credentials-on-loopback", func(c *aws.Config) { enabled(c); c.Endpoint = "http://user:s3cret@127.0.0.1:4566" }, "endpoint:"},
		{"endpoint-no-scheme", func(c *aws.Config) { enabled(c); c.Endpoint = "ec2.example.net" }, "endpoint:"},
		{"endpoint-other-scheme", func(c *aws.Config) { enabled(c); c.Endpoint = "ftp://ec2.example.net" }, "endpoint:"},
		{"security-group", func(c *aws.Config) { c.SecurityGroups = []string{"sg-1", "default"} }, `security_groups[1]: "default" is not a security group id`},
		{"root-volume", func(c *aws.Config) { c.RootVolumeGB = -1 }, "root_volume_gb: -1"},
		{"poll-interval", func(c *aws.Config) { c.PollInterval.Duration = 100 * time.Millisecond }, "poll_interval: 100ms is below"},
		{"reserved-tag", func(c *aws.Config) { c.Tags = map[string]string{"aws:team": "x"} }, "tags.aws:team: the aws: prefix is reserved"},
		{"own-tag", func(c *aws.Config) { c.Tags = map[string]string{"navarch-pool": "x"} }, "tags.navarch-pool: the provider sets this tag"},
		{"long-tag-value", func(c *aws.Config) { c.Tags = map[string]string{"team": strings.Repeat("x", 257)} }, "tags.team: value is longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := aws.DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error starting %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Errorf("the error shows the URL's password: %v", err)
			}
		})
	}
}

func TestConfigExample(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "aws_provider.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		AWSProvider aws.Config `yaml:"aws_provider"`
	}
	doc.AWSProvider = aws.DefaultConfig()
	if err := yamlfile.Decode(b, &doc); err != nil {
		t.Fatal(err)
	}
	c := doc.AWSProvider
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.On() || len(c.Subnets) != 2 || c.Subnets[1].Zone != "us-east-1b" || c.RootVolumeGB != 500 ||
		c.PollInterval.Duration != 30*time.Second || c.Tags["team"] != "ml-infra" {
		t.Errorf("decoded %+v", c)
	}
}

// TestBuild runs the provider as the control plane builds it: credentials
// from the environment through the SDK's default chain, the fake's
// certificate trusted through AWS_CA_BUNDLE.
func TestBuild(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantCode codes.Code
		wantText string
	}{
		{"credentials-from-environment", map[string]string{"AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": secretKey}, codes.OK, ""},
		{"no-credentials", nil, codes.FailedPrecondition, "aws: no credentials for ec2:DescribeInstances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeEC2(t)
			bundle := filepath.Join(t.TempDir(), "ca.pem")
			if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw}), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("AWS_CA_BUNDLE", bundle)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			p, err := aws.Build(testConfig(f), provider.Env{Cluster: cluster})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.List(context.Background())
			if code(err) != tt.wantCode || (err != nil && !strings.Contains(err.Error(), tt.wantText)) {
				t.Fatalf("List() = %v, want %s %q", err, tt.wantCode, tt.wantText)
			}
			if tt.wantCode == codes.OK && len(f.calls("DescribeInstances")) != 1 {
				t.Error("the fake was not called")
			}
		})
	}
}

// TestBuildChecksTheEndpointFromTheEnvironment: the SDK takes an endpoint
// from AWS_ENDPOINT_URL(_EC2) where the configuration names none; it must
// pass the same check as the configuration's.
func TestBuildChecksTheEndpointFromTheEnvironment(t *testing.T) {
	tests := []struct {
		name, env, value string
		wantErr          bool
	}{
		{"all-services-plain-http", "AWS_ENDPOINT_URL", "http://ec2.example.net", true},
		{"ec2-plain-http", "AWS_ENDPOINT_URL_EC2", "http://ec2.example.net", true},
		{"ec2-with-credentials", "AWS_ENDPOINT_URL_EC2", "https://user:s3cret@ec2.example.net", true},
		{"ec2-https", "AWS_ENDPOINT_URL_EC2", "https://ec2.example.net", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", accessKey)
			t.Setenv("AWS_SECRET_ACCESS_KEY", secretKey)
			t.Setenv(tt.env, tt.value)
			c := testConfig(newFakeEC2(t))
			c.Endpoint = ""
			_, err := aws.Build(c, provider.Env{Cluster: cluster})
			if tt.wantErr != (err != nil) {
				t.Fatalf("Build() = %v, want an error: %t", err, tt.wantErr)
			}
			if err != nil && (!strings.Contains(err.Error(), "endpoint") || strings.Contains(err.Error(), "s3cret")) {
				t.Errorf("Build() = %v, want it to name the endpoint and not show its password", err)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	f := newFakeEC2(t)
	c := testConfig(f)
	if _, err := aws.Build(c, provider.Env{}); err == nil || !strings.Contains(err.Error(), "cluster name") {
		t.Errorf("Build without a cluster = %v", err)
	}
	c.Subnets = nil
	if _, err := aws.Build(c, provider.Env{Cluster: cluster}); err == nil || !strings.Contains(err.Error(), "subnets: at least one") {
		t.Errorf("Build with an invalid section = %v", err)
	}
}
