package static

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
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/internal/display"
)

const (
	// maxBody bounds what is read of a BMC's answer.
	maxBody = 4 << 20
	// maxRetryAfter caps the wait a BMC's Retry-After may ask for.
	maxRetryAfter = 30 * time.Second
)

type link struct {
	ID string `json:"@odata.id"`
}

type serviceRoot struct {
	Systems link `json:"Systems"`
	Links   struct {
		Sessions link `json:"Sessions"`
	} `json:"Links"`
}

// sessionRequest is a login's body, the one request body that carries
// the password.
type sessionRequest struct {
	UserName string `json:"UserName"`
	Password string `json:"Password"`
}

type collection struct {
	Members []link `json:"Members"`
}

type redfishError struct {
	Error struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		Extended []struct {
			Message string `json:"Message"`
		} `json:"@Message.ExtendedInfo"`
	} `json:"error"`
}

// httpError is a BMC's answer with an error status, with what its Redfish
// error body says.
type httpError struct {
	status       int
	method, path string
	code, text   string
}

func (e *httpError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, http.StatusText(e.status))
	if e.code != "" {
		s += " (" + e.code + ")"
	}
	if e.text != "" {
		s += ": " + e.text
	}
	return s
}

// statusOf is the HTTP status of a BMC's error answer, or 0.
func statusOf(err error) int {
	var he *httpError
	if errors.As(err, &he) {
		return he.status
	}
	return 0
}

// parseError reads a BMC's error answer, with the account's username and
// password taken out of whatever the BMC wrote. A body that is not a
// Redfish error is quoted only where the request did not carry the
// password: what a BMC makes of a login it refuses may hold the password
// in a form the redaction does not know.
func (b *bmc) parseError(method, path string, status int, body []byte, quoteBody bool) *httpError {
	e := &httpError{status: status, method: method, path: path}
	var re redfishError
	if json.Unmarshal(body, &re) == nil && (re.Error.Code != "" || re.Error.Message != "") {
		e.code = display.OneLine(b.redact.Replace(re.Error.Code), 100)
		texts := []string{re.Error.Message}
		for _, x := range re.Error.Extended {
			if x.Message != "" && x.Message != re.Error.Message {
				texts = append(texts, x.Message)
			}
		}
		e.text = display.OneLine(b.redact.Replace(strings.Join(texts, "; ")), 500)
	} else if quoteBody {
		e.text = display.OneLine(b.redact.Replace(string(body)), 200)
	}
	return e
}

// bmc is a Redfish client of one BMC, shared by the machines it powers.
// It logs in once and keeps the session, logging in again when the BMC
// has ended it; a BMC that offers no sessions gets basic authentication on
// every request. Once the BMC refuses the credentials it is not asked
// again for a minute, so that it does not lock the account out. The
// credentials go to the configured BMC only: a link or a redirect to
// another host is refused. Nor do they come back out in its errors:
// they are taken out of whatever the BMC says.
type bmc struct {
	base     *url.URL
	hc       *http.Client
	creds    Credentials
	redact   *strings.Replacer // takes creds out of what the BMC says
	timeout  time.Duration
	attempts int
	backoff  func(attempt int) time.Duration
	clock    clockwork.Clock

	mu        sync.Mutex
	root      *serviceRoot
	token     string
	session   string // the session's URI, deleted by logout
	basic     bool
	refusedAt time.Time
	refusal   error
}

// refusedPause is how long a BMC that refused the credentials is left
// alone.
const refusedPause = time.Minute

func newBMC(base *url.URL, hc *http.Client, creds Credentials, o Options) *bmc {
	c := *hc
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Host != base.Host || req.URL.Scheme != base.Scheme {
			return fmt.Errorf("BMC redirected to %s, away from %s", req.URL.Redacted(), base.Host)
		}
		if len(via) >= 5 {
			return errors.New("BMC redirected 5 times")
		}
		return nil
	}
	return &bmc{
		base: base, hc: &c, creds: creds, redact: redactor(creds),
		timeout: o.RequestTimeout, attempts: o.Attempts, backoff: o.Backoff, clock: o.Clock,
	}
}

// resolve turns a link the BMC gave into a URL on the BMC.
func (b *bmc) resolve(ref string) (*url.URL, error) {
	r, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("BMC gave %q, not a URI", ref)
	}
	u := b.base.ResolveReference(r)
	if u.Scheme != b.base.Scheme || u.Host != b.base.Host {
		return nil, fmt.Errorf("BMC pointed to %s, away from %s", u.Redacted(), b.base.Host)
	}
	return u, nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// send makes a request, again after a 503 or 429 while attempts are left,
// waiting as long as the backoff or the BMC's Retry-After says.
func (b *bmc) send(ctx context.Context, method, ref string, in any, auth func(*http.Request)) (*response, error) {
	u, err := b.resolve(ref)
	if err != nil {
		return nil, err
	}
	var body []byte
	if in != nil {
		if body, err = json.Marshal(in); err != nil {
			return nil, err
		}
	}
	for attempt := 1; ; attempt++ {
		resp, err := b.once(ctx, method, u.String(), body, auth)
		if err != nil {
			return nil, err
		}
		if resp.status < 400 {
			return resp, nil
		}
		_, login := in.(sessionRequest)
		herr := b.parseError(method, u.Path, resp.status, resp.body, !login)
		if resp.status != http.StatusServiceUnavailable && resp.status != http.StatusTooManyRequests || attempt >= b.attempts {
			return nil, herr
		}
		if err := sleep(ctx, b.clock, max(b.backoff(attempt), retryAfter(resp.header))); err != nil {
			return nil, fmt.Errorf("%w (waiting to try again: %w)", herr, err)
		}
	}
}

func (b *bmc) once(ctx context.Context, method, u string, body []byte, auth func(*http.Request)) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-Version", "4.0")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != nil {
		auth(req)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, req.URL.Path, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// retryAfter is the wait a Retry-After header asks for, in seconds or as
// a date, capped.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 0), maxRetryAfter)
}

func sleep(ctx context.Context, clock clockwork.Clock, d time.Duration) error {
	t := clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.Chan():
		return nil
	}
}

// call makes an authenticated request and decodes the answer into out
// (when not nil). A session the BMC has ended is replaced once.
func (b *bmc) call(ctx context.Context, method, ref string, in, out any) error {
	for again := true; ; again = false {
		auth, token, err := b.auth(ctx)
		if err != nil {
			return err
		}
		resp, err := b.send(ctx, method, ref, in, auth)
		if statusOf(err) == http.StatusUnauthorized {
			if token != "" && again {
				b.forget(token)
				continue
			}
			if token == "" {
				b.refused(err)
			}
		}
		if err != nil {
			return err
		}
		if out == nil || len(resp.body) == 0 {
			return nil
		}
		if err := json.Unmarshal(resp.body, out); err != nil {
			return fmt.Errorf("%s %s: the answer is not Redfish JSON: %w", method, ref, err)
		}
		return nil
	}
}

// auth returns how to authenticate a request, logging in first when
// there is no session, and the session token it uses.
func (b *bmc) auth(ctx context.Context) (func(*http.Request), string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.refusal != nil && b.clock.Since(b.refusedAt) < refusedPause {
		return nil, "", b.refusal
	}
	if b.token == "" && !b.basic {
		if err := b.login(ctx); err != nil {
			if statusOf(err) == http.StatusUnauthorized {
				b.refusedAt, b.refusal = b.clock.Now(), err
			}
			return nil, "", err
		}
	}
	if b.basic {
		return func(r *http.Request) { r.SetBasicAuth(b.creds.Username, b.creds.Password) }, "", nil
	}
	token := b.token
	return func(r *http.Request) { r.Header.Set("X-Auth-Token", token) }, token, nil
}

// refused notes that the BMC refused basic credentials.
func (b *bmc) refused(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refusedAt, b.refusal = b.clock.Now(), err
}

// login creates a session (POST to the service root's Links.Sessions),
// or settles on basic authentication where the BMC has no sessions.
// b.mu is held.
func (b *bmc) login(ctx context.Context) error {
	root, err := b.serviceRoot(ctx)
	if err != nil {
		return err
	}
	if root.Links.Sessions.ID == "" {
		b.basic = true
		return nil
	}
	creds := sessionRequest{UserName: b.creds.Username, Password: b.creds.Password}
	resp, err := b.send(ctx, http.MethodPost, root.Links.Sessions.ID, creds, nil)
	switch status := statusOf(err); {
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
		b.basic = true
		return nil
	case err != nil:
		return err
	}
	token := resp.header.Get("X-Auth-Token")
	if token == "" {
		return errors.New("BMC created a session but gave no X-Auth-Token")
	}
	b.token, b.session = token, resp.header.Get("Location")
	if b.session == "" {
		var s link
		if json.Unmarshal(resp.body, &s) == nil {
			b.session = s.ID
		}
	}
	return nil
}

// serviceRoot reads /redfish/v1, which needs no authentication. b.mu is
// held.
func (b *bmc) serviceRoot(ctx context.Context) (*serviceRoot, error) {
	if b.root != nil {
		return b.root, nil
	}
	resp, err := b.send(ctx, http.MethodGet, serviceRootPath, nil, nil)
	if err != nil {
		return nil, err
	}
	var root serviceRoot
	if err := json.Unmarshal(resp.body, &root); err != nil {
		return nil, fmt.Errorf("GET %s: the answer is not a Redfish service root: %w", serviceRootPath, err)
	}
	b.root = &root
	return b.root, nil
}

// forget drops a session token the BMC no longer takes.
func (b *bmc) forget(token string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.token == token {
		b.token, b.session = "", ""
	}
}

// logout deletes the session, if there is one.
func (b *bmc) logout(ctx context.Context) error {
	b.mu.Lock()
	token, session := b.token, b.session
	b.token, b.session = "", ""
	b.mu.Unlock()
	if session == "" {
		return nil
	}
	_, err := b.send(ctx, http.MethodDelete, session, nil, func(r *http.Request) { r.Header.Set("X-Auth-Token", token) })
	return err
}
