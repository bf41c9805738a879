package gcp

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"
	"google.golang.org/api/option/internaloption"
	htransport "google.golang.org/api/transport/http"
)

// maxResponseBody bounds what is read of one answer from the API: the
// largest, a page of 500 instances, is well under it.
const maxResponseBody = 32 << 20

// httpClient makes the HTTP client the compute service uses: the one the
// client options give, or one that adds the access token to each
// request, made to follow no redirect, to give up on a call after the
// request timeout, and to read no more than maxResponseBody of an
// answer.
func httpClient(ctx context.Context, o Options) (*http.Client, error) {
	// The scopes and the auth library are those compute.NewService would
	// use, so that its credentials and their errors are the same.
	opts := append([]option.ClientOption{
		internaloption.WithDefaultScopes(compute.ComputeScope),
		internaloption.EnableNewAuthLibrary(),
	}, o.ClientOptions...)
	base, _, err := htransport.NewClient(ctx, opts...)
	if err != nil {
		return nil, err
	}
	c := *base
	// The transport adds the token to every request the client sends,
	// redirected ones too: a redirect would hand it to whatever host the
	// answer names.
	c.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		return fmt.Errorf("the Compute Engine API redirected to %s; redirects are not followed, so the access token goes nowhere else", req.URL.Host)
	}
	c.Timeout = o.RequestTimeout
	c.Transport = cappedTransport{base: cmp.Or(base.Transport, http.DefaultTransport)}
	return &c, nil
}

// cappedTransport reads at most maxResponseBody of each answer.
type cappedTransport struct {
	base http.RoundTripper
}

func (t cappedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &cappedBody{rc: resp.Body, left: maxResponseBody}
	return resp, nil
}

var errBodyTooLarge = fmt.Errorf("the Compute Engine API's answer is over %d MiB", maxResponseBody>>20)

// cappedBody fails a read past its limit instead of passing a cut-off
// answer on as if it were whole.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	// One byte past the limit tells a body that ends at it from one that
	// goes on.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.left {
		n = int(b.left)
		b.left = 0
		return n, errBodyTooLarge
	}
	b.left -= int64(n)
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }
