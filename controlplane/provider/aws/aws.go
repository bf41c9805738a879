// Package aws is the "aws" provider: it launches EC2 instances, one per
// node, each booting the cloud-init user data the control plane renders
// for it and tagged with its node, pool and this control plane's cluster;
// it terminates them (only once EC2 shows an instance carries this
// cluster's and the node's tags), lists what this cluster runs, and
// watches for spot interruptions and instances that vanished. It owns how
// EC2's answers are read: a subnet without capacity passes the launch to
// the next, throttling is retried with backoff, and refused credentials
// are the operator's to fix, never retried. Every request is bounded: in
// time, in the size of its answer, in the pages of a listing, and to the
// configured endpoint (no redirect is followed).
//
// It speaks EC2's query API itself (query.go, xml.go) for the six actions
// it calls, signing with the SDK's SigV4 signer and taking credentials,
// region and endpoint from the SDK's configuration. The SDK's generated
// EC2 client covers hundreds of actions; compiling it was the longest
// single step of a first build.
package aws

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/endpoint"
)

// Options configures New.
type Options struct {
	// Config is the provider's section of the configuration.
	Config Config
	// Env names the cluster and gives the logger.
	Env provider.Env
	// Credentials sign the requests; nil means the SDK's default chain
	// (environment, shared files, SSO, the instance's role).
	Credentials awssdk.CredentialsProvider
	// HTTPClient's transport sends the requests; nil means the SDK's
	// (which trusts AWS_CA_BUNDLE).
	// Its timeout and redirects are not used: the provider bounds each
	// request by RequestTimeout and follows no redirect.
	HTTPClient *http.Client
	// RequestTimeout bounds one HTTP request, its answer included; 0
	// means 60s.
	RequestTimeout time.Duration
	// Backoff is the wait before retry attempt n (1 for the first retry)
	// of a throttled or failed call; nil means the SDK's exponential
	// backoff with jitter, at most 20s.
	Backoff func(attempt int) time.Duration
	// MaxAttempts bounds the attempts of one call; 0 means 6.
	MaxAttempts int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Provider launches and stops EC2 instances.
type Provider struct {
	cfg     Config
	cluster string
	ec2     *ec2Client
	log     *slog.Logger
	now     func() time.Time

	mu sync.Mutex
	// rootDevice caches each AMI's root device name.
	rootDevice map[string]string
	// gpus caches each instance type's GPUs.
	gpus map[string]int
	// live are the instances known to have been pending or running, by
	// instance id; Watch reports one that stops running unbidden.
	live map[string]liveInstance
	// stopping are the instances Terminate was asked to stop.
	stopping map[string]bool
}

var (
	_ provider.Provider = (*Provider)(nil)
	_ provider.Watcher  = (*Provider)(nil)
)

// New checks the configuration and makes the EC2 client.
func New(o Options) (*Provider, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Env.Cluster == "" {
		return nil, errors.New("aws provider: the cluster name is required: instances are found again by it")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Env.Logger == nil {
		o.Env.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := awsConfig(o)
	if err != nil {
		return nil, err
	}
	c := o.Config
	url, fromEnv, err := resolveEndpoint(c.Endpoint, cfg)
	if err != nil {
		return nil, fmt.Errorf("aws provider: EC2's endpoint: %w", err)
	}
	// AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_EC2 or a profile's endpoint_url
	// set one too, where the configuration names none; it gets the same
	// check.
	if fromEnv {
		if err := endpoint.Check(url); err != nil {
			return nil, fmt.Errorf("aws provider: the endpoint from the environment or the shared AWS configuration: %w", err)
		}
	}
	client := &ec2Client{
		endpoint: url,
		region:   c.Region,
		creds:    cfg.Credentials,
		http:     httpClient(o, cfg.HTTPClient),
		signer:   v4.NewSigner(),
		retryer:  retryer(o),
	}
	return &Provider{
		cfg:        c,
		cluster:    o.Env.Cluster,
		ec2:        client,
		log:        o.Env.Logger.With("provider", "aws"),
		now:        o.Now,
		rootDevice: map[string]string{},
		gpus:       map[string]int{},
		live:       map[string]liveInstance{},
		stopping:   map[string]bool{},
	}, nil
}

// awsConfig is the SDK's configuration: static credentials where the
// options give them, else the default chain, which reads the environment
// and shared files now (the endpoint and CA bundle they name too) and
// fetches credentials only when a call needs them.
func awsConfig(o Options) (awssdk.Config, error) {
	creds := o.Credentials
	cfg := awssdk.Config{Region: o.Config.Region}
	if creds == nil {
		var err error
		cfg, err = awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(o.Config.Region))
		if err != nil {
			return cfg, fmt.Errorf("aws provider: load AWS configuration: %w", err)
		}
		creds = cfg.Credentials
	}
	if creds == nil {
		return cfg, errors.New("aws provider: no AWS credentials provider")
	}
	// Marking a failure to find credentials lets Provision tell it from
	// an unreachable endpoint.
	cfg.Credentials = awssdk.NewCredentialsCache(markedCredentials{creds})
	return cfg, nil
}

// retryer retries throttling and transient failures with bounded
// exponential backoff, but never a capacity error (the next subnet is
// tried instead) nor refused credentials (a retry cannot fix them).
func retryer(o Options) awssdk.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = 6
		if o.MaxAttempts > 0 {
			so.MaxAttempts = o.MaxAttempts
		}
		if o.Backoff != nil {
			so.Backoff = retry.BackoffDelayerFunc(func(attempt int, _ error) (time.Duration, error) {
				return o.Backoff(attempt), nil
			})
		}
		so.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) awssdk.Ternary {
			switch kindOf(err) {
			case kindCapacity, kindAuth, kindQuota, kindRefused:
				return awssdk.FalseTernary
			}
			return awssdk.UnknownTernary
		})}, so.Retryables...)
	})
}

// Name is "aws".
func (p *Provider) Name() string { return "aws" }

// Description says what the provider starts.
func (p *Provider) Description() string {
	return fmt.Sprintf("EC2 instances (%s in %s)", p.cfg.InstanceType, p.cfg.Region)
}

// markedCredentials marks a failure to retrieve credentials.
type markedCredentials struct{ awssdk.CredentialsProvider }

func (m markedCredentials) Retrieve(ctx context.Context) (awssdk.Credentials, error) {
	c, err := m.CredentialsProvider.Retrieve(ctx)
	if err != nil {
		return c, &noCredentialsError{err}
	}
	return c, nil
}

type noCredentialsError struct{ err error }

func (e *noCredentialsError) Error() string { return e.err.Error() }
func (e *noCredentialsError) Unwrap() error { return e.err }
