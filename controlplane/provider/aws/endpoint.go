package aws

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
)

// Where EC2 is found, as the SDK's own EC2 client finds it: the
// configured endpoint; else one the environment or the shared AWS
// configuration names (AWS_ENDPOINT_URL_EC2, then AWS_ENDPOINT_URL, or a
// profile's ec2 endpoint_url, then its endpoint_url, unless
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS says not to); else EC2's endpoint
// for the region in its partition, FIPS or dual-stack where
// AWS_USE_FIPS_ENDPOINT or AWS_USE_DUALSTACK_ENDPOINT (or the profile)
// asks for it.

// The interfaces of the SDK's configuration sources (its environment and
// its shared configuration) that say where EC2 is.
type (
	serviceEndpointSource interface {
		GetServiceBaseEndpoint(ctx context.Context, sdkID string) (string, bool, error)
	}
	ignoreEndpointsSource interface {
		GetIgnoreConfiguredEndpoints(ctx context.Context) (bool, bool, error)
	}
	fipsSource interface {
		GetUseFIPSEndpoint(ctx context.Context) (awssdk.FIPSEndpointState, bool, error)
	}
	dualStackSource interface {
		GetUseDualStackEndpoint(ctx context.Context) (awssdk.DualStackEndpointState, bool, error)
	}
)

// partition is a group of regions with its own domain.
type partition struct {
	// prefix begins the names of the partition's regions.
	prefix string
	// dns and dualStackDNS are the partition's domains.
	dns, dualStackDNS string
}

// partitions are AWS's partitions other than the commercial one (aws),
// from the SDK's partitions.json.
var partitions = []partition{
	{"cn-", "amazonaws.com.cn", "api.amazonwebservices.com.cn"},
	{"eusc-", "amazonaws.eu", "api.amazonwebservices.eu"},
	{"us-iso-", "c2s.ic.gov", "api.aws.ic.gov"},
	{"us-isob-", "sc2s.sgov.gov", "api.aws.scloud"},
	{"eu-isoe-", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"},
	{"us-isof-", "csp.hci.ic.gov", "api.aws.hci.ic.gov"},
	{"us-gov-", "amazonaws.com", "api.aws"},
}

var commercial = partition{"", "amazonaws.com", "api.aws"}

// regionName is a region as it can stand in a host name.
var regionName = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// resolveEndpoint is the URL EC2's requests are posted to, and whether it
// came from the environment or the shared configuration rather than the
// provider's section or the region.
func resolveEndpoint(configured string, cfg awssdk.Config) (string, bool, error) {
	ctx := context.Background()
	region := cfg.Region
	fips, dualStack := false, false
	for _, s := range cfg.ConfigSources {
		if f, ok := s.(fipsSource); ok {
			if v, found, _ := f.GetUseFIPSEndpoint(ctx); found {
				fips = fips || v == awssdk.FIPSEndpointStateEnabled
			}
		}
		if d, ok := s.(dualStackSource); ok {
			if v, found, _ := d.GetUseDualStackEndpoint(ctx); found {
				dualStack = dualStack || v == awssdk.DualStackEndpointStateEnabled
			}
		}
	}
	given, fromEnv := configured, false
	if given == "" {
		given, fromEnv = configuredEndpoint(ctx, cfg), true
	}
	if given != "" {
		if fips || dualStack {
			return "", false, errors.New("a FIPS or dual-stack endpoint was asked for (AWS_USE_FIPS_ENDPOINT, AWS_USE_DUALSTACK_ENDPOINT) alongside an endpoint of its own; EC2 cannot have both")
		}
		return given, fromEnv, nil
	}
	if !regionName.MatchString(region) {
		return "", false, fmt.Errorf("region %q cannot name an EC2 endpoint", region)
	}
	p := commercial
	for _, q := range partitions {
		if strings.HasPrefix(region, q.prefix) {
			p = q
			break
		}
	}
	switch {
	case fips && dualStack:
		return "https://ec2-fips." + region + "." + p.dualStackDNS, false, nil
	// GovCloud's regional endpoints are its FIPS endpoints.
	case fips && p.prefix == "us-gov-":
		return "https://ec2." + region + "." + p.dns, false, nil
	case fips:
		return "https://ec2-fips." + region + "." + p.dns, false, nil
	case dualStack:
		return "https://ec2." + region + "." + p.dualStackDNS, false, nil
	}
	return "https://ec2." + region + "." + p.dns, false, nil
}

// configuredEndpoint is the endpoint the environment or the shared
// configuration names for EC2, in the SDK's order, or "". The SDK's
// configuration holds the one for every service (AWS_ENDPOINT_URL, a
// profile's endpoint_url) already, unless they are to be ignored.
func configuredEndpoint(ctx context.Context, cfg awssdk.Config) string {
	all := awssdk.ToString(cfg.BaseEndpoint)
	for _, s := range cfg.ConfigSources {
		if i, ok := s.(ignoreEndpointsSource); ok {
			if v, found, _ := i.GetIgnoreConfiguredEndpoints(ctx); found && v {
				return ""
			}
		}
	}
	// AWS_ENDPOINT_URL is for every service, yet it outranks a profile's
	// ec2 endpoint_url, though not AWS_ENDPOINT_URL_EC2.
	_, env := os.LookupEnv("AWS_ENDPOINT_URL")
	_, envEC2 := os.LookupEnv("AWS_ENDPOINT_URL_EC2")
	if env && !envEC2 {
		return all
	}
	for _, s := range cfg.ConfigSources {
		if e, ok := s.(serviceEndpointSource); ok {
			if v, found, err := e.GetServiceBaseEndpoint(ctx, "EC2"); err == nil && found {
				return v
			}
		}
	}
	return all
}
