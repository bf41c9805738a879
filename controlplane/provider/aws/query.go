package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// apiVersion is the EC2 API version the query API is spoken in.
const apiVersion = "2016-11-15"

// ec2Client speaks EC2's query API for the few actions the provider
// calls: a form-encoded POST signed with SigV4, answered in XML. It is
// what the SDK's generated EC2 client does for them, without that
// client's hundreds of other actions to compile.
type ec2Client struct {
	// endpoint is the URL every request is posted to.
	endpoint string
	region   string
	creds    awssdk.CredentialsProvider
	http     *http.Client
	signer   *v4.Signer
	retryer  awssdk.Retryer
}

// call sends action with params and decodes the answer into out,
// retrying what the retryer allows (throttling, EC2's own failures, a
// dropped connection) after its backoff, up to its bound of attempts.
func (c *ec2Client) call(ctx context.Context, action string, params query, out any) error {
	body := params.encode(action)
	for attempt := 1; ; attempt++ {
		err := c.send(ctx, action, body, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !c.retryer.IsErrorRetryable(err) {
			return err
		}
		if attempt >= c.retryer.MaxAttempts() {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		wait, derr := c.retryer.RetryDelay(attempt, err)
		if derr != nil {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// send makes one attempt. The signature covers the body's SHA-256, so
// nothing can alter the parameters on the way; neither the credentials
// nor the signature are ever part of an error.
func (c *ec2Client) send(ctx context.Context, action, body string, out any) error {
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("retrieve AWS credentials: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("make the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	sum := sha256.Sum256([]byte(body))
	if err := c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "ec2", c.region, time.Now().UTC()); err != nil {
		return fmt.Errorf("sign the request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readError(resp)
	}
	if err := decodeAnswer(resp.Body, action, out); err != nil {
		return fmt.Errorf("read EC2's answer to %s: %w", action, err)
	}
	return nil
}

// decodeAnswer decodes the answer to action into out once its root
// element shows that it is one: EC2 names it after the action
// (<DescribeInstancesResponse>). Any other document, such as a proxy's
// page or another service's answer sent with HTTP 200, would decode into
// an empty answer, which for DescribeInstances says that no instance
// exists.
func decodeAnswer(r io.Reader, action string, out any) error {
	d := xml.NewDecoder(r)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return errors.New("the answer is empty")
		}
		if err != nil {
			return err
		}
		root, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if want := action + "Response"; root.Name.Local != want {
			return fmt.Errorf("the answer is a %q document, not EC2's %s", root.Name.Local, want)
		}
		return d.DecodeElement(out, &root)
	}
}

// readError reads a failed call's error document. An answer without one,
// such as a proxy's page or a redirect (never followed), is an
// httpStatusError, which the retryer retries for EC2's own statuses
// (500, 502, 503, 504).
func readError(resp *http.Response) error {
	var doc errorResponse
	if err := xml.NewDecoder(resp.Body).Decode(&doc); err != nil || len(doc.Errors) == 0 || doc.Errors[0].Code == "" {
		return &httpStatusError{status: resp.StatusCode, location: resp.Header.Get("Location")}
	}
	e := doc.Errors[0]
	return &ec2Error{code: e.Code, message: e.Message, requestID: doc.RequestID, status: resp.StatusCode}
}

// ec2Error is an error EC2 answered. Its methods are those the SDK's
// retryer reads: ErrorCode for throttling and transient codes,
// HTTPStatusCode for EC2's own failures.
type ec2Error struct {
	code, message, requestID string
	status                   int
}

func (e *ec2Error) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d, request %s)", e.code, e.message, e.status, e.requestID)
}

// ErrorCode is EC2's error code, such as InsufficientInstanceCapacity.
func (e *ec2Error) ErrorCode() string { return e.code }

// HTTPStatusCode is the HTTP status EC2 answered with.
func (e *ec2Error) HTTPStatusCode() int { return e.status }

// httpStatusError is a failed answer without EC2's error document.
type httpStatusError struct {
	status   int
	location string
}

func (e *httpStatusError) Error() string {
	msg := fmt.Sprintf("EC2's endpoint answered HTTP %d %s without an EC2 error", e.status, http.StatusText(e.status))
	if e.status >= 300 && e.status < 400 {
		msg += "; the redirect to " + strconv.Quote(e.location) + " is not followed"
	}
	return msg
}

// HTTPStatusCode is the answer's HTTP status.
func (e *httpStatusError) HTTPStatusCode() int { return e.status }

// query is an action's parameters, in the query API's flattened form:
// a list's members are numbered from 1 (InstanceId.1, InstanceId.2),
// a structure's fields are joined by dots (Filter.1.Value.1).
type query url.Values

// set sets one parameter.
func (q query) set(key, value string) { url.Values(q).Set(key, value) }

// list sets prefix.1 … prefix.N to values.
func (q query) list(prefix string, values []string) {
	for i, v := range values {
		q.set(prefix+"."+strconv.Itoa(i+1), v)
	}
}

// filter is one of a Describe action's filters.
type filter struct {
	name   string
	values []string
}

// filters sets Filter.N.Name and Filter.N.Value.M.
func (q query) filters(fs []filter) {
	for i, f := range fs {
		p := "Filter." + strconv.Itoa(i+1)
		q.set(p+".Name", f.name)
		q.list(p+".Value", f.values)
	}
}

// encode is the request's body: Action and Version first, then the
// parameters in the order of their names.
func (q query) encode(action string) string {
	head := url.Values{"Action": {action}, "Version": {apiVersion}}.Encode()
	if len(q) == 0 {
		return head
	}
	return head + "&" + url.Values(q).Encode()
}
