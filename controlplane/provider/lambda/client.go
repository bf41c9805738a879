package lambda

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The Lambda Cloud API's wire types: every answer is {"data": …} or
// {"error": {code, message, suggestion}}.

type apiRegion struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

type apiTag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type apiInstance struct {
	ID              string    `json:"id"`
	Name            string    `json:"name,omitempty"`
	IP              string    `json:"ip,omitempty"`
	PrivateIP       string    `json:"private_ip,omitempty"`
	Status          string    `json:"status"`
	SSHKeyNames     []string  `json:"ssh_key_names,omitempty"`
	FileSystemNames []string  `json:"file_system_names,omitempty"`
	Region          apiRegion `json:"region"`
	InstanceType    struct {
		Name string `json:"name"`
	} `json:"instance_type"`
	Hostname string   `json:"hostname,omitempty"`
	Tags     []apiTag `json:"tags,omitempty"`
}

func (i apiInstance) tag(key string) string {
	for _, t := range i.Tags {
		if t.Key == key {
			return t.Value
		}
	}
	return ""
}

type apiInstanceType struct {
	InstanceType struct {
		Name              string `json:"name"`
		Description       string `json:"description"`
		PriceCentsPerHour int    `json:"price_cents_per_hour"`
		Specs             struct {
			VCPUs      int `json:"vcpus"`
			MemoryGiB  int `json:"memory_gib"`
			StorageGiB int `json:"storage_gib"`
			GPUs       int `json:"gpus"`
		} `json:"specs"`
	} `json:"instance_type"`
	RegionsWithCapacity []apiRegion `json:"regions_with_capacity_available"`
}

type launchRequest struct {
	RegionName       string   `json:"region_name"`
	InstanceTypeName string   `json:"instance_type_name"`
	SSHKeyNames      []string `json:"ssh_key_names"`
	FileSystemNames  []string `json:"file_system_names"`
	Quantity         int      `json:"quantity"`
	Name             string   `json:"name"`
	UserData         string   `json:"user_data"`
	Tags             []apiTag `json:"tags"`
}

type launchResponse struct {
	InstanceIDs []string `json:"instance_ids"`
}

type terminateRequest struct {
	InstanceIDs []string `json:"instance_ids"`
}

// Error codes the provider acts on; Lambda asks clients to go by the code,
// never the message.
const (
	codeInvalidKey          = "global/invalid-api-key"
	codeAccountInactive     = "global/account-inactive"
	codeNotFound            = "global/object-does-not-exist"
	codeQuotaExceeded       = "global/quota-exceeded"
	codeInsufficientCap     = "instance-operations/launch/insufficient-capacity"
	codeFileSystemElsewhere = "instance-operations/launch/file-system-in-wrong-region"
)

// apiError is a refusal from the API, with the key scrubbed from its text.
type apiError struct {
	Status     int
	Code       string
	Message    string
	Suggestion string
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("HTTP %d", e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Suggestion != "" {
		s += " (" + e.Suggestion + ")"
	}
	return s
}

// keyRefused reports whether the API refused the key or the account it
// belongs to; retrying cannot help.
func (e *apiError) keyRefused() bool {
	return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden ||
		e.Code == codeInvalidKey || e.Code == codeAccountInactive
}

func (e *apiError) notFound() bool {
	return e.Status == http.StatusNotFound || e.Code == codeNotFound
}

func asAPIError(err error) (*apiError, bool) {
	var ae *apiError
	ok := errors.As(err, &ae)
	return ae, ok
}

// Retries: a request refused for its rate (429) is retried; so are
// server errors and broken connections, but only for requests that are
// safe to repeat — a launch that failed that way may have started an
// instance, which List finds by its tags.
const (
	maxAttempts   = 6
	maxBackoff    = 30 * time.Second
	maxRetryAfter = 60 * time.Second
	maxBody       = 4 << 20
	// requestTimeout bounds one request, its answer read whole included.
	requestTimeout = time.Minute
)

// DefaultBackoff waits 1 s, 2 s, 4 s … up to 30 s before retry attempt
// (0 for the first retry), or what the API's Retry-After asked, up to a
// minute.
func DefaultBackoff(attempt int, retryAfter time.Duration) time.Duration {
	d := min(time.Second<<min(attempt, 5), maxBackoff)
	return max(d, min(retryAfter, maxRetryAfter))
}

type client struct {
	base    string
	key     string
	http    *http.Client
	backoff func(attempt int, retryAfter time.Duration) time.Duration
}

// do sends one call and decodes the answer's data into out (if not nil).
// idempotent says whether the call may be repeated after a server error.
func (c *client) do(ctx context.Context, method, path string, body, out any, idempotent bool) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		retryAfter, err := c.once(ctx, method, path, payload, out)
		if err == nil {
			return nil
		}
		if !c.retryable(err, idempotent) || attempt+1 >= maxAttempts || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(c.backoff(attempt, retryAfter))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func (c *client) retryable(err error, idempotent bool) bool {
	if errors.Is(err, errAnswerTooLong) {
		return false
	}
	if ae, ok := asAPIError(err); ok {
		if ae.Status == http.StatusTooManyRequests {
			return true
		}
		return idempotent && ae.Status >= 500
	}
	return idempotent
}

func (c *client) once(ctx context.Context, method, path string, payload []byte, out any) (time.Duration, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "navarch-controlplane")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, c.scrub(err)
	}
	defer resp.Body.Close()
	// One byte past the limit tells an answer of the limit from a longer
	// one, which is refused rather than decoded cut short.
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	if len(raw) > maxBody {
		return 0, fmt.Errorf("HTTP %d: %w", resp.StatusCode, errAnswerTooLong)
	}
	if resp.StatusCode/100 == 3 {
		// The client follows no redirect: the key goes to the configured
		// endpoint alone, never to where an answer points.
		return 0, &apiError{Status: resp.StatusCode, Message: c.redact(fmt.Sprintf(
			"a redirect to %q, not followed: the API key is sent to the configured endpoint only", resp.Header.Get("Location")))}
	}
	if resp.StatusCode/100 != 2 {
		return retryAfter(resp.Header.Get("Retry-After")), c.refusal(resp.StatusCode, raw)
	}
	if out == nil {
		return 0, nil
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		return 0, fmt.Errorf("decode answer: %w", err)
	}
	if err := json.Unmarshal(env.Data, out); err != nil {
		return 0, fmt.Errorf("decode answer's data: %w", err)
	}
	return 0, nil
}

// errAnswerTooLong is an answer longer than maxBody; asking again would
// get the same.
var errAnswerTooLong = fmt.Errorf("answer is longer than %d MiB; not read", maxBody>>20)

// noRedirect is the client's CheckRedirect: a redirect comes back as the
// answer, which do refuses.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (c *client) refusal(status int, raw []byte) error {
	var env struct {
		Error struct {
			Code       string `json:"code"`
			Message    string `json:"message"`
			Suggestion string `json:"suggestion"`
		} `json:"error"`
	}
	e := &apiError{Status: status}
	if json.Unmarshal(raw, &env) == nil {
		e.Code = env.Error.Code
		e.Message = c.redact(env.Error.Message)
		e.Suggestion = c.redact(env.Error.Suggestion)
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// redact keeps the key out of anything that may be logged or shown.
func (c *client) redact(s string) string {
	if c.key == "" {
		return s
	}
	return strings.ReplaceAll(s, c.key, "[redacted]")
}

func (c *client) scrub(err error) error {
	if c.key != "" && strings.Contains(err.Error(), c.key) {
		return errors.New(c.redact(err.Error()))
	}
	return err
}

func retryAfter(h string) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

func (c *client) instanceTypes(ctx context.Context) (map[string]apiInstanceType, error) {
	var out map[string]apiInstanceType
	if err := c.do(ctx, http.MethodGet, "/instance-types", nil, &out, true); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *client) instances(ctx context.Context) ([]apiInstance, error) {
	var out []apiInstance
	if err := c.do(ctx, http.MethodGet, "/instances", nil, &out, true); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *client) instance(ctx context.Context, id string) (apiInstance, error) {
	var out apiInstance
	err := c.do(ctx, http.MethodGet, "/instances/"+url.PathEscape(id), nil, &out, true)
	return out, err
}

func (c *client) launch(ctx context.Context, req launchRequest) (string, error) {
	var out launchResponse
	if err := c.do(ctx, http.MethodPost, "/instance-operations/launch", req, &out, false); err != nil {
		return "", err
	}
	if len(out.InstanceIDs) != 1 {
		return "", fmt.Errorf("launch answered %d instance ids for one instance", len(out.InstanceIDs))
	}
	return out.InstanceIDs[0], nil
}

func (c *client) terminate(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/instance-operations/terminate", terminateRequest{InstanceIDs: []string{id}}, nil, true)
}
