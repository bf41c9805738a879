package aws

import (
	"context"
	"strings"
	"testing"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
)

// source is a configuration source as the SDK's environment and shared
// configuration are: each says what it was given.
type source struct {
	fips, dualStack, ignore bool
	ec2Endpoint             string
}

func (s source) GetUseFIPSEndpoint(context.Context) (awssdk.FIPSEndpointState, bool, error) {
	if !s.fips {
		return awssdk.FIPSEndpointStateUnset, false, nil
	}
	return awssdk.FIPSEndpointStateEnabled, true, nil
}

func (s source) GetUseDualStackEndpoint(context.Context) (awssdk.DualStackEndpointState, bool, error) {
	if !s.dualStack {
		return awssdk.DualStackEndpointStateUnset, false, nil
	}
	return awssdk.DualStackEndpointStateEnabled, true, nil
}

func (s source) GetIgnoreConfiguredEndpoints(context.Context) (bool, bool, error) {
	return s.ignore, s.ignore, nil
}

func (s source) GetServiceBaseEndpoint(_ context.Context, sdkID string) (string, bool, error) {
	if sdkID != "EC2" || s.ec2Endpoint == "" {
		return "", false, nil
	}
	return s.ec2Endpoint, true, nil
}

func TestResolveEndpoint(t *testing.T) {
	tests := []struct {
		name       string
		configured string
		region     string
		base       string // the SDK's endpoint for every service
		env        map[string]string
		sources    []any
		want       string
		wantEnv    bool
		wantErr    string
	}{
		{"region", "", "us-east-1", "", nil, nil, "https://ec2.us-east-1.amazonaws.com", false, ""},
		{"china", "", "cn-north-1", "", nil, nil, "https://ec2.cn-north-1.amazonaws.com.cn", false, ""},
		{"govcloud", "", "us-gov-west-1", "", nil, nil, "https://ec2.us-gov-west-1.amazonaws.com", false, ""},
		{"iso", "", "us-iso-east-1", "", nil, nil, "https://ec2.us-iso-east-1.c2s.ic.gov", false, ""},
		{"isob", "", "us-isob-east-1", "", nil, nil, "https://ec2.us-isob-east-1.sc2s.sgov.gov", false, ""},
		{"fips", "", "us-east-1", "", nil, []any{source{fips: true}}, "https://ec2-fips.us-east-1.amazonaws.com", false, ""},
		{"fips-govcloud", "", "us-gov-east-1", "", nil, []any{source{fips: true}}, "https://ec2.us-gov-east-1.amazonaws.com", false, ""},
		{"dual-stack", "", "eu-west-1", "", nil, []any{source{dualStack: true}}, "https://ec2.eu-west-1.api.aws", false, ""},
		{"fips-dual-stack", "", "us-east-1", "", nil, []any{source{}, source{fips: true, dualStack: true}}, "https://ec2-fips.us-east-1.api.aws", false, ""},
		{"configured", "https://ec2.example.net", "us-east-1", "https://all.example.net", nil, []any{source{ec2Endpoint: "https://ec2-profile.example.net"}}, "https://ec2.example.net", false, ""},
		{"configured-and-fips", "https://ec2.example.net", "us-east-1", "", nil, []any{source{fips: true}}, "", false, "FIPS or dual-stack"},
		{"every-service", "", "us-east-1", "https://all.example.net", nil, nil, "https://all.example.net", true, ""},
		{"ec2-over-every-service", "", "us-east-1", "https://all.example.net", nil, []any{source{ec2Endpoint: "https://ec2-profile.example.net"}}, "https://ec2-profile.example.net", true, ""},
		{"env-every-service-over-profile-ec2", "", "us-east-1", "https://all.example.net", map[string]string{"AWS_ENDPOINT_URL": "https://all.example.net"},
			[]any{source{ec2Endpoint: "https://ec2-profile.example.net"}}, "https://all.example.net", true, ""},
		{"env-ec2-over-env-every-service", "", "us-east-1", "https://all.example.net", map[string]string{"AWS_ENDPOINT_URL": "https://all.example.net", "AWS_ENDPOINT_URL_EC2": "https://ec2-env.example.net"},
			[]any{source{ec2Endpoint: "https://ec2-env.example.net"}}, "https://ec2-env.example.net", true, ""},
		{"ignored", "", "us-east-1", "", nil, []any{source{ignore: true}, source{ec2Endpoint: "https://ec2-profile.example.net"}}, "https://ec2.us-east-1.amazonaws.com", false, ""},
		{"bad-region", "", "us-east-1.evil.example/x", "", nil, nil, "", false, "cannot name an EC2 endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2"} {
				if v, ok := tt.env[k]; ok {
					t.Setenv(k, v)
				}
			}
			cfg := awssdk.Config{Region: tt.region, ConfigSources: tt.sources}
			if tt.base != "" {
				cfg.BaseEndpoint = awssdk.String(tt.base)
			}
			got, fromEnv, err := resolveEndpoint(tt.configured, cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolveEndpoint() = %q, %v; want an error saying %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || fromEnv != tt.wantEnv {
				t.Errorf("resolveEndpoint() = %q, %t, %v; want %q, %t", got, fromEnv, err, tt.want, tt.wantEnv)
			}
		})
	}
}
