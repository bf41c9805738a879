package gcp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/auth"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
)

// errKind is what a failed call means for what comes next.
type errKind int

const (
	kindOther    errKind = iota
	kindRetry            // rate limited or a passing server error: try again after a pause
	kindAuth             // the credentials were refused: no try will do better
	kindCapacity         // the zone has no capacity or quota for the instance: try another
	kindNotFound         // the resource does not exist
)

// Operation error codes that say the zone cannot take the instance now.
var capacityCodes = map[string]bool{
	"ZONE_RESOURCE_POOL_EXHAUSTED":              true,
	"ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS": true,
	"QUOTA_EXCEEDED":                            true,
}

// classify reads an error from the client or from an operation.
func classify(err error) errKind {
	var opErr *operationError
	if errors.As(err, &opErr) {
		for _, e := range opErr.errs {
			if capacityCodes[e.Code] {
				return kindCapacity
			}
		}
		return kindOther
	}
	var authErr *auth.Error
	if errors.As(err, &authErr) {
		// The token endpoint answered: a refusal is final, its own
		// trouble passes.
		switch {
		case authErr.Response == nil:
			return kindOther
		case authErr.Response.StatusCode == http.StatusTooManyRequests || authErr.Response.StatusCode >= 500:
			return kindRetry
		}
		return kindAuth
	}
	var gErr *googleapi.Error
	if !errors.As(err, &gErr) {
		return kindOther
	}
	switch {
	case gErr.Code == http.StatusUnauthorized:
		return kindAuth
	case gErr.Code == http.StatusForbidden:
		switch reason(gErr) {
		case "rateLimitExceeded", "userRateLimitExceeded":
			return kindRetry
		case "quotaExceeded":
			return kindCapacity
		}
		return kindAuth
	case gErr.Code == http.StatusTooManyRequests:
		return kindRetry
	case gErr.Code == http.StatusNotFound:
		return kindNotFound
	case gErr.Code >= 500:
		return kindRetry
	}
	return kindOther
}

func reason(e *googleapi.Error) string {
	if len(e.Errors) > 0 {
		return e.Errors[0].Reason
	}
	return ""
}

// operationError is an operation that finished with errors.
type operationError struct {
	errs []*compute.OperationErrorErrors
}

func (e *operationError) Error() string {
	parts := make([]string, 0, len(e.errs))
	for _, x := range e.errs {
		parts = append(parts, x.Code+": "+x.Message)
	}
	return "operation failed: " + strings.Join(parts, "; ")
}

// retry makes a call until it succeeds, fails for good, or has had its
// attempts. Refused credentials become FailedPrecondition at once.
func (p *Provider) retry(ctx context.Context, step string, call func() error) error {
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil {
			return nil
		}
		kind := classify(err)
		if kind == kindAuth {
			return status.Errorf(codes.FailedPrecondition, "gcp: credentials refused: %s: %v", step, err)
		}
		if kind != kindRetry || attempt >= p.o.Backoff.Attempts || ctx.Err() != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
		pause := p.pause(attempt, err)
		p.log.Debug("call failed; retrying", "step", step, "attempt", attempt, "pause", pause, "err", err)
		if err := p.sleep(ctx, pause); err != nil {
			return fmt.Errorf("%s: %w", step, err)
		}
	}
}

// pause is the wait before another try: doubling from Base up to Max,
// or longer where the server said so in Retry-After, with jitter so that
// parallel launches do not come back at once.
func (p *Provider) pause(attempt int, err error) time.Duration {
	d := p.o.Backoff.Base << min(attempt-1, 20)
	var gErr *googleapi.Error
	if errors.As(err, &gErr) {
		if s, convErr := strconv.Atoi(gErr.Header.Get("Retry-After")); convErr == nil {
			d = max(d, time.Duration(s)*time.Second)
		}
	}
	d = min(d, p.o.Backoff.Max)
	return d/2 + rand.N(d/2+1)
}

func (p *Provider) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-p.clock.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// insert creates an instance and waits for its operation.
func (p *Provider) insert(ctx context.Context, zone string, inst *compute.Instance) error {
	step := fmt.Sprintf("insert instance %s in %s", inst.Name, zone)
	id := requestID("insert", zone, inst.Name)
	var op *compute.Operation
	err := p.retry(ctx, step, func() error {
		var err error
		op, err = p.svc.Instances.Insert(p.cfg.Project, zone, inst).RequestId(id).Context(ctx).Do()
		return err
	})
	if err != nil {
		return err
	}
	return p.wait(ctx, zone, op, step)
}

// wait waits until a zone operation is done, or OperationTimeout has
// passed, and returns its errors.
func (p *Provider) wait(ctx context.Context, zone string, op *compute.Operation, step string) error {
	deadline := p.clock.Now().Add(p.o.OperationTimeout)
	for op.Status != "DONE" {
		if !p.clock.Now().Before(deadline) {
			return fmt.Errorf("%s: operation %s is not done after %s (it is %s); gave up waiting", step, op.Name, p.o.OperationTimeout, op.Status)
		}
		var next *compute.Operation
		err := p.retry(ctx, step+": wait for "+op.Name, func() error {
			var err error
			next, err = p.svc.ZoneOperations.Wait(p.cfg.Project, zone, op.Name).Context(ctx).Do()
			return err
		})
		if err != nil {
			return err
		}
		if next.Status != "DONE" {
			if err := p.sleep(ctx, p.o.OperationPoll); err != nil {
				return fmt.Errorf("%s: %w", step, err)
			}
		}
		op = next
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		return fmt.Errorf("%s: %w", step, &operationError{errs: op.Error.Errors})
	}
	return nil
}

// maxPages bounds one listing: 1000 pages of 500 instances is far more
// than a project's quota allows.
const maxPages = 1000

// listAll lists every instance labelled with this cluster, whatever its
// status, page by page across all zones. A page token seen before, or
// more than maxPages pages, fails the listing rather than letting it go
// round for ever.
func (p *Provider) listAll(ctx context.Context) ([]*compute.Instance, error) {
	call := p.svc.Instances.AggregatedList(p.cfg.Project).
		Filter(fmt.Sprintf("labels.%s = %q", provider.TagCluster, p.cluster)).
		MaxResults(500)
	var out []*compute.Instance
	seen := make(map[string]bool)
	for page := 1; ; page++ {
		if page > maxPages {
			return nil, fmt.Errorf("list instances: more than %d pages", maxPages)
		}
		var list *compute.InstanceAggregatedList
		err := p.retry(ctx, fmt.Sprintf("list instances (page %d)", page), func() error {
			var err error
			list, err = call.Context(ctx).Do()
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, scoped := range list.Items {
			for _, in := range scoped.Instances {
				// The filter is the server's; the check is ours.
				if in.Labels[provider.TagCluster] == p.cluster {
					out = append(out, in)
				}
			}
		}
		switch {
		case list.NextPageToken == "":
			return out, nil
		case seen[list.NextPageToken]:
			return nil, fmt.Errorf("list instances (page %d): the API gave a page token it gave before", page)
		}
		seen[list.NextPageToken] = true
		call.PageToken(list.NextPageToken)
	}
}
